// Printing MongoDB connection strings without their secrets, for every layer that prints one (src/mongo, the CLI,
// the test harness in scripts/lib, the benchmarks). Plain JavaScript with no imports so that plain-Node scripts
// can use it too; types in uri-redaction.d.mts.
//
// It must hold for any string a user can pass, valid or not, so it never trusts the driver's grammar:
// - the user info ends at the LAST '@' (a password may hold a raw '/', '?', '#', ':' or '@');
// - every host must look like a host (name, IPv4, [IPv6], percent-encoded socket path) with a numeric port,
//   or nothing after the scheme is shown (`mongodb://admin:secret/` has no '@': the "port" is a password);
// - option values are shown only for options known to carry nothing secret; any other value (proxyPassword,
//   tlsCertificateKeyFilePassword, authMechanismProperties with an AWS session token, a typo) is hidden.

const SCHEME = /^(mongodb(?:\+srv)?:\/\/)/i;
const EMBEDDED_SCHEME = /mongodb(?:\+srv)?:\/\//gi;
const OPTION_KEY = /^[A-Za-z0-9_.-]{1,64}$/;
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9._~-]|%[0-9A-Fa-f]{2})+)(?::\d{1,5})?$/;

/** Options whose values are never secret: shown as they are. Every other option's value is hidden. */
const PUBLIC_OPTIONS = new Set(
  [
    'appName', 'authMechanism', 'authSource', 'compressors', 'connectTimeoutMS', 'directConnection', 'heartbeatFrequencyMS',
    'journal', 'loadBalanced', 'localThresholdMS', 'maxConnecting', 'maxIdleTimeMS', 'maxPoolSize', 'maxStalenessSeconds',
    'minPoolSize', 'proxyHost', 'proxyPort', 'readConcernLevel', 'readPreference', 'readPreferenceTags', 'replicaSet',
    'retryReads', 'retryWrites', 'serverMonitoringMode', 'serverSelectionTimeoutMS', 'socketTimeoutMS', 'srvMaxHosts',
    'srvServiceName', 'ssl', 'timeoutMS', 'tls', 'tlsAllowInvalidCertificates', 'tlsAllowInvalidHostnames', 'tlsCAFile',
    'tlsCertificateKeyFile', 'tlsCRLFile', 'tlsInsecure', 'w', 'waitQueueTimeoutMS', 'wtimeoutMS', 'zlibCompressionLevel',
  ].map((k) => k.toLowerCase()),
);

/** Secrets shorter than this are not searched for in free text (they would garble every message). */
const MIN_SCRUBBED_LENGTH = 4;

function safeDecode(s) {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function splitOptions(query) {
  return query.split(/[&;]/);
}

function isPublicOption(key) {
  return PUBLIC_OPTIONS.has(safeDecode(key).toLowerCase());
}

function redactOptions(query) {
  return splitOptions(query)
    .map((pair) => {
      if (pair === '') return pair;
      const eq = pair.indexOf('=');
      if (eq === -1) return '<redacted>';
      const key = pair.slice(0, eq);
      if (!OPTION_KEY.test(key)) return '<redacted>';
      return isPublicOption(key) ? pair : `${key}=<redacted>`;
    })
    .join('&');
}

/**
 * A connection string safe to print: user info replaced by `<credentials>`, hosts, database and public options
 * kept, other option values replaced by `<redacted>`; `<invalid connection string>` for anything else.
 * @example
 * redactUri('mongodb://admin:p/ss@db.example.com:27017/?replicaSet=rs0&proxyPassword=x')
 * // 'mongodb://<credentials>@db.example.com:27017/?replicaSet=rs0&proxyPassword=<redacted>'
 */
export function redactUri(uri) {
  if (typeof uri !== 'string') return '<invalid connection string>';
  const m = SCHEME.exec(uri);
  if (!m) return '<invalid connection string>';
  let rest = uri.slice(m[0].length);
  const at = rest.lastIndexOf('@');
  const credentials = at === -1 ? '' : '<credentials>@';
  if (at !== -1) rest = rest.slice(at + 1);
  const end = rest.search(/[/?]/);
  const hosts = end === -1 ? rest : rest.slice(0, end);
  const tail = end === -1 ? '' : rest.slice(end);
  if (hosts === '' || !hosts.split(',').every((h) => HOST.test(h))) return `${m[1]}${credentials}<redacted>`;
  const q = tail.indexOf('?');
  const path = q === -1 ? tail : tail.slice(0, q);
  const query = q === -1 ? undefined : tail.slice(q + 1);
  if (/\s/.test(path)) return `${m[1]}${credentials}${hosts}/<redacted>`;
  return `${m[1]}${credentials}${hosts}${path}${query === undefined ? '' : `?${redactOptions(query)}`}`;
}

/** The host list of a connection string, for messages ("127.0.0.1:27017,db2:27017"); never a secret. */
export function describeHosts(uri) {
  const redacted = redactUri(uri);
  const m = SCHEME.exec(redacted);
  if (!m) return redacted;
  const rest = redacted.slice(m[0].length).replace(/^<credentials>@/, '');
  const end = rest.search(/[/?]/);
  return end === -1 ? rest : rest.slice(0, end);
}

/**
 * The secret pieces of a connection string, as they may appear in free text (a driver's message, a child's
 * stderr): the user info, the password raw, decoded and re-encoded, and the values of non-public options.
 * Longest first, so that replacing them in order replaces a secret containing another whole.
 */
export function uriSecrets(uri) {
  if (typeof uri !== 'string') return [];
  const found = new Set();
  const add = (s) => {
    for (const v of [s, safeDecode(s), encodeURIComponent(s), encodeURIComponent(safeDecode(s))]) if (v.length >= MIN_SCRUBBED_LENGTH) found.add(v);
  };
  // Values like authMechanismProperties are lists of key:value pairs: each value is a secret on its own.
  const addOptionValue = (v) => {
    add(v);
    for (const item of safeDecode(v).split(',')) {
      add(item);
      const colon = item.indexOf(':');
      if (colon !== -1) add(item.slice(colon + 1));
    }
  };
  const m = SCHEME.exec(uri);
  const rest = m ? uri.slice(m[0].length) : uri;
  const at = rest.lastIndexOf('@');
  if (at !== -1) {
    // The password is somewhere in the user info: after a ':' or an '@', up to an '@' or the end.
    const userinfo = rest.slice(0, at);
    const starts = [0];
    const ends = [userinfo.length];
    for (let i = 0; i < userinfo.length; i++) {
      if (userinfo[i] === ':' || userinfo[i] === '@') starts.push(i + 1);
      if (userinfo[i] === '@') ends.push(i);
    }
    for (const a of starts) for (const b of ends) if (b > a) add(userinfo.slice(a, b));
  } else if (m) {
    // No '@': whatever follows the first ':' may be a password that lost its '@', ending at any '/' or '?'.
    addUnterminated(rest, add);
  }
  // Option values, wherever a '?' may start the options (one can hide in a password): each value on its own
  // and up to the end of the string (a raw '&' may be part of it).
  const all = m ? uri.slice(m[0].length) : uri;
  for (let q = all.indexOf('?'); q !== -1; q = all.indexOf('?', q + 1)) {
    let offset = q + 1;
    for (const pair of splitOptions(all.slice(q + 1))) {
      const eq = pair.indexOf('=');
      if (eq === -1) add(pair);
      else if (!isPublicOption(pair.slice(0, eq))) {
        addOptionValue(pair.slice(eq + 1));
        add(all.slice(offset + eq + 1));
      }
      offset += pair.length + 1;
    }
  }
  if (m) {
    const shown = redactUri(uri);
    if (shown !== uri) found.add(uri);
  }
  return [...found].sort((a, b) => b.length - a.length);
}

function addUnterminated(rest, add) {
  for (let colon = rest.indexOf(':'); colon !== -1; colon = rest.indexOf(':', colon + 1)) {
    const tail = rest.slice(colon + 1);
    if (/^\d{1,5}(?:[,/?]|$)/.test(tail)) continue;
    for (let i = 1; i <= tail.length; i++) if (i === tail.length || tail[i] === '/' || tail[i] === '?') add(tail.slice(0, i));
  }
}

/**
 * Free text (a driver's error message, a stack, a child's stderr) with every embedded connection string redacted
 * and every secret of the `uris` given removed, wherever it appears.
 */
export function scrubText(text, uris = []) {
  let out = String(text);
  for (const uri of uris) {
    for (const secret of uriSecrets(uri)) out = out.split(secret).join('<redacted>');
  }
  return out
    .split('\n')
    .map((line) => redactEmbedded(line))
    .join('\n');
}

function redactEmbedded(line) {
  let out = '';
  let from = 0;
  EMBEDDED_SCHEME.lastIndex = 0;
  for (let m = EMBEDDED_SCHEME.exec(line); m !== null; m = EMBEDDED_SCHEME.exec(line)) {
    if (m.index < from) continue;
    const start = m.index;
    // A password may hold spaces or quotes: the user info reaches the last '@' before the next connection string.
    const next = line.slice(start + m[0].length).search(/mongodb(?:\+srv)?:\/\//i);
    const limit = next === -1 ? line.length : start + m[0].length + next;
    const at = line.lastIndexOf('@', limit - 1);
    const afterAuth = at > start ? at + 1 : start + m[0].length;
    if (line.slice(start + m[0].length, afterAuth).includes('?')) {
      // An '@' after a '?' may sit in an option value: nothing after the scheme can be trusted to be public.
      out += `${line.slice(from, start)}${m[0]}<redacted>`;
      from = line.length;
      break;
    }
    const stop = line.slice(afterAuth).search(/[\s"'`?]/);
    // Option values may hold anything: once the options start, the rest of the line goes through redaction.
    let end = stop === -1 || line[afterAuth + stop] === '?' ? line.length : afterAuth + stop;
    const shown = redactUri(line.slice(start, end));
    // Hosts that do not parse may be a password that lost its '@': where it ends is unknown, so hide the line's rest.
    if (shown.endsWith('<redacted>') && !shown.includes('?')) end = line.length;
    out += line.slice(from, start) + shown;
    from = end;
    EMBEDDED_SCHEME.lastIndex = end;
  }
  return out + line.slice(from);
}
