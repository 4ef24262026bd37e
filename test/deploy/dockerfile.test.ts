// The Dockerfile cannot be built on this machine (no Docker engine), so what it promises is checked
// from its text, and its commands are run for real from the repository root: the CMD starts a node
// there after `npm ci`, and the HEALTHCHECK command tells a live node from a gone one.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { healthTarget } from '../../src/node/healthcheck.ts';
import { pollUntil, READY_TIMEOUT_MS } from '../helpers/cluster.ts';
import { call } from '../helpers/http.ts';
import { portsFor } from '../helpers/ports.ts';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ports = portsFor(import.meta.url);
const EXIT_TIMEOUT_MS = 10_000;

type Instruction = { keyword: string; args: string; stage: number };

/** The Dockerfile's instructions, with continuation lines joined and comments dropped. */
function instructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  let stage = -1;
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const whole = pending + line;
    pending = '';
    const match = /^(\w+)\s+(.*)$/.exec(whole);
    assert.ok(match, `a Dockerfile instruction: ${whole}`);
    const keyword = match[1]!.toUpperCase();
    if (keyword === 'FROM') stage += 1;
    out.push({ keyword, args: match[2]!, stage });
  }
  return out;
}

const dockerfile = instructions(readFileSync(new URL('Dockerfile', `file://${REPO_ROOT}`), 'utf8'));
const finalStage = Math.max(...dockerfile.map((i) => i.stage));
const inFinal = dockerfile.filter((i) => i.stage === finalStage);
const packageJson = JSON.parse(readFileSync(`${REPO_ROOT}package.json`, 'utf8')) as { devDependencies: Record<string, string> };

/** The JSON array of an exec-form instruction (CMD ["a", "b"]), which runs without a shell. */
function execForm(args: string): string[] {
  const parsed: unknown = JSON.parse(args);
  assert.ok(Array.isArray(parsed) && parsed.every((part) => typeof part === 'string'), `exec form: ${args}`);
  return parsed as string[];
}

test('the image is built in stages, from the Node the repository pins, and installs production dependencies only', () => {
  const froms = dockerfile.filter((i) => i.keyword === 'FROM');
  assert.ok(froms.length >= 2, 'a build stage and a runtime stage');
  for (const from of froms) {
    const image = from.args.split(/\s+/)[0]!;
    // The same Node as the devDependency `node` that runs the store in a checkout.
    assert.match(image, new RegExp(`^node:${packageJson.devDependencies.node!.replaceAll('.', '\\.')}-`), `${image}: pinned to the repository's Node`);
  }
  const installs = dockerfile.filter((i) => i.keyword === 'RUN' && /\bnpm (ci|install|i)\b/.test(i.args));
  assert.ok(installs.length > 0, 'dependencies are installed');
  for (const install of installs) {
    assert.match(install.args, /npm ci\b/, 'from the lock file');
    assert.match(install.args, /--omit=dev/, 'without devDependencies');
    assert.match(install.args, /--ignore-scripts/, 'without install scripts');
  }
  assert.ok(!inFinal.some((i) => i.keyword === 'RUN' && /\bnpm\b/.test(i.args)), 'nothing is installed in the runtime stage');
});

test('the runtime stage copies only the dependencies, package.json and the source', () => {
  const copies = inFinal.filter((i) => i.keyword === 'COPY' || i.keyword === 'ADD');
  assert.deepEqual(
    copies.map((i) => i.args.replace(/\s+/g, ' ')),
    ['--from=deps /app/node_modules ./node_modules', 'package.json ./', 'src ./src'],
  );
  // And the build context holds no more than that either.
  const ignore = readFileSync(`${REPO_ROOT}.dockerignore`, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  assert.deepEqual(ignore, ['*', '!package.json', '!package-lock.json', '!src']);
});

test('the node runs as an unprivileged user, with a health check', () => {
  const users = inFinal.filter((i) => i.keyword === 'USER');
  assert.equal(users.length, 1, 'one USER in the runtime stage');
  assert.ok(!['root', '0', '0:0'].includes(users[0]!.args.trim()), `not root: ${users[0]!.args}`);
  const userAt = inFinal.indexOf(users[0]!);
  const cmdAt = inFinal.findIndex((i) => i.keyword === 'CMD');
  assert.ok(userAt < cmdAt, 'the user is set before the command');
  const health = inFinal.filter((i) => i.keyword === 'HEALTHCHECK');
  assert.equal(health.length, 1);
  assert.match(health[0]!.args, /--timeout=\d+s/);
});

function commandOf(keyword: 'CMD' | 'HEALTHCHECK'): string[] {
  const instruction = inFinal.find((i) => i.keyword === keyword);
  assert.ok(instruction, keyword);
  return execForm(keyword === 'HEALTHCHECK' ? instruction.args.replace(/^.*?\bCMD\s+/, '') : instruction.args);
}

function run(argv: string[], env: Record<string, string>): ChildProcess & { output: () => string; exited: Promise<number | null> } {
  const childEnv: Record<string, string | undefined> = { ...process.env, ...env };
  for (const name of ['SHARD_COUNT', 'VIEW', 'NODE_TEST_CONTEXT', 'NODE_OPTIONS', 'CLUSTER_SECRET', 'DATA_DIR']) if (!(name in env)) delete childEnv[name];
  const child = spawn(argv[0]!, argv.slice(1), { cwd: REPO_ROOT, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return Object.assign(child, { output: () => output, exited });
}

async function exitCode(child: ReturnType<typeof run>): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no exit within ${EXIT_TIMEOUT_MS} ms: ${child.output()}`)), EXIT_TIMEOUT_MS);
  });
  try {
    return await Promise.race([child.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

let node: ReturnType<typeof run> | undefined;
after(async () => {
  if (node !== undefined && node.exitCode === null) {
    node.kill('SIGKILL');
    await node.exited;
  }
});

test("the image's CMD starts a node from the repository root, and the HEALTHCHECK tells it alive from gone", async () => {
  const address = ports.address(0);
  const env = { SOCKET_ADDRESS: address, LISTEN_HOST: '127.0.0.1', LOG_LEVEL: 'warn' };
  node = run(commandOf('CMD'), env);
  await pollUntil(
    `the node of the CMD at ${address} ready`,
    async () => {
      if (node!.exitCode !== null) throw new Error(`exited: ${node!.output()}`);
      const reply = await call('GET', address, '/status', undefined, { timeoutMs: 1_000 });
      if ((reply.body as { ready?: unknown }).ready !== true) throw new Error('not ready');
    },
    { timeoutMs: READY_TIMEOUT_MS },
  );
  const healthy = run(commandOf('HEALTHCHECK'), env);
  assert.equal(await exitCode(healthy), 0, `healthy: ${healthy.output()}`);
  assert.equal(healthy.output(), '', 'a passing check prints nothing');

  node.kill('SIGTERM');
  assert.equal(await exitCode(node), 0, 'the node stops cleanly on SIGTERM, as `docker stop` sends');
  const gone = run(commandOf('HEALTHCHECK'), env);
  assert.equal(await exitCode(gone), 1, 'no node: unhealthy');
  assert.match(gone.output(), /^kvs healthcheck: 127\.0\.0\.1:\d+: .*ECONNREFUSED/);
});

test('the health check asks where the node listens', () => {
  assert.deepEqual(healthTarget({ SOCKET_ADDRESS: 'kvs-0.kvs:8090' }), { host: '127.0.0.1', port: 8090, tls: false });
  assert.deepEqual(healthTarget({ SOCKET_ADDRESS: '10.10.0.2:8090', PORT: '9000', LISTEN_HOST: '10.10.0.2' }), { host: '10.10.0.2', port: 9000, tls: false });
  assert.deepEqual(healthTarget({ SOCKET_ADDRESS: '10.10.0.2:8090', TLS_CERT: 'node.pem' }), { host: '127.0.0.1', port: 8090, tls: true });
  assert.throws(() => healthTarget({}), /SOCKET_ADDRESS/);
});

test('the source imports only production dependencies, the only ones in the image', () => {
  const pkg = JSON.parse(readFileSync(`${REPO_ROOT}package.json`, 'utf8')) as { dependencies: Record<string, string> };
  const allowed = new Set(Object.keys(pkg.dependencies));
  const found = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts')) {
        for (const match of readFileSync(path, 'utf8').matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s+'([^']+)'|\bimport\(\s*'([^']+)'\s*\)|^\s*import\s+'([^']+)'/gm)) {
          const specifier = (match[1] ?? match[2] ?? match[3])!;
          if (specifier.startsWith('node:') || specifier.startsWith('.')) continue;
          const name = specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]!;
          found.set(name, path);
        }
      }
    }
  };
  walk(join(REPO_ROOT, 'src'));
  assert.ok(found.has('undici') && found.has('pino'), 'the scan finds the imports');
  for (const [name, path] of found) assert.ok(allowed.has(name), `${relative(REPO_ROOT, path)} imports ${name}, which is not in dependencies`);
});
