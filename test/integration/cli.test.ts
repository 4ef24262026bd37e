// The `kvs` command as an operator uses it: --version, KVS_NODES, the session file (one per store,
// locked, so parallel commands keep every dependency), the node's log format and level, and
// `kvs cluster` (fails fast on a taken port, counts only its own nodes, listens where it is told,
// restarts a node on request). Real processes throughout.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startLocalCluster } from '../../src/cli/local-cluster.ts';
import { defaultSessionFile } from '../../src/cli/session-file.ts';
import { pollUntil, READY_TIMEOUT_MS } from '../helpers/cluster.ts';
import { call } from '../helpers/http.ts';
import { portsFor } from '../helpers/ports.ts';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const KVS = join(REPO_ROOT, 'src/cli/kvs.ts');
const ports = portsFor(import.meta.url);
/** A command that fails fast does so in well under a second; this only stops a hung one. */
const COMMAND_TIMEOUT_MS = 30_000;
const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

const home = mkdtempSync(join(tmpdir(), 'kvs-cli-test-'));
after(() => rmSync(home, { recursive: true, force: true }));

type Running = { child: ChildProcess; output: () => string; exited: Promise<number | null> };

/** `kvs ...args` with HOME in a temporary folder and no inherited store settings. */
function start(args: string[], env: Record<string, string> = {}): Running {
  const childEnv: Record<string, string | undefined> = { ...process.env, HOME: home, ...env };
  for (const name of ['KVS_NODES', 'KVS_META_FILE', 'SHARD_COUNT', 'VIEW', 'CLUSTER_SECRET', 'ADMIN_TOKEN', 'LOG_FORMAT', 'NODE_TEST_CONTEXT', 'NODE_OPTIONS']) {
    if (!(name in env)) delete childEnv[name];
  }
  const child = spawn(process.execPath, [KVS, ...args], { cwd: REPO_ROOT, env: childEnv, stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

async function finished(running: Running): Promise<{ code: number | null; output: string }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      running.child.kill('SIGKILL');
      reject(new Error(`no exit within ${COMMAND_TIMEOUT_MS} ms: ${running.output()}`));
    }, COMMAND_TIMEOUT_MS);
  });
  try {
    return { code: await Promise.race([running.exited, timeout]), output: running.output() };
  } finally {
    clearTimeout(timer);
  }
}

/** The session file the commands use for a node list (under the temporary HOME). */
const sessionOf = (nodes: string[]) => defaultSessionFile(nodes, join(home, '.kvs', 'sessions'));

const kvs = (args: string[], env: Record<string, string> = {}) => finished(start(args, env));

/** Resolves once the process's output matches `pattern` (fails if it exits first or at the deadline). */
async function outputMatches(running: Running, pattern: RegExp, what: string): Promise<void> {
  await pollUntil(
    what,
    async () => {
      if (pattern.test(running.output())) return;
      if (running.child.exitCode !== null) throw new Error(`exited with ${running.child.exitCode}: ${running.output().slice(-2000)}`);
      throw new Error('not yet');
    },
    { timeoutMs: READY_TIMEOUT_MS, intervalMs: 50 },
  );
}

async function stopProcess(running: Running): Promise<void> {
  if (running.child.exitCode !== null || running.child.signalCode !== null) return;
  running.child.kill('SIGTERM');
  await finished(running);
}

/** Whether something accepts TCP connections at host:port. */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.setTimeout(2_000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

async function pidAt(address: string): Promise<number> {
  const reply = await call('GET', address, '/status', undefined, { timeoutMs: 2_000 });
  return (reply.body as { pid: number }).pid;
}

test('kvs --version prints the package version', async () => {
  const { code, output } = await kvs(['--version']);
  assert.equal(code, 0);
  assert.equal(output.trim(), VERSION);
});

describe('the session file', () => {
  // Two single-node stores, one per session file.
  const storeA = ports.address(0);
  const storeB = ports.address(1);
  let nodes: Running[] = [];

  before(async () => {
    nodes = [storeA, storeB].map((address) => start(['node', '--address', address, '--listen-host', '127.0.0.1', '--log-level', 'warn']));
    await Promise.all(
      [storeA, storeB].map((address) =>
        pollUntil(`${address} ready`, async () => {
          const reply = await call('GET', address, '/status', undefined, { timeoutMs: 1_000 });
          if ((reply.body as { ready?: unknown }).ready !== true) throw new Error('not ready');
        }, { timeoutMs: READY_TIMEOUT_MS }),
      ),
    );
  });
  after(async () => {
    await Promise.all(nodes.map(stopProcess));
  });

  test('six parallel puts through KVS_NODES all end up in the session: none overwrites another', async () => {
    // The node's own count of writes before (other tests of the file may have written there).
    const before = ((await call('GET', storeA, '/status')).body as { applied: Record<string, number> }).applied[storeA] ?? 0;
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => kvs(['put', `parallel-${i}`, `v${i}`], { KVS_NODES: storeA })));
    for (const result of results) assert.equal(result.code, 0, result.output);
    const file = sessionOf([storeA]);
    // Without a secret the metadata is readable: per shard, how many writes of each node it
    // depends on. Each put is one write at the single node, so all six are there only if no command
    // wrote its session over another's.
    const metadata = JSON.parse(readFileSync(file, 'utf8')) as { c: Record<string, Record<string, number>> };
    assert.deepEqual(metadata.c, { s0: { [storeA]: before + 6 } });
    // The lock is gone once the commands are.
    assert.deepEqual(readdirSync(join(home, '.kvs', 'sessions')).filter((name) => name.endsWith('.lock')), []);
    const read = await kvs(['get', 'parallel-5'], { KVS_NODES: storeA });
    assert.equal(read.code, 0, read.output);
    assert.equal((JSON.parse(read.output) as { value: unknown }).value, 'v5');
  });

  test('each store has its own session file', async () => {
    const result = await kvs(['put', 'other', '1', '--nodes', storeB]);
    assert.equal(result.code, 0, result.output);
    const fileA = sessionOf([storeA]);
    const fileB = sessionOf([storeB]);
    assert.notEqual(fileA, fileB);
    assert.deepEqual((JSON.parse(readFileSync(fileB, 'utf8')) as { c: unknown }).c, { s0: { [storeB]: 1 } });
    // The node list's order does not matter.
    assert.equal(sessionOf([storeB, storeA]), sessionOf([storeA, storeB]));
  });

  test("a lock left by a command that died is taken over; a live command's lock is waited for, within a bound", async () => {
    const file = join(home, 'locked-session.json');
    // The lock of a process that has exited.
    const dead = spawn(process.execPath, ['-e', '']);
    await new Promise((resolve) => dead.once('exit', resolve));
    writeFileSync(`${file}.lock`, JSON.stringify({ pid: dead.pid, host: hostname(), since: new Date().toISOString() }));
    const taken = await kvs(['put', 'after-crash', 'x', '--nodes', storeA, '--meta-file', file]);
    assert.equal(taken.code, 0, taken.output);
    // The lock of a process that runs (this one): the command gives up at its bound and says why.
    writeFileSync(`${file}.lock`, JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString() }));
    const blocked = await kvs(['put', 'blocked', 'x', '--nodes', storeA, '--meta-file', file, '--lock-wait-ms', '300']);
    assert.equal(blocked.code, 1);
    assert.match(blocked.output, new RegExp(`is locked by process ${process.pid} .*for longer than 300 ms`));
    const unwritten = await call('GET', storeA, '/kvs/blocked', { 'causal-metadata': null }, { timeoutMs: 2_000 });
    assert.equal(unwritten.status, 404, 'the blocked command sent nothing');
    rmSync(`${file}.lock`);
  });
});

describe('the node log', () => {
  test('--log-format pretty prints lines for people; JSON stays the default', async () => {
    const address = ports.address(2);
    const pretty = start(['node', '--address', address, '--listen-host', '127.0.0.1', '--log-format', 'pretty']);
    await outputMatches(pretty, /INFO.*127\.0\.0\.1:\d+ ready/, 'a pretty "ready" line');
    await stopProcess(pretty);
    assert.doesNotMatch(pretty.output().split('\n')[0]!, /^\{/, 'not JSON');
    const json = start(['node', '--address', address, '--listen-host', '127.0.0.1']);
    await outputMatches(json, /"msg":"ready"/, 'a JSON "ready" line');
    await stopProcess(json);
    const first = JSON.parse(json.output().split('\n')[0]!) as { msg: string; version: string };
    assert.equal(first.msg, 'listening');
    assert.equal(first.version, VERSION, 'the start-up line says which version runs');
  });

  test('an unknown log level or format is refused in one line, naming what is allowed', async () => {
    const level = await kvs(['node', '--address', ports.address(2), '--log-level', 'verbose']);
    assert.equal(level.code, 2);
    assert.equal(level.output, 'kvs: LOG_LEVEL must be one of trace, debug, info, warn, error, fatal, silent; got "verbose"\n');
    const format = await kvs(['node', '--address', ports.address(2)], { LOG_FORMAT: 'xml' });
    assert.equal(format.code, 2);
    assert.match(format.output, /^kvs: LOG_FORMAT must be one of json, pretty; got "xml"\n$/);
  });
});

describe('kvs cluster', () => {
  const base = ports.port(10);

  test('a taken port stops it before any node starts, and says which', async () => {
    const busy: Server = createServer();
    await new Promise<void>((resolve) => busy.listen(base + 1, '127.0.0.1', resolve));
    try {
      const result = await kvs(['cluster', '--nodes', '2', '--shards', '0', '--no-data-dir', '--base-port', String(base)]);
      assert.equal(result.code, 1);
      assert.match(result.output, new RegExp(`kvs: port ${base + 1} on 127\\.0\\.0\\.1 is already in use`));
      assert.doesNotMatch(result.output, /nodes ready/);
      assert.equal(await accepts('127.0.0.1', base), false, 'no node was started');
    } finally {
      busy.close();
    }
  });

  test('another store answering at a node\'s address is not taken for that node', async () => {
    // A node of another store on the port: the cluster's own node cannot listen there, and the
    // other's ready answer must not count for it.
    const foreign = start(['node', '--address', `127.0.0.1:${base + 5}`, '--listen-host', '127.0.0.1', '--log-level', 'warn']);
    try {
      await pollUntil('the other store ready', async () => {
        const reply = await call('GET', `127.0.0.1:${base + 5}`, '/status', undefined, { timeoutMs: 1_000 });
        if ((reply.body as { ready?: unknown }).ready !== true) throw new Error('not ready');
      }, { timeoutMs: READY_TIMEOUT_MS });
      const cluster = startLocalCluster({
        nodeCount: 1,
        shardCount: 0,
        host: '127.0.0.1',
        basePort: base + 5,
        env: { LOG_LEVEL: 'warn' },
        onLogLine: () => {},
        onUnexpectedExit: () => {},
      });
      try {
        await assert.rejects(cluster.waitReady(READY_TIMEOUT_MS), /127\.0\.0\.1:\d+ (exited before it was ready|is answered by process)/);
      } finally {
        await cluster.stop();
      }
    } finally {
      await stopProcess(foreign);
    }
  });

  test('its nodes listen on --host only, and a node restarted from its prompt stays its own', async () => {
    const cluster = start(['cluster', '--nodes', '2', '--shards', '0', '--no-data-dir', '--base-port', String(base), '--host', '127.0.0.1'], { LOG_LEVEL: 'warn' });
    try {
      await outputMatches(cluster, /2 nodes ready/, 'the cluster ready');
      const [first, second] = [`127.0.0.1:${base}`, `127.0.0.1:${base + 1}`];
      // 127.0.0.2 is this machine too (all of 127/8 is loopback), but not the address given.
      assert.equal(await accepts('127.0.0.1', base), true);
      assert.equal(await accepts('127.0.0.2', base), false, 'not listening on every interface');

      const before = await pidAt(second);
      cluster.child.stdin!.write('restart 2\n');
      await outputMatches(cluster, new RegExp(`node ${second.replaceAll('.', '\\.')} restarted, ready`), 'the restart done');
      const restarted = await pidAt(second);
      assert.notEqual(restarted, before, 'a new process');

      cluster.child.stdin!.write(`kill ${base}\n`);
      await outputMatches(cluster, /killed/, 'the kill done');
      assert.equal(await accepts('127.0.0.1', base), false, 'the killed node is gone');
      cluster.child.stdin!.write('start 1\nnodes\n');
      await outputMatches(cluster, new RegExp(`node ${first.replaceAll('.', '\\.')} started, ready[\\s\\S]*2  ${second.replaceAll('.', '\\.')}  running`), 'the node back and listed');
      const pids = [await pidAt(first), await pidAt(second)];

      cluster.child.stdin!.write('restart 9\n');
      await outputMatches(cluster, /kvs cluster: no node 9: give a number 1\.\.2/, 'a wrong node refused');

      cluster.child.kill('SIGINT');
      const { code } = await finished(cluster);
      assert.equal(code, 0);
      // Every node it ran is stopped, the restarted ones included.
      for (const pid of pids) assert.throws(() => process.kill(pid, 0), /ESRCH/, `node process ${pid} stopped`);
    } finally {
      await stopProcess(cluster);
    }
  });
});
