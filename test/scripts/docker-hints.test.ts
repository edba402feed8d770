/**
 * The hints `npm run up` prints for a member that will not start, tested against mongod's own lines (the texts of
 * src/mongo/db/auth/security_file.cpp and of mongod 6's start-up errors, in its JSON log format), and the verdicts of
 * the member watcher from recorded states. The watcher itself runs against a real engine in test/docker.
 */
import { describe, expect, it } from 'vitest';
import { describeMemberState, diagnoseMongodLog, dockerAuthHint, failureReport, isAuthFailure, memberFailure, MONGOD_HINTS } from '../../scripts/lib/docker.mjs';

const json = (s: string, c: string, id: number, ctx: string, msg: string, attr: unknown) =>
  JSON.stringify({ t: { $date: '2026-12-02T10:00:00.000+00:00' }, s, c, id, ctx, msg, attr });

const TABLE: Array<{ case: string; log: string[]; id: string; hint: RegExp }> = [
  {
    case: 'keyfile with group/other bits',
    log: [
      json('I', 'ACCESS', 20254, 'initandlisten', 'Read security file failed', { error: { code: 30, codeName: 'InvalidPath', errmsg: 'permissions on /etc/mongo-capsule/keyfile are too open' } }),
      json('F', 'CONTROL', 20575, 'main', 'Error creating service context', { error: 'Location5579201: Unable to acquire security key[s]' }),
    ],
    id: 'keyfile-too-open',
    hint: /group or other permission bit.*999.*0400.*5\.2\.0/,
  },
  {
    case: 'keyfile owned by root, mode 0400 (mongod runs as 999)',
    log: [
      json('I', 'ACCESS', 20254, 'initandlisten', 'Read security file failed', { error: { code: 30, codeName: 'InvalidPath', errmsg: 'error opening file: /etc/mongo-capsule/keyfile: Permission denied' } }),
      json('F', 'CONTROL', 20575, 'main', 'Error creating service context', { error: 'Location5579201: Unable to acquire security key[s]' }),
    ],
    id: 'keyfile-unreadable',
    hint: /uid 999\) cannot read the keyfile/,
  },
  {
    case: 'keyfile missing',
    log: [json('I', 'ACCESS', 20254, 'initandlisten', 'Read security file failed', { error: { code: 30, codeName: 'InvalidPath', errmsg: 'Error reading file /etc/mongo-capsule/keyfile: No such file or directory' } })],
    id: 'keyfile-unreadable',
    hint: /cannot read the keyfile/,
  },
  {
    case: 'keyfile with a character outside base64',
    log: [json('I', 'ACCESS', 20254, 'initandlisten', 'Read security file failed', { error: { code: 2, codeName: 'UnsupportedFormat', errmsg: 'invalid char in key file /etc/mongo-capsule/keyfile: *' } })],
    id: 'keyfile-content',
    hint: /6 to 1024 base64 characters/,
  },
  {
    case: 'only the final fatal line survives in the tail',
    log: [json('F', 'CONTROL', 20575, 'main', 'Error creating service context', { error: 'Location5579201: Unable to acquire security key[s]' })],
    id: 'security-key',
    hint: /could not load the keyfile/,
  },
  {
    case: 'port taken',
    log: [json('E', 'NETWORK', 23024, 'initandlisten', 'Failed to set up listener', { error: { code: 9001, codeName: 'SocketException', errmsg: 'Address already in use' } })],
    id: 'address-in-use',
    hint: /--base-port/,
  },
  {
    case: 'data directory used by another mongod',
    log: [json('E', 'STORAGE', 20557, 'initandlisten', 'DBException in initAndListen, terminating', { error: 'DBPathInUse: Unable to lock the lock file: /data/db/mongod.lock (Resource temporarily unavailable). Another mongod instance is already running on the /data/db directory' })],
    id: 'data-dir-locked',
    hint: /same data volume/,
  },
  {
    case: 'old volume of another mongod version',
    log: [json('F', 'CONTROL', 20573, 'initandlisten', 'Wrong mongod version', { error: 'UPGRADE PROBLEM: Found an invalid featureCompatibilityVersion document (ERROR: Location4926900: Invalid featureCompatibilityVersion document in admin.system.version: { _id: "featureCompatibilityVersion", version: "4.4" }' })],
    id: 'old-volume',
    hint: /remove the volumes with `npm run down`/,
  },
  {
    case: 'a refused option',
    log: ['BadValue: security.keyFile is required when authorization is enabled with replica sets', "try 'mongod --help' for more information"],
    id: 'bad-value',
    hint: /mongo-capsule:image/,
  },
  {
    case: 'an unknown option (an image whose mongod is too old)',
    log: ["Error parsing command line: unrecognised option '--bind_ip_all'"],
    id: 'bad-value',
    hint: /mongo-capsule:image/,
  },
  {
    case: 'an image without mongod',
    log: ['/usr/local/bin/docker-entrypoint.sh: exec: line 420: mongod: not found'],
    id: 'not-mongod',
    hint: /has no mongod/,
  },
];

describe('diagnoseMongodLog: mongod\'s own lines → the matching hint', () => {
  for (const row of TABLE) {
    it(row.case, () => {
      const d = diagnoseMongodLog(['{"s":"I","msg":"Build Info"}', ...row.log, '{"s":"I","msg":"shutting down"}'].join('\n'));
      expect(d?.id).toBe(row.id);
      expect(d?.hint).toMatch(row.hint);
      expect(row.log).toContain(d?.line);
    });
  }
  it('every hint in the table is reached by a line above', () => {
    expect(new Set(TABLE.map((r) => r.id))).toEqual(new Set(MONGOD_HINTS.map((h) => h.id)));
  });
  it('a log with nothing known: no hint (the log itself is shown)', () => {
    expect(diagnoseMongodLog('{"s":"I","msg":"Waiting for connections"}\n')).toBeUndefined();
    expect(diagnoseMongodLog('')).toBeUndefined();
  });
});

describe('memberFailure and the progress words', () => {
  const running = { status: 'running', restarts: 0, health: 'starting', failingStreak: 0, exitCode: 0 };
  it('starting, healthy: not a failure', () => {
    expect(memberFailure(running)).toBeUndefined();
    expect(memberFailure({ ...running, health: 'healthy' })).toBeUndefined();
    expect(memberFailure(undefined)).toBeUndefined();
    expect(describeMemberState(running)).toBe('starting (waiting for its health check)');
    expect(describeMemberState(undefined)).toBe('not created yet');
  });
  it('a restart since the watch began, a restarting or stopped container, a failing streak: failures', () => {
    expect(memberFailure({ ...running, restarts: 1, exitCode: 1 })).toMatch(/mongod exited with code 1 and Docker restarted the container/);
    expect(memberFailure({ ...running, status: 'restarting', exitCode: 14 })).toMatch(/code 14/);
    expect(memberFailure({ ...running, status: 'exited', exitCode: 48 })).toMatch(/stopped \(exit code 48\)/);
    expect(memberFailure({ ...running, failingStreak: 6 })).toMatch(/failed 6 times in a row/);
    expect(memberFailure({ ...running, failingStreak: 5 })).toBeUndefined();
    expect(memberFailure({ ...running, health: 'unhealthy', failingStreak: 12 })).toMatch(/12 times/);
  });
  it('restarts from before the watch (an old member) do not count', () => {
    expect(memberFailure({ ...running, restarts: 3, health: 'healthy' }, { baseRestarts: 3 })).toBeUndefined();
    expect(memberFailure({ ...running, restarts: 4 }, { baseRestarts: 3 })).toMatch(/restarted/);
  });
  it('the report: what happened, each log line quoted, the hint; without a match, where to look', () => {
    const log = 'permissions on /etc/mongo-capsule/keyfile are too open';
    const lines = failureReport({ container: 'mongo-capsule-dev-0', reason: 'x', log, diagnosis: diagnoseMongodLog(log) });
    expect(lines[0]).toBe('mongo-capsule-dev-0 will not become healthy: x. Its last log lines:');
    expect(lines[1]).toBe(`  | ${log}`);
    expect(lines.at(-1)).toMatch(/^hint: mongod refuses a keyfile/);
    expect(failureReport({ container: 'c', reason: 'x', log: '', diagnosis: undefined }).at(-1)).toMatch(/docker logs c/);
  });
});

describe('authentication failure in docker mode', () => {
  it('is recognised from the provisioning error, and the hint names the old volume and the reset', () => {
    expect(isAuthFailure('error: provision: authentication failed (root@admin on 127.0.0.1:27017)')).toBe(true);
    expect(isAuthFailure('error: provisioning failed: fake failure')).toBe(false);
    const hint = dockerAuthHint('dev').join('\n');
    expect(hint).toMatch(/old data volume/);
    expect(hint).toMatch(/`npm run down` \(it removes the stack's containers, network and volumes\), then `npm run up`/);
    expect(hint).not.toMatch(/connection string/);
    expect(dockerAuthHint('ci').join('\n')).toContain('npm run down -- --stack ci');
  });
});
