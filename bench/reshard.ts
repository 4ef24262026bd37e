// Reshard benchmark: 6 nodes with SHARD_COUNT=2 (in memory) loaded with key-0 .. key-<n-1>
// (bench/load-keys.ts), then PUT /shard/reshard {"shard-count": 3}, timed from the request to its
// 200, and to the store having converged on the new map: every node's GET /status at the new epoch
// with no reshard in progress, the members of each shard holding the same number of keys, and the
// shards' counts summing to the keys loaded. Reports what moved (GET /shard/reshard-plan/3 before,
// and the coordinator's /status `reshard` progress while it runs), and the bytes the nodes wrote
// meanwhile: the nodes expose no counter of reshard transfer bytes, so that is taken from each node
// process's /proc/<pid>/io (bytes written through system calls: every socket, the transfers, pings,
// replies to this bench's polling). Target: under 5 s for 100,000 keys.
//
//   npm run bench -- reshard [--keys 100000] [--value-bytes 100] [--base-port 11150] [--connections 64]
//
// Prints a summary; writes bench/results/reshard.json. Exit status 1 when the bench fails, 2 on bad flags.
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { portsInUse, startLocalCluster } from '../src/cli/local-cluster.ts';
import { loadKeys } from './load-keys.ts';
import { call, mb, metrics, processIo, rawBytes, status, until, loadFlags, writeResult } from './probe.ts';

const { keyCount, valueBytes, basePort, connections } = loadFlags('reshard', { keys: 100000, basePort: 11150 });
const nodeCount = 6;
const shardsBefore = 2;
const shardsAfter = 3;
const host = '127.0.0.1';
const targetMs = 5_000;
const adminToken = randomBytes(24).toString('hex');

const taken = await portsInUse(host, Array.from({ length: nodeCount }, (_, i) => basePort + i));
if (taken.length > 0) {
  console.error(`reshard bench: ports in use: ${taken.join(', ')} (choose another --base-port)`);
  process.exit(2);
}
const logLines: string[] = [];
let logLineCount = 0;
/** The nodes' log lines from the reshard's request on (null before). */
let reshardLines: string[] | null = null;
const cluster = startLocalCluster({
  nodeCount,
  shardCount: shardsBefore,
  host,
  basePort,
  env: { LOG_LEVEL: 'warn', CLUSTER_SECRET: randomBytes(32).toString('hex'), ADMIN_TOKEN: adminToken },
  onLogLine: (address, line) => {
    logLineCount++;
    if (logLines.length < 20) logLines.push(`${address} ${line}`);
    if (reshardLines !== null && reshardLines.length < 50) reshardLines.push(`${address} ${line}`);
  },
  onUnexpectedExit: (address, description) => {
    console.error(`reshard bench: node ${address} ${description}`);
    process.exitCode = 1;
  },
});
const { addresses } = cluster;
const coordinator = addresses[0] as string;

/** Key counts per shard if the store has converged on `epoch` with `shards` shards (see the head of this file), else undefined. */
async function convergedOn(epoch: number, shards: number): Promise<Record<string, number> | undefined> {
  const statuses = await Promise.all(addresses.map(status));
  if (statuses.some((s) => s.epoch !== epoch || s.reshardInProgress !== null || !s.ready)) return undefined;
  const byShard: Record<string, number[]> = {};
  for (const s of statuses) if (s.shard !== null) (byShard[s.shard] ??= []).push(s.keys);
  const counts: Record<string, number> = {};
  for (const [shard, keys] of Object.entries(byShard)) {
    if (keys.some((k) => k !== keys[0])) return undefined;
    counts[shard] = keys[0] as number;
  }
  return Object.values(counts).reduce((a, b) => a + b, 0) === keyCount && Object.keys(counts).length === shards ? counts : undefined;
}

type Counters = { io: { written: number; read: number } | null; syncBytes: number; antiEntropyBytes: number };
const counters = (address: string, pid: number): Promise<Counters> =>
  Promise.all([processIo(pid), metrics(address)]).then(([io, m]) => ({ io, syncBytes: m.get('kvs_sync_received_bytes_total') ?? 0, antiEntropyBytes: m.get('kvs_anti_entropy_bytes_total') ?? 0 }));

let failed = false;
try {
  await cluster.waitReady(30_000);
  console.log(`reshard: loading ${keyCount} keys of ${valueBytes} bytes into ${nodeCount} nodes, ${shardsBefore} shards (${connections} connections)...`);
  const load = await loadKeys({ addresses, keys: keyCount, valueBytes, connections });
  const loaded = await until('every key in its shard', 120_000, async () => {
    const ids = (await call(coordinator, 'GET', '/shard/ids')).body['shard-ids'] as string[];
    const counts = await Promise.all(ids.map(async (id) => (await call(coordinator, 'GET', `/shard/key-count/${id}`)).body['shard-key-count'] as number));
    return counts.reduce((a, b) => a + b, 0) === keyCount ? Object.fromEntries(ids.map((id, i) => [id, counts[i]])) : undefined;
  }, 250);
  console.log(`  load: ${keyCount} keys in ${(load.ms / 1000).toFixed(1)} s = ${load.keysPerSecond} keys/s; retries ${load.retries} ${JSON.stringify(load.retriesByStatus)}; per shard ${JSON.stringify(loaded)}`);
  const epochBefore = (await status(coordinator)).epoch as number;
  await until(`replicas in step at epoch ${epochBefore}`, 120_000, () => convergedOn(epochBefore, shardsBefore), 250);
  const plan = (await call(coordinator, 'GET', `/shard/reshard-plan/${shardsAfter}`)).body;
  const pids = await Promise.all(addresses.map(async (a) => (await status(a)).pid as number));
  const countersBefore = await Promise.all(addresses.map((a, i) => counters(a, pids[i] as number)));

  // The reshard, with the coordinator's progress sampled while it runs.
  const progress: { ms: number; reshard: unknown }[] = [];
  let polling = true;
  reshardLines = [];
  const started = performance.now();
  const poller = (async () => {
    while (polling) {
      const r = await status(coordinator).catch(() => undefined);
      // Kept when the phase or the partitions handed over change.
      const prev = progress.at(-1)?.reshard as { phase?: unknown; partitionsMoved?: unknown } | undefined;
      if (r?.reshard && (prev?.phase !== r.reshard.phase || prev?.partitionsMoved !== r.reshard.partitionsMoved)) {
        progress.push({ ms: Math.round(performance.now() - started), reshard: r.reshard });
      }
      await sleep(50);
    }
  })();
  const reply = await call(coordinator, 'PUT', '/shard/reshard', { body: { 'shard-count': shardsAfter }, token: adminToken, timeoutMs: 120_000 });
  const answeredMs = performance.now() - started;
  polling = false;
  await poller;
  // What every result records, reshard done or abandoned.
  const setting = {
    nodes: nodeCount,
    keys: keyCount,
    valueBytes,
    shards: { before: shardsBefore, after: shardsAfter },
    load: { ...load, keysPerShard: loaded },
    plan: { partitionsMoving: plan.partitionsMoving, keysMoving: plan.keysMoving, moving: plan.moving },
  };
  if (reply.status !== 200) {
    // Abandoned: what the store said, and when, is the result.
    await sleep(500);
    const countersRefused = await Promise.all(addresses.map((a, i) => counters(a, pids[i] as number).catch(() => null)));
    const writtenRefused = countersRefused.every((c, i) => c?.io && countersBefore[i]?.io)
      ? countersRefused.reduce((sum, c, i) => sum + (c?.io?.written ?? 0) - (countersBefore[i]?.io?.written ?? 0), 0)
      : null;
    const abandoned = {
      finishedAt: new Date().toISOString(),
      ...setting,
      reshard: { outcome: 'refused', status: reply.status, body: reply.body, answeredMs: Math.round(answeredMs), progress, nodeLogLines: reshardLines },
      bytes: { transferCounter: 'none: /metrics and /status count no reshard transfer bytes', processWritten: writtenRefused },
    };
    await writeResult('reshard', abandoned);
    console.log(`  plan ${shardsBefore} -> ${shardsAfter}: ${plan.partitionsMoving} of 1024 partitions move, ${plan.keysMoving} keys`);
    console.log(`  PUT /shard/reshard answered ${reply.status} after ${Math.round(answeredMs)} ms: ${JSON.stringify(reply.body)}`);
    if (writtenRefused !== null) console.log(`  the node processes wrote ${mb(writtenRefused)} MB meanwhile (all sockets)`);
    for (const p of progress) console.log(`    ${p.ms} ms: ${JSON.stringify(p.reshard)}`);
    console.log(`  node log lines since the request (warn and above):\n    ${reshardLines.join('\n    ')}`);
    throw new Error(`PUT /shard/reshard: ${reply.status} ${JSON.stringify(reply.body)}`);
  }
  const after = await until(`every node at epoch ${epochBefore + 1} with every key`, 120_000, () => convergedOn(epochBefore + 1, shardsAfter), 20);
  const convergedMs = performance.now() - started;
  const countersAfter = await Promise.all(addresses.map((a, i) => counters(a, pids[i] as number)));

  const delta = (pick: (c: Counters) => number | undefined) => countersAfter.reduce((sum, c, i) => sum + ((pick(c) ?? 0) - (pick(countersBefore[i] as Counters) ?? 0)), 0);
  const ioKnown = countersAfter.every((c) => c.io !== null) && countersBefore.every((c) => c.io !== null);
  const movedRaw = plan.keysMoving === null ? null : Math.round((rawBytes(keyCount, valueBytes) * plan.keysMoving) / keyCount);
  const last = progress.at(-1)?.reshard as Record<string, unknown> | undefined;
  const result = {
    finishedAt: new Date().toISOString(),
    ...setting,
    reshard: {
      outcome: 'resharded',
      answeredMs: Math.round(answeredMs),
      convergedMs: Math.round(convergedMs),
      targetMs,
      targetMet: convergedMs < targetMs,
      keysPerShard: after,
      lastProgress: last ?? null,
      progress,
    },
    bytes: {
      transferCounter: 'none: /metrics and /status count no reshard transfer bytes',
      processWritten: ioKnown ? delta((c) => c.io?.written) : null,
      processRead: ioKnown ? delta((c) => c.io?.read) : null,
      rawBytesOfKeysMoving: movedRaw,
      syncReceived: delta((c) => c.syncBytes),
      antiEntropy: delta((c) => c.antiEntropyBytes),
    },
    nodeLogLineCount: logLineCount,
    nodeLogLines: logLines,
    nodeLogLinesDuringReshard: reshardLines,
  };

  console.log(`  plan ${shardsBefore} -> ${shardsAfter}: ${plan.partitionsMoving} of 1024 partitions move, ${plan.keysMoving} keys`);
  console.log(`  PUT /shard/reshard answered 200 in ${Math.round(answeredMs)} ms; every node at epoch ${epochBefore + 1} with every key in ${Math.round(convergedMs)} ms`);
  console.log(`  keys per shard after: ${JSON.stringify(after)}`);
  if (last) console.log(`  coordinator's last progress sample: ${JSON.stringify(last)}`);
  const writtenText = result.bytes.processWritten === null ? 'not known (no /proc)' : `${mb(result.bytes.processWritten)} MB`;
  console.log(
    `  bytes: no reshard transfer counter in /metrics; the node processes wrote ${writtenText} meanwhile (all sockets)` +
      `${movedRaw === null ? '' : `; raw bytes of the keys moving ${mb(movedRaw)} MB`}; sync received ${mb(result.bytes.syncReceived)} MB, anti-entropy ${mb(result.bytes.antiEntropy)} MB`,
  );
  console.log(`  target: under ${targetMs / 1000} s to converge: ${result.reshard.targetMet ? 'met' : 'NOT met'}`);
  if (logLineCount > 0) console.log(`  node log lines (warn and above): ${logLineCount}; the first:\n    ${logLines.slice(0, 5).join('\n    ')}`);
  // What the reshard itself cost the nodes (a probe late, a node removed), apart from the load's.
  console.log(`  node log lines since the reshard's request (warn and above): ${reshardLines.length}${reshardLines.length > 0 ? `; the first:\n    ${reshardLines.slice(0, 5).join('\n    ')}` : ''}`);
  await writeResult('reshard', result);
} catch (error) {
  failed = true;
  console.error(`reshard bench: ${error instanceof Error ? error.message : String(error)}`);
} finally {
  await cluster.stop();
}
if (failed) process.exit(1);
