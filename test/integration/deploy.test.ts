// Deployments that cannot work: the node exits non-zero at once with one plain line on stderr that
// says what is wrong and what would be right, and nothing else (no JSON log, no stack trace).
// No store runs here (each node must refuse to start), so no useCluster: only the file's ports
// (test/helpers/ports.ts), one of them held busy.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { portsFor } from '../helpers/ports.ts';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** A refused start takes well under a second; the bound only stops a hung node from hanging the test. */
const EXIT_TIMEOUT_MS = 20_000;
const ports = portsFor(import.meta.url);
const BUSY_PORT = ports.port(0);
/** Addresses of nodes that never start: the node of each test refuses first. */
const [N1, N2, N3, N4] = [1, 2, 3, 4].map((i) => ports.address(i)) as [string, string, string, string];

function startNode(env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const childEnv: Record<string, string | undefined> = { ...process.env, ...env };
  for (const name of ['SHARD_COUNT', 'VIEW', 'NODE_TEST_CONTEXT', 'NODE_OPTIONS']) if (!(name in env)) delete childEnv[name];
  const child = spawn(process.execPath, ['src/node/main.ts'], { cwd: REPO_ROOT, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the node did not exit within ${EXIT_TIMEOUT_MS} ms; stderr: ${stderr}`));
    }, EXIT_TIMEOUT_MS);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function assertRefused(result: { code: number | null; stdout: string; stderr: string }, mentions: RegExp, what: string): void {
  assert.notEqual(result.code, 0, `${what}: must exit non-zero`);
  assert.equal(result.stdout, '', `${what}: nothing on stdout (no JSON log line): ${result.stdout}`);
  const lines = result.stderr.split('\n').filter((line) => line.length > 0);
  assert.equal(lines.length, 1, `${what}: one line on stderr, got ${JSON.stringify(result.stderr)}`);
  assert.match(lines[0] as string, /^kvs: /, `${what}: in the kvs: style`);
  assert.match(lines[0] as string, mentions, `${what}: says what is wrong`);
}

let busy: Server | undefined;
before(async () => {
  busy = createServer();
  await new Promise<void>((resolve) => busy!.listen(BUSY_PORT, '127.0.0.1', resolve));
});
after(() => busy?.close());

test('an address with impossible IPv4 octets is refused', async () => {
  assertRefused(await startNode({ SOCKET_ADDRESS: '999.999.999.999:8090' }), /999\.999\.999\.999.*0\.\.255/, 'SOCKET_ADDRESS 999.999.999.999');
  assertRefused(
    await startNode({ SOCKET_ADDRESS: N1, VIEW: `${N1},bad_host:${ports.port(2)}` }),
    new RegExp(`VIEW entry "bad_host:${ports.port(2)}".*host name`),
    'a malformed host name in VIEW',
  );
});

test('a SHARD_COUNT the VIEW cannot fill is refused', async () => {
  const view = [N1, N2, N3, N4].join(',');
  for (const count of ['3', '1000']) {
    assertRefused(await startNode({ SOCKET_ADDRESS: N1, VIEW: view, SHARD_COUNT: count }), /needs at least .* nodes in VIEW/, `SHARD_COUNT=${count}`);
  }
});

test('a port in use is refused in one line, not a stack trace', async () => {
  assertRefused(
    await startNode({ SOCKET_ADDRESS: `127.0.0.1:${BUSY_PORT}`, LISTEN_HOST: '127.0.0.1', LOG_LEVEL: 'warn' }),
    new RegExp(`port ${BUSY_PORT} on 127\\.0\\.0\\.1 is already in use`),
    'port in use',
  );
});
