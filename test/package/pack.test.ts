// The store as an installable package: `npm pack` (whose prepack builds dist/), the tarball
// installed into an empty project, and used from there the way a user would: `kvs/client` imported
// by a script that Node 24 runs from node_modules (where it strips no types, so only the compiled
// JavaScript can work), its declarations typechecked through `exports`, and the compiled `kvs`
// command run. Ports: test/helpers/ports.ts (0: the store of the client script, 1: `kvs node` of
// the package, 2-3: `kvs cluster` of the package).

import { after, before, describe, test } from 'node:test';
import assert, { AssertionError } from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DatabaseSync } from 'node:sqlite';
import { KvsClient } from '../../src/client/client.ts';
import { assertPortFree, NotYet, pollUntil } from '../helpers/cluster.ts';
import { TEST_CLUSTER_SECRET } from '../helpers/peer.ts';
import { portsFor } from '../helpers/ports.ts';
import { useCluster } from '../helpers/store.ts';

const REPO_ROOT = join(import.meta.dirname, '..', '..');
const SRC = join(REPO_ROOT, 'src');
/** The repo's TypeScript compiler (a devDependency), run by this same Node. */
const TSC = createRequire(import.meta.url).resolve('typescript/bin/tsc');
/** Packing builds dist/ with tsc (several seconds, more on a loaded machine). */
const PACK_TIMEOUT_MS = 90_000;
/** The dependencies come from npm's cache (filled by `npm ci`); this bounds a fetch when they do not. */
const INSTALL_TIMEOUT_MS = 60_000;
const COMMAND_TIMEOUT_MS = 30_000;
const NODE_READY_TIMEOUT_MS = 30_000;
const EXIT_TIMEOUT_MS = 10_000;

/** npm settings worth passing on to the nested npm (where its cache and registry are). */
const NPM_SETTINGS_KEPT = new Set(['npm_config_cache', 'npm_config_registry', 'npm_config_userconfig', 'npm_config_globalconfig']);

/**
 * The environment of every command run here: this Node first on PATH (npm, and the `kvs` bin's
 * `#!/usr/bin/env node`, then run on Node 24), without the test runner's context, NODE_OPTIONS, a
 * node's settings or the variables of an enclosing `npm test` (whose prefix is this repo).
 */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}` };
  for (const name of ['NODE_OPTIONS', 'NODE_TEST_CONTEXT', 'SOCKET_ADDRESS', 'VIEW', 'SHARD_COUNT', 'DATA_DIR', 'ADMIN_TOKEN', 'CLUSTER_SECRET']) delete env[name];
  for (const name of Object.keys(env)) {
    if (/^npm_/i.test(name) && !NPM_SETTINGS_KEPT.has(name.toLowerCase())) delete env[name];
  }
  return { ...env, ...extra };
}

/** Runs a command to its end; fails with its output when it exits non-zero or outlives `timeoutMs`. */
function run(file: string, args: string[], cwd: string, timeoutMs: number): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd, env: childEnv(), timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error === null) return resolve({ stdout, stderr });
      const why = error.killed ? `killed after ${timeoutMs} ms` : `exit code ${String(error.code)}`;
      reject(new Error(`${[file, ...args].join(' ')} (in ${cwd}): ${why}\n--- stdout\n${stdout}\n--- stderr\n${stderr}`));
    });
  });
}

/** A long-running command of the installed package, with its output kept for failure messages. */
class Running {
  readonly proc: ChildProcess;
  output = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(file: string, args: string[], cwd: string, extraEnv: Record<string, string> = {}) {
    this.proc = spawn(file, args, { cwd, env: childEnv(extraEnv), stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc.stdout?.setEncoding('utf8').on('data', (chunk: string) => (this.output += chunk));
    this.proc.stderr?.setEncoding('utf8').on('data', (chunk: string) => (this.output += chunk));
    this.exited = new Promise((resolve) => this.proc.once('exit', (code, signal) => resolve({ code, signal })));
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** SIGTERM, and its exit; SIGKILL when it does not exit in time (and the test fails). */
  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.running) this.proc.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), EXIT_TIMEOUT_MS)));
    const exit = await Promise.race([this.exited, late]);
    clearTimeout(timer);
    if (exit !== 'late') return exit;
    this.proc.kill('SIGKILL');
    await this.exited;
    throw new Error(`still running ${EXIT_TIMEOUT_MS} ms after SIGTERM:\n${this.output}`);
  }
}

/** Files under `dir`, relative to it, with `/` separators. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)).split('\\').join('/'));
}

type PackReport = { name: string; filename: string; size: number; unpackedSize: number; files: { path: string }[] };

describe('the package, packed and installed into an empty project', () => {
  const ports = portsFor(import.meta.url);
  const store = useCluster({ ports, nodeCount: 1 });
  let work = '';
  let project = '';
  let packed: PackReport;
  let kvsBin = '';

  before(async () => {
    // Its real path: Node reports the modules it loads by theirs (tmpdir() may be a link).
    work = realpathSync(mkdtempSync(join(tmpdir(), 'kvs-pack-')));
    // --json: npm's report of the tarball on stdout (the build writes its own lines to stderr).
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', work], REPO_ROOT, PACK_TIMEOUT_MS);
    const reports = JSON.parse(stdout) as PackReport[];
    assert.equal(reports.length, 1, stdout);
    packed = reports[0]!;

    project = join(work, 'project');
    mkdirSync(project);
    writeFileSync(join(project, 'package.json'), `${JSON.stringify({ name: 'consumer', private: true, type: 'module' }, null, 2)}\n`);
    await run('npm', ['install', join(work, packed.filename), '--prefer-offline', '--no-audit', '--no-fund'], project, INSTALL_TIMEOUT_MS);
    kvsBin = join(project, 'node_modules', '.bin', 'kvs');
  });

  after(() => {
    if (work !== '') rmSync(work, { recursive: true, force: true });
  });

  test('the tarball holds the compiled modules, their declarations and the assets, and no sources, tests or tools', () => {
    const paths = packed.files.map((file) => file.path).sort();
    for (const needed of ['package.json', 'README.md', 'bin/kvs.js', 'dist/client/client.js', 'dist/client/client.d.ts', 'dist/client/errors.js', 'dist/client/errors.d.ts', 'dist/cli/kvs.js', 'dist/node/main.js']) {
      assert.ok(paths.includes(needed), `${needed} is missing from the tarball: ${paths.join(' ')}`);
    }
    // Every module of src/ compiled, and every other file of src/ (the dashboard's page...) copied.
    const expected = filesUnder(SRC).map((file) => `dist/${file.replace(/\.ts$/, '.js')}`);
    assert.deepEqual(expected.filter((path) => !paths.includes(path)), [], 'files of src/ with nothing in dist/');
    const strays = paths.filter((path) => !path.startsWith('dist/') && !['package.json', 'README.md', 'bin/kvs.js'].includes(path));
    assert.deepEqual(strays, [], 'files outside dist/ (test/, harness/, bench/, deploy/, src/...)');
    assert.deepEqual(paths.filter((path) => path.endsWith('.ts') && !path.endsWith('.d.ts')), [], 'TypeScript sources, which Node does not run under node_modules');
    // What lands on disk is what npm listed.
    const installed = filesUnder(join(project, 'node_modules', packed.name)).sort();
    assert.deepEqual(installed, paths);
  });

  test('a script of the project puts and gets through kvs/client, with causal metadata', async () => {
    const [node] = store.nodes;
    writeFileSync(
      join(project, 'put-get.js'),
      [
        "import { KvsClient } from 'kvs/client';",
        'const [node, key] = process.argv.slice(2);',
        'const client = new KvsClient({ nodes: [node] });',
        'const metadataBefore = client.metadata;',
        "const put = await client.put(key, { from: 'node_modules', n: 1 });",
        'const metadataAfterPut = client.metadata;',
        'const got = await client.get(key);',
        // A second session resumed from the first one's metadata.
        'const resumed = new KvsClient({ nodes: [node], metadata: client.metadata });',
        'const gotResumed = await resumed.get(key);',
        'await Promise.all([client.close(), resumed.close()]);',
        "console.log(JSON.stringify({ resolved: import.meta.resolve('kvs/client'), metadataBefore, put, metadataAfterPut, got, gotResumed }));",
        '',
      ].join('\n'),
    );
    const { stdout } = await run(process.execPath, ['put-get.js', node!, 'from-the-package'], project, COMMAND_TIMEOUT_MS);
    const out = JSON.parse(stdout) as Record<string, unknown>;
    assert.equal(out.resolved, pathToFileURL(join(project, 'node_modules', packed.name, 'dist', 'client', 'client.js')).href, 'kvs/client is the installed compiled module');
    assert.equal(out.metadataBefore, null, 'a new session has no metadata');
    const probe = new KvsClient({ nodes: [node!] });
    const shardId = await probe.nodeShardId().finally(() => probe.close());
    assert.equal(typeof shardId, 'string');
    assert.deepEqual(out.put, { result: 'created', shardId });
    assert.notEqual(out.metadataAfterPut, null, 'the answer to the put carried causal metadata, and the client kept it');
    assert.notEqual(out.metadataAfterPut, undefined);
    const value = { from: 'node_modules', n: 1 };
    assert.deepEqual(out.got, { found: true, value, shardId });
    assert.deepEqual(out.gotResumed, { found: true, value, shardId }, 'a session resumed from the metadata reads the write');
  });

  test('a TypeScript consumer typechecks against the declarations that exports names', async () => {
    writeFileSync(
      join(project, 'consumer.ts'),
      [
        "import { KvsClient, isKvsError, type GetResult, type KvsClientOptions, type KvsErrorCode } from 'kvs/client';",
        "const options: KvsClientOptions = { nodes: ['127.0.0.1:8090'], timeoutMs: 2_000 };",
        'const client = new KvsClient(options);',
        "const got: GetResult = await client.get('k');",
        'const shard: string | null = got.found ? got.shardId : null;',
        "const code: KvsErrorCode = 'causal_unavailable';",
        'export const seen = [shard, code, isKvsError(new Error(), code)];',
        // Were the declarations missing or loose (any), this line would not be an error, and tsc fails.
        '// @ts-expect-error: nodes is a list of addresses',
        "new KvsClient({ nodes: '127.0.0.1:8090' });",
        '',
      ].join('\n'),
    );
    // A consumer has Node's types (@types/node): the client's options name Buffer.
    const typeRoots = join(REPO_ROOT, 'node_modules', '@types');
    await run(process.execPath, [TSC, '--module', 'nodenext', '--strict', '--noEmit', '--typeRoots', typeRoots, '--types', 'node', 'consumer.ts'], project, COMMAND_TIMEOUT_MS);
  });

  test('the installed kvs command starts on Node 24', async () => {
    const { stdout } = await run(kvsBin, ['--help'], project, COMMAND_TIMEOUT_MS);
    assert.match(stdout, /^Usage: kvs /m);
    for (const command of ['node', 'cluster', 'get', 'put']) assert.match(stdout, new RegExp(`^\\s+${command}\\b`, 'm'), `kvs --help lists ${command}`);
  });

  test('the installed kvs node runs a durable node that serves the API and the dashboard', async () => {
    const address = ports.address(1);
    await assertPortFree(address);
    // DATA_DIR: its writes go through the storage writer's worker thread, a module of the package too.
    const dataDir = join(project, 'node-data');
    const node = new Running(kvsBin, ['node', '--address', address, '--listen-host', '127.0.0.1', '--log-level', 'warn'], project, { CLUSTER_SECRET: TEST_CLUSTER_SECRET, DATA_DIR: dataDir });
    const client = new KvsClient({ nodes: [address] });
    try {
      await pollUntil(
        `kvs node of the package at ${address} to be ready`,
        async () => {
          if (!node.running) throw new AssertionError({ message: `kvs node exited:\n${node.output}` });
          if ((await client.status()).ready !== true) throw new NotYet('not ready');
        },
        { timeoutMs: NODE_READY_TIMEOUT_MS },
      );
      const shardId = await client.nodeShardId();
      assert.equal(typeof shardId, 'string');
      assert.deepEqual(await client.put('k', 'v'), { result: 'created', shardId });
      assert.deepEqual(await client.get('k'), { found: true, value: 'v', shardId });
      // The page is read from beside the compiled module: the build copied it.
      const page = await fetch(`http://${address}/ui/`);
      assert.equal(page.status, 200, node.output);
      assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
      assert.match(await page.text(), /<html/i);
      await client.close();
      assert.deepEqual(await node.stop(), { code: 0, signal: null }, `kvs node exits on SIGTERM:\n${node.output}`);
      const db = new DatabaseSync(join(dataDir, 'kvs.sqlite'), { readOnly: true });
      const row = db.prepare('SELECT data FROM versions WHERE key = ?').get('k') as { data: string } | undefined;
      db.close();
      assert.equal((JSON.parse(row?.data ?? 'null') as { value?: unknown } | null)?.value, 'v', `the acknowledged write is on disk:\n${node.output}`);
    } finally {
      await client.close();
      if (node.running) await node.stop();
    }
  });

  test(
    'the installed kvs cluster starts its nodes',
    async () => {
      const basePort = ports.port(2);
      ports.port(3);
      for (const port of [basePort, basePort + 1]) await assertPortFree(`127.0.0.1:${port}`);
      const cluster = new Running(kvsBin, ['cluster', '--nodes', '2', '--shards', '0', '--base-port', String(basePort), '--host', '127.0.0.1', '--no-data-dir'], project);
      try {
        await pollUntil(
          'kvs cluster of the package to say its nodes are ready',
          async () => {
            if (/nodes ready/.test(cluster.output)) return;
            if (!cluster.running) throw new AssertionError({ message: `kvs cluster exited:\n${cluster.output}` });
            throw new NotYet('not yet');
          },
          { timeoutMs: NODE_READY_TIMEOUT_MS },
        );
        assert.deepEqual(await cluster.stop(), { code: 0, signal: null }, `kvs cluster stops its nodes and exits on SIGTERM:\n${cluster.output}`);
      } finally {
        if (cluster.running) await cluster.stop();
      }
    },
  );
});
