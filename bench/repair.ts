// Repair benchmark: time and bytes to converge a replica that missed many keys, two ways.
//   anti-entropy: the keys reach one replica only, with no clock to tell; digests find them. Time:
//     from the last key's arrival to the other replica holding them all; bytes: every byte both
//     nodes' anti-entropy moved (digests, answers, pushes) from the first key's arrival on.
//   restart: a replica that missed them (killed meanwhile) starts in memory and copies its shard.
// Usage: node bench/repair.ts [--keys 100000] [--base-port 9900]. Writes bench/results/repair.json.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { writeResult } from './probe.ts';

const { values: flags } = parseArgs({
  options: { keys: { type: 'string', default: '100000' }, 'base-port': { type: 'string', default: '9900' } },
  strict: true,
});
const keyCount = Number(flags.keys);
const basePort = Number(flags['base-port']);
if (!Number.isSafeInteger(keyCount) || keyCount < 1 || !Number.isSafeInteger(basePort)) {
  console.error('repair bench: --keys and --base-port take whole numbers');
  process.exit(2);
}
/** Versions per injection request (well under the internal body limit). */
const injectChunk = 5000;
/** Every wait of this bench ends by then. */
const waitMs = 180_000;
const entry = join(import.meta.dirname, '..', 'src', 'node', 'main.ts');
const a = `127.0.0.1:${basePort}`;
const b = `127.0.0.1:${basePort + 1}`;
const children = new Map<string, ChildProcess>();

function start(address: string): void {
  const env: Record<string, string | undefined> = { ...process.env, SOCKET_ADDRESS: address, VIEW: `${a},${b}`, LOG_LEVEL: 'warn', ANTI_ENTROPY_INTERVAL_MS: '1000' };
  delete env.SHARD_COUNT;
  delete env.DATA_DIR;
  const child = spawn(process.execPath, [entry], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  children.set(address, child);
}

async function call(address: string, method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const r = await request(`http://${address}${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    headersTimeout: 60_000,
    bodyTimeout: 60_000,
  });
  const text = await r.body.text();
  return { status: r.statusCode, body: text ? JSON.parse(text) : undefined };
}

async function until<T>(what: string, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + waitMs;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch {
      // not up yet
    }
    await sleep(50);
  }
  throw new Error(`repair bench: ${what} not reached in ${waitMs} ms`);
}

const status = (address: string) => call(address, 'GET', '/status').then((r) => r.body);
const keysAt = (address: string, n: number) => until(`${n} keys at ${address}`, async () => ((await status(address)).keys === n ? true : undefined));

try {
  start(a);
  start(b);
  await until('both nodes ready', async () => ((await status(a)).ready && (await status(b)).ready ? true : undefined));
  const { epoch, shard } = await status(a);

  // 1. Anti-entropy: the keys reach a only, as versions no clock accounts for. Rounds run while
  // they arrive, so the bytes are counted from before the first.
  const value = 'x'.repeat(100);
  const bytesBefore = (await status(a)).repair.bytes + (await status(b)).repair.bytes;
  const injectStarted = performance.now();
  for (let i = 0; i < keyCount; i += injectChunk) {
    const versions = [];
    for (let k = i; k < Math.min(keyCount, i + injectChunk); k++) {
      versions.push({ key: `key-${k}`, value, deleted: false, dot: null, stamp: { lamport: 1, node: a }, deps: {} });
    }
    const r = await call(a, 'POST', '/internal/repair', { epoch, shard, versions });
    if (r.status !== 200) throw new Error(`inject: ${r.status} ${JSON.stringify(r.body)}`);
  }
  await keysAt(a, keyCount);
  let started = performance.now();
  const injectMs = started - injectStarted;
  await keysAt(b, keyCount);
  const antiEntropyMs = performance.now() - started;
  const fromFirstKeyMs = performance.now() - injectStarted;
  const antiEntropyBytes = (await status(a)).repair.bytes + (await status(b)).repair.bytes - bytesBefore;

  // 2. Restart: b is killed and starts again in memory; it copies the shard from a.
  children.get(b)?.kill('SIGKILL');
  await until('b down', async () => (children.get(b)?.exitCode !== null || children.get(b)?.signalCode ? true : undefined));
  start(b);
  started = performance.now();
  await until('b ready', async () => ((await status(b)).ready ? true : undefined));
  await keysAt(b, keyCount);
  const restartMs = performance.now() - started;
  const restartBytes = (await status(b)).repair.syncBytesReceived;

  // The data itself (keys and values), against which the bytes moved are measured.
  let rawBytes = 0;
  for (let k = 0; k < keyCount; k++) rawBytes += `key-${k}`.length + value.length;
  const ratio = (bytes: number) => Math.round((bytes / rawBytes) * 100) / 100;
  const result = {
    finishedAt: new Date().toISOString(),
    keys: keyCount,
    valueBytes: value.length,
    rawBytes,
    antiEntropy: { convergeMs: Math.round(antiEntropyMs), injectMs: Math.round(injectMs), fromFirstKeyMs: Math.round(fromFirstKeyMs), bytes: antiEntropyBytes, bytesPerRawByte: ratio(antiEntropyBytes), intervalMs: 1000 },
    restartCopy: { convergeMs: Math.round(restartMs), bytes: restartBytes, bytesPerRawByte: ratio(restartBytes) },
  };
  console.log(`repair: ${keyCount} keys missed by one replica (raw keys + values: ${(rawBytes / 1e6).toFixed(1)} MB)`);
  console.log(
    `  anti-entropy (digests, 1 s rounds): ${result.antiEntropy.convergeMs} ms after the last key (${result.antiEntropy.fromFirstKeyMs} ms after the first; ` +
      `injecting took ${result.antiEntropy.injectMs} ms), ${(antiEntropyBytes / 1e6).toFixed(1)} MB, ${result.antiEntropy.bytesPerRawByte}x raw`,
  );
  console.log(`  restart copy (full sync):           ${result.restartCopy.convergeMs} ms, ${(restartBytes / 1e6).toFixed(1)} MB, ${result.restartCopy.bytesPerRawByte}x raw`);
  await writeResult('repair', result);
} finally {
  for (const child of children.values()) child.kill('SIGKILL');
}
