// Flood benchmark: overload one node of a 3-node replicated-only store with many keep-alive
// connections writing large values, and see what the store does: memory of every node, how fast the
// flooded node still answers GET /view, what clients got (2xx, 503 with Retry-After, other, nothing),
// whether the view held, how much replication is left, and whether every acknowledged write is
// readable at every replica afterwards. The scenario itself is bench/flood-run.ts.
//
//   npm run bench -- flood [--connections 200] [--value-bytes 1000000] [--seconds 20]
//                          [--settle-seconds 30] [--until-drained] [--timeout-ms 10000]
//                          [--readback-seconds 60] [--honor-retry-after] [--nodes 3]
//                          [--base-port 9700] [--log-level warn]
//
// Prints a table, then one JSON line (also written to bench/results/flood.json). Exit status 1 when
// the read-back fails (or the bench itself fails), 2 on bad flags.

import { readdir, readFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startLocalCluster } from '../src/cli/local-cluster.ts';
import type { LocalCluster } from '../src/cli/local-cluster.ts';
import { formatFloodReport, runFlood } from './flood-run.ts';

const { values: flags } = parseArgs({
  options: {
    connections: { type: 'string', default: '200' },
    'value-bytes': { type: 'string', default: '1000000' },
    seconds: { type: 'string', default: '20' },
    'settle-seconds': { type: 'string', default: '30' },
    // End the settle period as soon as the backlog is 0 and the replicas' clocks agree.
    'until-drained': { type: 'boolean', default: false },
    'timeout-ms': { type: 'string', default: '10000' },
    'readback-seconds': { type: 'string', default: '60' },
    // Wait out Retry-After before the next PUT on a connection (default: keep flooding).
    'honor-retry-after': { type: 'boolean', default: false },
    nodes: { type: 'string', default: '3' },
    host: { type: 'string', default: '127.0.0.1' },
    'base-port': { type: 'string', default: '9700' },
    'log-level': { type: 'string', default: 'warn' },
  },
  strict: true,
});

const config = {
  connections: integerFlag('connections', 1),
  valueBytes: integerFlag('value-bytes', 1),
  seconds: integerFlag('seconds', 1),
  settleSeconds: integerFlag('settle-seconds', 0),
  timeoutMs: integerFlag('timeout-ms', 1),
  readbackSeconds: integerFlag('readback-seconds', 1),
  nodeCount: integerFlag('nodes', 2),
  basePort: integerFlag('base-port', 1),
};
const clusterReadyTimeoutMs = 30_000;
const resultsPath = join(import.meta.dirname, 'results', 'flood.json');
const nodeExits: string[] = [];

let cluster: LocalCluster;
try {
  cluster = startLocalCluster({
    nodeCount: config.nodeCount,
    shardCount: 0,
    host: flags.host,
    basePort: config.basePort,
    env: { LOG_LEVEL: flags['log-level'] },
    onLogLine: (address, line) => process.stderr.write(`${address} | ${line}\n`),
    onUnexpectedExit: (address, description) => {
      nodeExits.push(`${address} ${description}`);
      process.stderr.write(`flood: node ${address} ${description}\n`);
    },
  });
} catch (err) {
  console.error(`flood: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(2);
}

let interrupted = false;
const onSignal = () => {
  if (interrupted) {
    cluster.kill();
    process.exit(130);
  }
  interrupted = true;
  process.stderr.write('flood: interrupted, stopping the cluster\n');
  void cluster.stop().then(() => process.exit(130));
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

try {
  await cluster.waitReady(clusterReadyTimeoutMs);
  const pids = await childPidsByAddress();
  const target = cluster.addresses[0]!;
  console.log(
    `flood: ${config.nodeCount} nodes (replicated-only) at ${cluster.addresses.join(', ')}; flooding ${target} with ` +
      `${config.connections} connections x ${config.valueBytes} bytes for ${config.seconds} s, then settling ${config.settleSeconds} s`,
  );
  const result = await runFlood({
    nodes: cluster.addresses,
    target,
    connections: config.connections,
    valueBytes: config.valueBytes,
    seconds: config.seconds,
    settleSeconds: config.settleSeconds,
    settleUntilDrained: flags['until-drained'],
    requestTimeoutMs: config.timeoutMs,
    readbackSeconds: config.readbackSeconds,
    honorRetryAfter: flags['honor-retry-after'],
    pidOf: (address) => pids.get(address),
    onProgress: (line) => console.log(`flood: ${line}`),
  });
  const report = { finishedAt: new Date().toISOString(), node: process.version, ...result, nodeExits };
  console.log(`\n${formatFloodReport(result)}`);
  if (nodeExits.length > 0) console.log(`node exits: ${nodeExits.join('; ')}`);
  await mkdir(join(import.meta.dirname, 'results'), { recursive: true });
  await writeFile(resultsPath, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`flood: wrote ${resultsPath}`);
  console.log(JSON.stringify(report));
  if (!result.readback.ok) process.exitCode = 1;
} catch (err) {
  console.error(`flood: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
} finally {
  await cluster.stop();
}

/** The node processes this bench started, by SOCKET_ADDRESS, from /proc (Linux; empty elsewhere):
 * their RSS is then read from /proc too, which answers even when an overloaded node does not. */
async function childPidsByAddress(): Promise<Map<string, number>> {
  const pids = new Map<string, number>();
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return pids;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      // Fields after the command (which is in parentheses and may hold spaces): state, ppid, ...
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== process.pid) continue;
      const environ = await readFile(`/proc/${entry}/environ`, 'utf8');
      const address = environ.split('\0').find((item) => item.startsWith('SOCKET_ADDRESS='))?.slice('SOCKET_ADDRESS='.length);
      if (address !== undefined) pids.set(address, Number(entry));
    } catch {
      // The process ended, or is not ours to read.
    }
  }
  return pids;
}

function integerFlag(name: keyof typeof flags, min: number): number {
  const text = String(flags[name]);
  const parsed = Number(text);
  if (!/^\d+$/.test(text.trim()) || parsed < min) {
    console.error(`flood: --${name} must be an integer >= ${min}, got ${JSON.stringify(text)}`);
    process.exit(2);
  }
  return parsed;
}
