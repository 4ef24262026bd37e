// Memory benchmark: a 3-node replicated store (one shard, in memory) loaded with many small keys.
// Loads key-0 .. key-<n-1> with wrk (bench/load-keys.ts: every key acknowledged, 503s sent again),
// checks every node's GET /shard/key-count/s0, and reports the load rate and each node's memory
// (RSS from GET /status, V8 heap and external memory from GET /metrics) before the load, right
// after it, and once the replicas have converged, with the bytes per key and the raw data size.
// Target: under 500 MB RSS per node with 1,000,000 keys of 100 bytes.
//
//   npm run bench -- memory [--keys 1000000] [--value-bytes 100] [--base-port 11100] [--connections 64]
//
// KVS_BENCH_NODE_OPTIONS, if set, becomes the nodes' NODE_OPTIONS (and is recorded in the result),
// to measure V8 flags: e.g. `--max-semi-space-size=16`. By default V8 grows the young generation
// of a loaded node to 2 x 64 MiB (on a 64-bit machine with much memory), about 130 MB of RSS that
// the keys do not account for; the nodes' heap spaces are recorded in the result to show it.
// Prints a table; writes bench/results/memory.json. Exit status 1 when a key is missing (or the
// bench fails), 2 on bad flags; a missed memory target is reported, not an exit status.
import { randomBytes } from 'node:crypto';
import { portsInUse, startLocalCluster } from '../src/cli/local-cluster.ts';
import { loadKeys } from './load-keys.ts';
import { call, mb, metrics, rawBytes, status, until, loadFlags, writeResult } from './probe.ts';

const { keyCount, valueBytes, basePort, connections } = loadFlags('memory', { keys: 1000000, basePort: 11100 });
const nodeCount = 3;
const host = '127.0.0.1';
const targetRssBytes = 500e6;
const convergeTimeoutMs = 600_000;

const nodeOptions = process.env.KVS_BENCH_NODE_OPTIONS ?? '';

type Snapshot = {
  address: string;
  rssBytes: number;
  heapUsedBytes: number | null;
  heapTotalBytes: number | null;
  externalBytes: number | null;
  /** V8 heap space -> bytes it holds (total: committed), from nodejs_heap_space_size_total_bytes. */
  heapSpacesTotalBytes: Record<string, number>;
  keys: number;
  versions: number;
  replicationQueued: number;
};

/** The samples of one labelled gauge of GET /metrics with a `space` label, by space. */
async function heapSpaces(address: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const text = await (await fetch(`http://${address}/metrics`)).text();
  for (const match of text.matchAll(/^nodejs_heap_space_size_total_bytes\{space="(\w+)"\} ([0-9.e+-]+)$/gm)) {
    const bytes = Number(match[2]);
    if (bytes > 0) out[match[1] as string] = bytes;
  }
  return out;
}

async function snapshot(address: string): Promise<Snapshot> {
  const [s, m, spaces] = await Promise.all([status(address), metrics(address).catch(() => new Map<string, number>()), heapSpaces(address).catch(() => ({}))]);
  return {
    address,
    rssBytes: s.memory.rssBytes,
    heapUsedBytes: m.get('nodejs_heap_size_used_bytes') ?? null,
    heapTotalBytes: m.get('nodejs_heap_size_total_bytes') ?? null,
    externalBytes: m.get('nodejs_external_memory_bytes') ?? null,
    heapSpacesTotalBytes: spaces,
    keys: s.keys,
    versions: s.versions,
    replicationQueued: s.replication?.queued ?? 0,
  };
}

const taken = await portsInUse(host, Array.from({ length: nodeCount }, (_, i) => basePort + i));
if (taken.length > 0) {
  console.error(`memory bench: ports in use: ${taken.join(', ')} (choose another --base-port)`);
  process.exit(2);
}
const warnings: string[] = [];
let logLineCount = 0;
const cluster = startLocalCluster({
  nodeCount,
  shardCount: 0,
  host,
  basePort,
  env: { LOG_LEVEL: 'warn', CLUSTER_SECRET: randomBytes(32).toString('hex'), ...(nodeOptions === '' ? {} : { NODE_OPTIONS: nodeOptions }) },
  onLogLine: (address, line) => {
    logLineCount++;
    if (warnings.length < 20) warnings.push(`${address} ${line}`);
  },
  onUnexpectedExit: (address, description) => {
    console.error(`memory bench: node ${address} ${description}`);
    process.exitCode = 1;
  },
});
const { addresses } = cluster;
let failed = false;
try {
  await cluster.waitReady(30_000);
  const before = await Promise.all(addresses.map(snapshot));
  console.log(`memory: loading ${keyCount} keys of ${valueBytes} bytes into ${nodeCount} replicas (${connections} connections)...`);
  const load = await loadKeys({ addresses, keys: keyCount, valueBytes, connections });
  const afterLoad = await Promise.all(addresses.map(snapshot));
  const convergeStarted = performance.now();
  const counts = await until('every replica holds every key', convergeTimeoutMs, async () => {
    const counts = await Promise.all(addresses.map(async (a) => (await call(a, 'GET', '/shard/key-count/s0', { timeoutMs: 10_000 })).body['shard-key-count'] as number));
    return counts.every((c) => c === keyCount) ? counts : undefined;
  }, 250);
  const convergeMs = Math.round(performance.now() - convergeStarted);
  const converged = await Promise.all(addresses.map(snapshot));

  const raw = rawBytes(keyCount, valueBytes);
  const perKey = (after: Snapshot, base: Snapshot, field: 'rssBytes' | 'heapUsedBytes') =>
    after[field] === null || base[field] === null ? null : Math.round(((after[field] as number) - (base[field] as number)) / keyCount);
  const maxRss = Math.max(...converged.map((s) => s.rssBytes), ...afterLoad.map((s) => s.rssBytes));
  const result = {
    finishedAt: new Date().toISOString(),
    nodes: nodeCount,
    keys: keyCount,
    valueBytes,
    nodeOptions,
    rawBytes: raw,
    load: { ...load, convergeMs, keyCounts: counts },
    nodesBefore: before,
    nodesAfterLoad: afterLoad,
    nodesConverged: converged,
    perKeyConverged: converged.map((s, i) => ({ address: s.address, rssBytes: perKey(s, before[i] as Snapshot, 'rssBytes'), heapUsedBytes: perKey(s, before[i] as Snapshot, 'heapUsedBytes') })),
    targetRssBytes,
    maxRssBytes: maxRss,
    targetMet: maxRss < targetRssBytes,
    nodeLogLineCount: logLineCount,
    nodeLogLines: warnings,
  };

  console.log(`  load: ${keyCount} keys in ${(load.ms / 1000).toFixed(1)} s = ${load.keysPerSecond} keys/s; retries ${load.retries} ${JSON.stringify(load.retriesByStatus)}${load.socketErrors ? `; ${load.socketErrors}` : ''}`);
  console.log(`  replicas converged ${(convergeMs / 1000).toFixed(1)} s after the last acknowledgement; key counts ${counts.join(', ')}`);
  console.log(`  raw data (keys + values): ${mb(raw)} MB (${(raw / keyCount).toFixed(1)} bytes/key)`);
  const header = ['node', 'when', 'RSS MB', 'heap used MB', 'heap total MB', 'external MB', 'keys', 'versions', 'RSS B/key', 'heap B/key'];
  const rows: string[][] = [];
  for (const [when, snaps] of [['before', before], ['after load', afterLoad], ['converged', converged]] as const) {
    snaps.forEach((s, i) => {
      const base = before[i] as Snapshot;
      const fmt = (v: number | null) => (v === null ? '-' : mb(v));
      const per = (v: number | null) => (when === 'before' || v === null ? '-' : String(v));
      rows.push([s.address, when, mb(s.rssBytes), fmt(s.heapUsedBytes), fmt(s.heapTotalBytes), fmt(s.externalBytes), String(s.keys), String(s.versions), per(perKey(s, base, 'rssBytes')), per(perKey(s, base, 'heapUsedBytes'))]);
    });
  }
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] as string).length)));
  const line = (cells: string[]) => `  ${cells.map((cell, c) => (c < 2 ? cell.padEnd(widths[c] as number) : cell.padStart(widths[c] as number))).join('  ')}`;
  console.log(line(header));
  for (const row of rows) console.log(line(row));
  const space = (s: Snapshot, name: string) => mb(s.heapSpacesTotalBytes[name] ?? 0);
  for (const s of converged) console.log(`  ${s.address} heap spaces when converged (MB committed): new ${space(s, 'new')}, old ${space(s, 'old')}, large objects ${space(s, 'large_object')}`);
  if (nodeOptions !== '') console.log(`  nodes ran with NODE_OPTIONS=${nodeOptions}`);
  console.log(`  target: under ${mb(targetRssBytes)} MB RSS per node: ${result.targetMet ? 'met' : 'NOT met'} (highest ${mb(maxRss)} MB)`);
  if (logLineCount > 0) console.log(`  node log lines (warn and above): ${logLineCount}; the first:\n    ${warnings.slice(0, 5).join('\n    ')}`);
  await writeResult('memory', result);
} catch (error) {
  failed = true;
  console.error(`memory bench: ${error instanceof Error ? error.message : String(error)}`);
} finally {
  await cluster.stop();
}
if (failed) process.exit(1);
