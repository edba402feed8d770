#!/usr/bin/env node
// Starts the integration-test server by hand: prints exactly one line `MONGO_CAPSULE_TEST_URI=<uri>` on stdout and keeps the
// server up until SIGTERM/SIGINT, then cleans it up. Progress and problems go to stderr.
//   node scripts/test-server.mjs > server.env & sleep 5; export $(cat server.env); ...; kill %1
// The URI may hold the generated root password of a private, throwaway server: treat it like one.
import { startTestServer } from './lib/test-server.mjs';

const log = (msg) => process.stderr.write(`test-server: ${msg}\n`);

let server;
try {
  server = await startTestServer({ log });
} catch (e) {
  log(`failed: ${e.message}`);
  process.exit(1);
}
if (server.kind === 'none') {
  log(server.reason);
  process.exit(1);
}

let stopping = false;
async function stop(signal) {
  if (stopping) return;
  stopping = true;
  log(`${signal}: stopping ${server.description}`);
  try {
    await server.stop();
    process.exit(0);
  } catch (e) {
    log(`cleanup failed: ${e.message}`);
    process.exit(1);
  }
}
process.on('SIGTERM', () => void stop('SIGTERM'));
process.on('SIGINT', () => void stop('SIGINT'));
// Also clean up when the controlling terminal goes away.
process.on('SIGHUP', () => void stop('SIGHUP'));

log(`${server.description} is up; stop with SIGTERM or Ctrl-C`);
process.stdout.write(`MONGO_CAPSULE_TEST_URI=${server.uri}\n`);
// Keep the event loop alive until a signal arrives.
setInterval(() => {}, 1 << 30);
