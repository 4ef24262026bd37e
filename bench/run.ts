// Throughput and latency of a local store: starts a cluster (as `kvs cluster` does) on ports
// 9500+, preloads keys, then for each concurrency runs a PUT phase and a GET phase of a fixed
// duration with that many workers, each one causal session (its own KvsClient and metadata) talking
// to one node, nodes chosen round-robin. Prints a table and writes bench/results/latest.json.
// Bounded: every phase ends at its deadline plus at most one request timeout.
//
//   node bench/run.ts [--nodes 6] [--shards 2] [--seconds 5] [--concurrency 1,8,32] [--keys 1000]
//                     [--value-bytes 100] [--base-port 9500] [--seed N] [--durable] [--no-secret]

import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { KvsClient, isKvsError } from '../src/client/client.ts';
import type { NodeAddress } from '../src/client/client.ts';
import { startLocalCluster } from '../src/cli/local-cluster.ts';
import type { LocalCluster } from '../src/cli/local-cluster.ts';

const { values: flags } = parseArgs({
  options: {
    nodes: { type: 'string', default: '6' },
    shards: { type: 'string', default: '2' },
    seconds: { type: 'string', default: '5' },
    concurrency: { type: 'string', default: '1,8,32' },
    keys: { type: 'string', default: '1000' },
    'value-bytes': { type: 'string', default: '100' },
    host: { type: 'string', default: '127.0.0.1' },
    'base-port': { type: 'string', default: '9500' },
    'timeout-ms': { type: 'string', default: '5000' },
    'log-level': { type: 'string', default: 'warn' },
    seed: { type: 'string', default: String(Date.now() % 2 ** 31) },
    // Durable nodes (DATA_DIR in a fresh temporary folder): every acknowledgement waits for an fsync.
    durable: { type: 'boolean', default: false },
    // Without a cluster secret (peer requests and metadata unsigned), to measure what signing costs.
    'no-secret': { type: 'boolean', default: false },
  },
  strict: true,
});

const config = {
  nodeCount: integerFlag('nodes', 1),
  shardCount: integerFlag('shards', 0),
  secondsPerPhase: integerFlag('seconds', 1),
  concurrencies: flags.concurrency.split(',').map((text) => parseIntegerOrExit('concurrency', text, 1)),
  keyCount: integerFlag('keys', 1),
  valueBytes: integerFlag('value-bytes', 0),
  host: flags.host,
  basePort: integerFlag('base-port', 1),
  timeoutMs: integerFlag('timeout-ms', 1),
  seed: integerFlag('seed', 0),
  durable: flags.durable,
  secret: !flags['no-secret'],
};

/** Latencies kept per phase; beyond this, reservoir sampling keeps a uniform sample. */
const latencySamplesMax = 1_000_000;
/** Workers writing the initial keys. */
const preloadConcurrency = 32;
/** A worker whose request failed waits this long, so a dead node does not become a busy loop. */
const errorBackoffMs = 10;
const clusterReadyTimeoutMs = 30_000;
const resultsPath = join(import.meta.dirname, 'results', 'latest.json');
const columns = ['conc', 'op', 'ops/s', 'p50 ms', 'p99 ms', 'max ms', 'ops', 'misses', 'errors'];
const columnWidths = [5, 4, 9, 8, 8, 8, 8, 7, 0];

type PhaseResult = {
  op: 'put' | 'get';
  concurrency: number;
  seconds: number;
  ops: number;
  opsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** GETs answered "Key does not exist" (counted in ops too): every key was preloaded, so these
   * are reads the store could not serve from its data. */
  misses: number;
  /** Failed operations by HTTP status ("503") or, without an answer, by error code ("timeout"). */
  errors: Record<string, number>;
};

// A uniform sample of at most `capacity` latencies (reservoir sampling), so a fast store cannot
// make the bench's memory grow without bound; count and max stay exact.
class LatencySample {
  count = 0;
  maxMs = 0;
  readonly #samples: Float64Array;

  constructor(capacity: number) {
    this.#samples = new Float64Array(capacity);
  }

  record(latencyMs: number): void {
    this.count += 1;
    this.maxMs = Math.max(this.maxMs, latencyMs);
    if (this.count <= this.#samples.length) {
      this.#samples[this.count - 1] = latencyMs;
      return;
    }
    const slot = Math.floor(random() * this.count);
    if (slot < this.#samples.length) this.#samples[slot] = latencyMs;
  }

  sorted(): Float64Array {
    return this.#samples.slice(0, Math.min(this.count, this.#samples.length)).sort();
  }
}

const random = mulberry32(config.seed);
const keys = Array.from({ length: config.keyCount }, (_, i) => `bench-${i}`);
const value = 'x'.repeat(config.valueBytes);
const nodeExits: string[] = [];

const cluster = startClusterOrExit();

let interrupted = false;
const onSignal = () => {
  if (interrupted) process.exit(130);
  interrupted = true;
  process.stderr.write('bench: interrupted, stopping the cluster\n');
  void cluster.stop().then(() => process.exit(130));
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

try {
  console.log(
    `bench: ${config.nodeCount} nodes, ${config.shardCount} shards on ${cluster.addresses[0]}..., ` +
      `${config.keyCount} keys of ${config.valueBytes} bytes, ${config.secondsPerPhase} s per phase, seed ${config.seed}`,
  );
  await cluster.waitReady(clusterReadyTimeoutMs);
  const preload = await runPreload(cluster.addresses);
  console.log(`bench: preloaded ${config.keyCount} keys in ${preload.seconds.toFixed(1)} s, errors ${formatErrors(preload.errors)}`);

  const results: PhaseResult[] = [];
  console.log(`\n${formatCells(columns)}`);
  for (const concurrency of config.concurrencies) {
    // One session per worker, kept from the PUT phase to the GET phase, as a real client would.
    const clients = Array.from(
      { length: concurrency },
      (_, worker) => new KvsClient({ nodes: [cluster.addresses[worker % cluster.addresses.length]!], timeoutMs: config.timeoutMs }),
    );
    try {
      for (const op of ['put', 'get'] as const) {
        if (interrupted) break;
        const result = await runPhase(op, clients);
        results.push(result);
        console.log(formatRow(result));
      }
    } finally {
      await Promise.all(clients.map((client) => client.close()));
    }
  }

  await mkdir(join(import.meta.dirname, 'results'), { recursive: true });
  const report = {
    finishedAt: new Date().toISOString(),
    node: process.version,
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    config,
    preload,
    results,
    nodeExits,
  };
  await writeFile(resultsPath, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`bench: wrote ${resultsPath}`);
} catch (err) {
  console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
} finally {
  await cluster.stop();
}

function startClusterOrExit(): LocalCluster {
  try {
    return startLocalCluster({
      nodeCount: config.nodeCount,
      shardCount: config.shardCount,
      host: config.host,
      basePort: config.basePort,
      env: { LOG_LEVEL: flags['log-level'], CLUSTER_SECRET: config.secret ? randomBytes(32).toString('hex') : '' },
      ...(config.durable ? { dataRoot: mkdtempSync(join(tmpdir(), 'kvs-bench-')) } : {}),
      onLogLine: (address, line) => process.stderr.write(`${address} | ${line}\n`),
      onUnexpectedExit: (address, description) => {
        nodeExits.push(`${address} ${description}`);
        process.stderr.write(`bench: node ${address} ${description}\n`);
      },
    });
  } catch (err) {
    console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(2);
  }
}

async function runPreload(addresses: NodeAddress[]): Promise<{ seconds: number; errors: Record<string, number> }> {
  const startedNs = process.hrtime.bigint();
  const errors: Record<string, number> = {};
  const clients = addresses.map((address) => new KvsClient({ nodes: [address], timeoutMs: config.timeoutMs }));
  let next = 0;
  try {
    await Promise.all(
      Array.from({ length: Math.min(preloadConcurrency, keys.length) }, async (_, worker) => {
        const client = clients[worker % clients.length]!;
        // Each key is taken once, so the loop ends after keys.length writes in all.
        while (next < keys.length && !interrupted) {
          const key = keys[next++]!;
          await client.put(key, value).catch((err: unknown) => countError(errors, err));
        }
      }),
    );
  } finally {
    await Promise.all(clients.map((client) => client.close()));
  }
  return { seconds: secondsSince(startedNs), errors };
}

async function runPhase(op: 'put' | 'get', clients: KvsClient[]): Promise<PhaseResult> {
  const latencies = new LatencySample(latencySamplesMax);
  const errors: Record<string, number> = {};
  let misses = 0;
  const startedNs = process.hrtime.bigint();
  const deadlineNs = startedNs + BigInt(config.secondsPerPhase) * 1_000_000_000n;
  await Promise.all(
    clients.map(async (client) => {
      while (process.hrtime.bigint() < deadlineNs && !interrupted) {
        const key = keys[Math.floor(random() * keys.length)]!;
        const opStartedNs = process.hrtime.bigint();
        try {
          if (op === 'put') await client.put(key, value);
          else if (!(await client.get(key)).found) misses += 1;
          latencies.record(Number(process.hrtime.bigint() - opStartedNs) / 1e6);
        } catch (err) {
          countError(errors, err);
          await sleep(errorBackoffMs);
        }
      }
    }),
  );
  const seconds = secondsSince(startedNs);
  const sorted = latencies.sorted();
  return {
    op,
    concurrency: clients.length,
    seconds,
    ops: latencies.count,
    opsPerSecond: latencies.count / seconds,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    maxMs: latencies.maxMs,
    misses,
    errors,
  };
}

/** Nearest-rank percentile; 0 for an empty sample. */
function percentile(sorted: Float64Array, fraction: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)]!;
}

function countError(errors: Record<string, number>, err: unknown): void {
  const label = isKvsError(err) ? (err.status === undefined ? err.code : String(err.status)) : 'exception';
  errors[label] = (errors[label] ?? 0) + 1;
}

function secondsSince(startedNs: bigint): number {
  return Number(process.hrtime.bigint() - startedNs) / 1e9;
}

function formatErrors(errors: Record<string, number>): string {
  const entries = Object.entries(errors);
  return entries.length === 0 ? '0' : entries.map(([label, count]) => `${label}:${count}`).join(' ');
}

function formatRow(result: PhaseResult): string {
  return formatCells([
    String(result.concurrency),
    result.op,
    result.opsPerSecond.toFixed(0),
    result.p50Ms.toFixed(2),
    result.p99Ms.toFixed(2),
    result.maxMs.toFixed(2),
    String(result.ops),
    String(result.misses),
    formatErrors(result.errors),
  ]);
}

function formatCells(cells: string[]): string {
  return cells.map((cell, i) => (i < 2 ? cell.padEnd(columnWidths[i]!) : cell.padStart(columnWidths[i]!))).join('  ');
}

// Small seeded generator, so a run's key sequence can be replayed with --seed.
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function integerFlag(name: keyof typeof flags, min: number): number {
  return parseIntegerOrExit(name, String(flags[name]), min);
}

function parseIntegerOrExit(name: string, text: string, min: number): number {
  const parsed = Number(text);
  if (!/^\d+$/.test(text.trim()) || parsed < min) {
    console.error(`bench: --${name} must be an integer >= ${min}, got ${JSON.stringify(text)}`);
    process.exit(2);
  }
  return parsed;
}
