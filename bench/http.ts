// The store against what Node's HTTP stack allows on the same cores: wrk (one load generator for
// both) against a bare node:http JSON echo (bench/http/echo-server.ts, its own process) and against
// one node of a local store (6 nodes, 2 shards, cluster secret; about half the keys live on the
// other shard, so about half the requests are forwarded once), in memory and then durable (data
// directories in a temporary folder, removed after), and then, when an `etcd` binary is on PATH, a
// 3-member etcd cluster on the same cores (etcd fsyncs every write: a durable comparison), through
// its v3 JSON gateway (bench/http/etcd.ts, bench/http/etcd.lua; GET = POST /v3/kv/range, PUT = POST
// /v3/kv/put; wrk against one member). 1,000 keys (key-0..key-999, 100-byte values) are written
// through the store (etcd) first. For each connection count, the cells run in the order echo GET,
// store GET, echo PUT, store PUT, so drift on shared cores hits both sides of each ratio (store
// req/s / echo req/s of the same method and connections).
//
//   npm run bench -- http [--seconds 10] [--connections 1,8,32] [--only memory|durable|etcd] [--no-durable]
//                         [--no-etcd] [--warmup-seconds 15] [--base-port 11000] [--log-level warn]
//   npm run bench -- http --chart-only     (draw the chart again from bench/results/http.json)
//
// --no-durable skips the durable store, --no-etcd the etcd comparison; without etcd installed
// (apt-get install -y etcd-server) the bench says the comparison is skipped and goes on.
//
// Before the cells, each of the four (echo and store, GET and PUT) runs for --warmup-seconds at 8
// connections, unmeasured: a store fresh from its start serves a third less for its first ~15 s
// under load (measured in 4 s windows: GET 2,839, 3,319, 3,674, 4,139, then ~4,600/s), while V8
// compiles the hot paths of six processes that each see only part of the load.
//
// Ports: the echo at base-port, the in-memory store at base-port+10.., the durable one at
// base-port+20.., etcd's client URLs at base-port+30.. and its peer URLs at base-port+40... Prints
// a table, writes bench/results/http.json and docs/bench-http.svg. Cells with non-2xx answers or
// socket errors are flagged with "!". Needs wrk (apt-get install -y wrk): without it, says so and
// exits with status 3, which `npm run bench` takes as "skip" (as does --only etcd without etcd).

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { arch, availableParallelism, cpus, release, tmpdir, totalmem, type } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { KvsClient, isKvsError } from '../src/client/client.ts';
import { portsInUse, startLocalCluster } from '../src/cli/local-cluster.ts';
import type { LocalCluster } from '../src/cli/local-cluster.ts';
import { renderChart } from './http/chart.ts';
import { etcdInstallHint, etcdPorts, etcdShortVersion, etcdVersion, etcdWrkScript, preloadEtcd, startEtcdCluster } from './http/etcd.ts';
import type { EtcdCluster } from './http/etcd.ts';
import type { ChartSeries } from './http/chart.ts';
import { killRunningWrk, runWrk, wrkVersion } from './http/wrk.ts';
import type { WrkResult } from './http/wrk.ts';

const { values: flags } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    connections: { type: 'string', default: '1,8,32' },
    only: { type: 'string' },
    'no-durable': { type: 'boolean', default: false },
    'no-etcd': { type: 'boolean', default: false },
    'warmup-seconds': { type: 'string', default: '15' },
    'base-port': { type: 'string', default: '11000' },
    'log-level': { type: 'string', default: 'warn' },
    // Measure nothing: draw docs/bench-http.svg again from bench/results/http.json.
    'chart-only': { type: 'boolean', default: false },
  },
  strict: true,
});

type StoreKind = 'memory' | 'durable' | 'etcd';
type Method = 'GET' | 'PUT';

/** Whether the flags ask for the etcd comparison, and `etcd --version`'s first line if it is installed then. */
const etcdWanted = !flags['no-etcd'] && !flags['chart-only'] && (flags.only === undefined || flags.only === 'etcd');
const etcd = etcdWanted ? etcdVersion() : undefined;

const settings = {
  nodes: 6,
  shards: 2,
  keys: 1000,
  valueBytes: 100,
  host: '127.0.0.1',
  seconds: integerOrExit('seconds', flags.seconds, 1),
  warmupSeconds: integerOrExit('warmup-seconds', flags['warmup-seconds'], 0),
  connections: flags.connections.split(',').map((text) => integerOrExit('connections', text, 1)),
  stores: storesOrExit(),
  basePort: integerOrExit('base-port', flags['base-port'], 1),
  wrkTimeoutSeconds: 10,
  preloadConcurrency: 32,
  etcdMembers: 3,
};

const clusterReadyTimeoutMs = 30_000;
const echoStartTimeoutMs = 10_000;
const viewWholeTimeoutMs = 60_000;
const resultsPath = join(import.meta.dirname, 'results', 'http.json');
const chartPath = join(import.meta.dirname, '..', 'docs', 'bench-http.svg');
const value = 'v'.repeat(settings.valueBytes);
const storeBasePort = (store: StoreKind) => settings.basePort + (store === 'memory' ? 10 : 20);
const etcdPortBases = { clientBasePort: settings.basePort + 30, peerBasePort: settings.basePort + 40, members: settings.etcdMembers };

type Cell = {
  target: 'echo' | 'store';
  /** The store run this cell belongs to (an echo cell: the run it was interleaved with); 'etcd': an etcd cell is a 'store' cell. */
  store: StoreKind;
  method: Method;
  connections: number;
  seconds: number;
  requests: number;
  requestsPerSecond: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
  /** Responses outside 2xx plus socket errors (connect, read, write, timeout). */
  errors: number;
  non2xx: Record<string, number>;
  socketErrors: WrkResult['socketErrors'];
  /** Store cells: lines its nodes logged meanwhile (warnings: a link held down, a node removed from a view). */
  nodeLogLines?: number;
};
type Comparison = { store: StoreKind; method: Method; connections: number; storeCell: Cell; echoCell: Cell; ratio: number };

if (flags['chart-only']) {
  const report = JSON.parse(readFileSync(resultsPath, 'utf8')) as ChartReport;
  writeFileSync(chartPath, renderChart(chartInput(report)));
  console.log(`bench http: wrote ${chartPath} from ${resultsPath}`);
  process.exit(0);
}

const wrk = wrkVersion();
if (wrk === undefined) {
  // Status 3 (not 1 or 2) lets `npm run bench` skip this bench and go on with the others.
  console.error('bench http: wrk is not installed (it is the load generator of this bench), so this bench does not run; install it: apt-get install -y wrk');
  process.exit(3);
}
if (etcdWanted && etcd === undefined) {
  console.log(`bench http: etcd is not installed, so the etcd comparison is skipped (install it: ${etcdInstallHint}; --no-etcd skips it silently)`);
}

// Everything this bench starts, so that an error or Ctrl-C stops all of it.
let echo: ChildProcess | undefined;
let cluster: LocalCluster | undefined;
let etcdCluster: EtcdCluster | undefined;
const dataRoots = new Set<string>();
let interrupted = false;
/** Set once this bench stops what it started: what those processes say then is not news. */
let stopping = false;
/** Whether the current cluster is being stopped (its nodes then log the links to each other failing). */
let clusterStopping = false;

function removeDataRoots(): void {
  for (const root of dataRoots) rmSync(root, { recursive: true, force: true });
  dataRoots.clear();
}

async function stopEverything(): Promise<void> {
  stopping = true;
  killRunningWrk();
  if (echo !== undefined && echo.exitCode === null && echo.signalCode === null) {
    const exited = new Promise((resolve) => echo!.once('exit', resolve));
    echo.kill('SIGTERM');
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 3_000).unref())]);
    if (echo.exitCode === null && echo.signalCode === null) echo.kill('SIGKILL');
  }
  await stopCluster();
  await stopEtcd();
  removeDataRoots();
}

const onSignal = () => {
  if (interrupted) {
    // A second Ctrl-C: no more grace.
    killRunningWrk();
    echo?.kill('SIGKILL');
    cluster?.kill();
    etcdCluster?.kill();
    removeDataRoots();
    process.exit(130);
  }
  interrupted = true;
  process.stderr.write('bench http: interrupted, stopping everything it started\n');
  void stopEverything().then(() => process.exit(130));
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
// Last resort, whatever way this process ends: nothing it started outlives it.
process.on('exit', () => {
  killRunningWrk();
  if (echo !== undefined && echo.exitCode === null && echo.signalCode === null) echo.kill('SIGKILL');
  cluster?.kill();
  etcdCluster?.kill();
  removeDataRoots();
});

const nodeExits: string[] = [];
/** Lines the store's nodes logged (at --log-level, warn by default: links held down, view changes). */
let nodeLogLines = 0;
/** Times the bench waited for the store's view to be whole before a cell (see waitWholeView). */
const viewWaits: { store: StoreKind; waitedMs: number }[] = [];
const cells: Cell[] = [];
const comparisons: Comparison[] = [];
const preloads: Partial<Record<StoreKind, { seconds: number; errors: Record<string, number> }>> = {};
const columns = ['store', 'method', 'conns', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'echo req/s', 'echo p99', 'ratio'];
const widths = [7, 6, 5, 8, 7, 7, 8, 10, 8, 5];

try {
  await checkPortsFree();
  const echoUrl = `http://${settings.host}:${settings.basePort}`;
  echo = await startEcho(settings.basePort);
  console.log(
    `bench http: ${wrk}; ${availableParallelism()} cpus; echo at ${settings.host}:${settings.basePort}; ` +
      `${settings.stores.some((store) => store !== 'etcd') ? `store: ${settings.nodes} nodes, ${settings.shards} shards; ` : ''}` +
      `${settings.stores.includes('etcd') ? `${etcd} (${settings.etcdMembers} members); ` : ''}` +
      `${settings.seconds} s per cell, connections ${settings.connections.join(',')}`,
  );
  for (const store of settings.stores) {
    if (interrupted) break;
    const dataRoot = store === 'durable' ? mkdtempSync(join(tmpdir(), 'kvs-bench-http-')) : undefined;
    if (dataRoot !== undefined) dataRoots.add(dataRoot);
    const addresses = store === 'etcd' ? await startEtcd() : await startStore(store, dataRoot);
    const target = addresses[0]!;
    const preload = store === 'etcd' ? await runEtcdPreload(target) : await runPreload(addresses);
    if (interrupted) break;
    preloads[store] = preload;
    const script = store === 'etcd' ? etcdWrkScript : undefined;
    console.log(
      `\nbench http: ${store === 'etcd' ? `etcd (${settings.etcdMembers} members)` : `${store} store`} at ${addresses[0]}..${addresses.at(-1)}, wrk against ${target}; ` +
        `preloaded ${settings.keys} keys in ${preload.seconds.toFixed(1)} s${Object.keys(preload.errors).length > 0 ? `, errors ${formatCounts(preload.errors)}` : ''}`,
    );
    if (settings.warmupSeconds > 0) {
      for (const method of ['GET', 'PUT'] as const) await measure(echoUrl, method, 8, settings.warmupSeconds);
      for (const method of ['GET', 'PUT'] as const) await measure(`http://${target}`, method, 8, settings.warmupSeconds, script);
    }
    console.log(formatRow(columns));
    for (const connections of settings.connections) {
      for (const method of ['GET', 'PUT'] as const) {
        if (interrupted) break;
        if (store !== 'etcd') await waitWholeView(addresses, store);
        const echoCell = toCell('echo', store, method, connections, await measure(echoUrl, method, connections, settings.seconds));
        const linesBefore = nodeLogLines;
        const storeCell = toCell('store', store, method, connections, await measure(`http://${target}`, method, connections, settings.seconds, script));
        storeCell.nodeLogLines = nodeLogLines - linesBefore;
        cells.push(echoCell, storeCell);
        const comparison = { store, method, connections, storeCell, echoCell, ratio: storeCell.requestsPerSecond / echoCell.requestsPerSecond };
        comparisons.push(comparison);
        console.log(formatComparison(comparison));
      }
    }
    await stopCluster();
    await stopEtcd();
    if (dataRoot !== undefined) {
      rmSync(dataRoot, { recursive: true, force: true });
      dataRoots.delete(dataRoot);
    }
  }
  if (!interrupted) {
    const warned = comparisons.filter((one) => (one.storeCell.nodeLogLines ?? 0) > 0);
    if (warned.length > 0) {
      console.log(
        `\nbench http: the nodes logged warnings during ${warned.map((one) => `${one.store} ${one.method} ${one.connections}`).join(', ')} ` +
          '(above: links held down or nodes removed from views on busy cores; those cells measured a store repairing itself)',
      );
    }
    const flagged = comparisons.filter((one) => one.storeCell.errors > 0 || one.echoCell.errors > 0);
    if (flagged.length > 0) {
      console.log(`\nbench http: ${flagged.length} cell(s) with errors (!):`);
      for (const one of flagged) {
        console.log(`  ${one.store} ${one.method} ${one.connections}: store ${describeErrors(one.storeCell)}; echo ${describeErrors(one.echoCell)}`);
      }
    }
    await writeResults();
  }
} catch (err) {
  if (!interrupted) {
    console.error(`bench http: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  }
} finally {
  if (!interrupted) await stopEverything();
}

async function checkPortsFree(): Promise<void> {
  const ports = [
    settings.basePort,
    ...settings.stores.flatMap((store) => (store === 'etcd' ? etcdPorts(etcdPortBases) : Array.from({ length: settings.nodes }, (_, i) => storeBasePort(store) + i))),
  ];
  const taken = await portsInUse(settings.host, ports);
  if (taken.length > 0) {
    throw new Error(
      `ports in use on ${settings.host}: ${taken.join(', ')} (choose others with --base-port; this bench uses base-port, base-port+10.., base-port+20.., ` +
        'and for etcd base-port+30.. and base-port+40..)',
    );
  }
}

/** Spawns the echo server and resolves once it listens. */
async function startEcho(port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [join(import.meta.dirname, 'http', 'echo-server.ts'), '--port', String(port), '--host', settings.host], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  echo = child;
  createInterface({ input: child.stderr, crlfDelay: Infinity }).on('line', (line) => process.stderr.write(`echo | ${line}\n`));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the echo server did not listen within ${echoStartTimeoutMs} ms`)), echoStartTimeoutMs);
    createInterface({ input: child.stdout, crlfDelay: Infinity }).on('line', (line) => {
      if (line.startsWith('listening')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the echo server exited (${signal ?? `code ${code}`}) before it listened`));
    });
  });
  child.once('exit', (code, signal) => {
    if (!stopping) process.stderr.write(`bench http: the echo server exited (${signal ?? `code ${code}`})\n`);
  });
  return child;
}

async function stopCluster(): Promise<void> {
  clusterStopping = true;
  await cluster?.stop();
  cluster = undefined;
}

/** Starts the store and resolves with its addresses once every node is ready and sees every node. */
async function startStore(store: StoreKind, dataRoot: string | undefined): Promise<string[]> {
  cluster = startCluster(store, dataRoot);
  await cluster.waitReady(clusterReadyTimeoutMs);
  await waitWholeView(cluster.addresses, store);
  return cluster.addresses;
}

/** Starts the etcd members (data in a temporary folder of their own) and resolves with their client addresses once all are healthy. */
async function startEtcd(): Promise<string[]> {
  etcdCluster = startEtcdCluster({
    ...etcdPortBases,
    host: settings.host,
    // etcd 3.4 logs peer connections at warn: only its errors are news here.
    logLevel: 'error',
    onLogLine: (name, line) => {
      if (stopping) return;
      nodeLogLines += 1;
      process.stderr.write(`${name} | ${line}\n`);
    },
    onUnexpectedExit: (name, description) => {
      nodeExits.push(`etcd ${name} ${description}`);
      process.stderr.write(`bench http: etcd member ${name} ${description}\n`);
    },
  });
  await etcdCluster.waitReady(clusterReadyTimeoutMs);
  return etcdCluster.clientAddresses;
}

async function stopEtcd(): Promise<void> {
  await etcdCluster?.stop();
  etcdCluster = undefined;
}

function runEtcdPreload(address: string): Promise<{ seconds: number; errors: Record<string, number> }> {
  const timeoutMs = settings.wrkTimeoutSeconds * 1000;
  return preloadEtcd({ url: `http://${address}`, keys: settings.keys, value, concurrency: settings.preloadConcurrency, timeoutMs, stopped: () => interrupted });
}

function startCluster(store: StoreKind, dataRoot: string | undefined): LocalCluster {
  clusterStopping = false;
  return startLocalCluster({
    nodeCount: settings.nodes,
    shardCount: settings.shards,
    host: settings.host,
    basePort: storeBasePort(store),
    env: { LOG_LEVEL: flags['log-level'], CLUSTER_SECRET: randomBytes(32).toString('hex') },
    ...(dataRoot !== undefined ? { dataRoot } : {}),
    onLogLine: (address, line) => {
      if (clusterStopping || stopping) return;
      nodeLogLines += 1;
      process.stderr.write(`${address} | ${line}\n`);
    },
    onUnexpectedExit: (address, description) => {
      nodeExits.push(`${store} ${address} ${description}`);
      process.stderr.write(`bench http: node ${address} ${description}\n`);
    },
  });
}

/**
 * Waits until every node's view holds every node: on busy cores a node can miss probes and be
 * removed from its peers' views for a while (it is admitted again after the hold-down), and a
 * cell measured then measures a store that is repairing itself. Says so when it had to wait.
 */
async function waitWholeView(addresses: string[], store: StoreKind): Promise<void> {
  const startedMs = performance.now();
  const clients = addresses.map((address) => new KvsClient({ nodes: [address], timeoutMs: 2_000 }));
  let partial: string[] = [];
  try {
    while (!interrupted) {
      const views = await Promise.all(clients.map((client) => client.view().catch(() => [] as string[])));
      partial = addresses.filter((_, i) => views[i]!.length !== addresses.length);
      if (partial.length === 0) break;
      if (performance.now() - startedMs > viewWholeTimeoutMs) {
        throw new Error(`the ${store} store's view is not whole after ${viewWholeTimeoutMs} ms (partial at ${partial.join(', ')})`);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } finally {
    await Promise.all(clients.map((client) => client.close()));
  }
  const waitedMs = performance.now() - startedMs;
  if (waitedMs > 1_000) {
    viewWaits.push({ store, waitedMs: Math.round(waitedMs) });
    process.stderr.write(`bench http: waited ${(waitedMs / 1000).toFixed(1)} s for every node of the ${store} store to have every node in its view again\n`);
  }
}

/** Writes key-0..key-(keys-1) through the store, workers spread over every node. */
async function runPreload(addresses: string[]): Promise<{ seconds: number; errors: Record<string, number> }> {
  const startedMs = performance.now();
  const errors: Record<string, number> = {};
  const clients = addresses.map((address) => new KvsClient({ nodes: [address] }));
  let next = 0;
  try {
    await Promise.all(
      Array.from({ length: settings.preloadConcurrency }, async (_, worker) => {
        const client = clients[worker % clients.length]!;
        while (next < settings.keys && !interrupted) {
          const key = `key-${next++}`;
          await client.put(key, value).catch((err: unknown) => {
            const label = isKvsError(err) ? (err.status === undefined ? err.code : String(err.status)) : 'exception';
            errors[label] = (errors[label] ?? 0) + 1;
          });
        }
      }),
    );
  } finally {
    await Promise.all(clients.map((client) => client.close()));
  }
  return { seconds: (performance.now() - startedMs) / 1000, errors };
}

function measure(url: string, method: Method, connections: number, seconds: number, script?: string): Promise<WrkResult> {
  // After Ctrl-C nothing new starts: stopEverything may already have killed the running ones.
  if (interrupted) return Promise.reject(new Error('interrupted'));
  return runWrk({ url, method, connections, seconds, keyCount: settings.keys, valueBytes: settings.valueBytes, timeoutSeconds: settings.wrkTimeoutSeconds, script });
}

function toCell(target: Cell['target'], store: StoreKind, method: Method, connections: number, result: WrkResult): Cell {
  const seconds = result.durationUs / 1e6;
  const socket = result.socketErrors;
  const non2xx = Object.values(result.non2xx).reduce((sum, count) => sum + count, 0);
  return {
    target,
    store,
    method,
    connections,
    seconds,
    requests: result.requests,
    requestsPerSecond: seconds > 0 ? result.requests / seconds : 0,
    p50Ms: result.p50Us / 1000,
    p90Ms: result.p90Us / 1000,
    p99Ms: result.p99Us / 1000,
    maxMs: result.maxUs / 1000,
    meanMs: result.meanUs / 1000,
    errors: non2xx + socket.connect + socket.read + socket.write + socket.timeout,
    non2xx: result.non2xx,
    socketErrors: socket,
  };
}

async function writeResults(): Promise<void> {
  await mkdir(join(import.meta.dirname, 'results'), { recursive: true });
  const report = {
    finishedAt: new Date().toISOString(),
    machine: { os: `${type()} ${release()}`, arch: arch(), cpuModel: cpus()[0]?.model ?? 'unknown', cpus: availableParallelism(), totalMemoryBytes: totalmem() },
    node: process.version,
    cpus: availableParallelism(),
    loadGenerator: wrk,
    etcd: settings.stores.includes('etcd') ? etcd : null,
    settings,
    preloads,
    comparisons: comparisons.map(({ storeCell, echoCell, ...rest }) => ({
      ...rest,
      storeRequestsPerSecond: storeCell.requestsPerSecond,
      echoRequestsPerSecond: echoCell.requestsPerSecond,
      storeP99Ms: storeCell.p99Ms,
      echoP99Ms: echoCell.p99Ms,
      errors: storeCell.errors + echoCell.errors,
      nodeLogLines: storeCell.nodeLogLines ?? 0,
    })),
    cells,
    nodeExits,
    viewWaits,
  };
  await writeFile(resultsPath, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`bench http: wrote ${resultsPath}`);
  await mkdir(join(chartPath, '..'), { recursive: true });
  await writeFile(chartPath, renderChart(chartInput(report)));
  console.log(`bench http: wrote ${chartPath}`);
}

/** What the chart needs of a report (bench/results/http.json). */
type ChartReport = {
  finishedAt: string;
  machine: { cpuModel: string; cpus: number };
  node: string;
  /** `etcd --version`'s first line when etcd was measured (absent in reports from before the etcd comparison). */
  etcd?: string | null;
  settings: { nodes: number; shards: number; keys: number; valueBytes: number; seconds: number; connections: number[]; stores: StoreKind[]; etcdMembers?: number };
  cells: Cell[];
};

function chartInput(report: ChartReport) {
  const { settings, cells } = report;
  const series: ChartSeries[] = [];
  // The echo is measured once per store run: its line is the mean of those measurements.
  for (const method of ['GET', 'PUT'] as const) {
    const points = settings.connections.flatMap((connections) => {
      const same = cells.filter((cell) => cell.target === 'echo' && cell.method === method && cell.connections === connections);
      if (same.length === 0) return [];
      const mean = (pick: (cell: Cell) => number) => same.reduce((sum, cell) => sum + pick(cell), 0) / same.length;
      return [{ connections, requestsPerSecond: mean((cell) => cell.requestsPerSecond), p99Ms: mean((cell) => cell.p99Ms) }];
    });
    series.push({ label: `node:http echo ${method}`, color: '#7f7f7f', dashed: method === 'PUT', points });
  }
  const colors: Record<StoreKind, string> = { memory: '#1f77b4', durable: '#d95f02', etcd: '#2ca02c' };
  const etcdLabel = `etcd ${report.etcd ? etcdShortVersion(report.etcd) : '3.x'} (${settings.etcdMembers ?? 3} members, durable)`;
  const labels: Record<StoreKind, string> = { memory: 'store, in memory', durable: 'store, durable', etcd: etcdLabel };
  for (const store of settings.stores) {
    for (const method of ['GET', 'PUT'] as const) {
      const points = cells
        .filter((cell) => cell.target === 'store' && cell.store === store && cell.method === method)
        .map((cell) => ({ connections: cell.connections, requestsPerSecond: cell.requestsPerSecond, p99Ms: cell.p99Ms }));
      series.push({ label: `${labels[store]}, ${method}`, color: colors[store], dashed: method === 'PUT', points });
    }
  }
  const kvs = `kvs (${settings.nodes} nodes, ${settings.shards} shards, requests to one node)`;
  const withEtcd = settings.stores.includes('etcd');
  const measured = settings.stores.every((store) => store === 'etcd') ? `etcd (${settings.etcdMembers ?? 3} members, requests to one member)` : kvs;
  return {
    title: `${measured} against a bare node:http JSON echo${withEtcd && measured === kvs ? ` and a ${settings.etcdMembers ?? 3}-member etcd` : ''}`,
    subtitle:
      `wrk, ${settings.seconds} s per point, ${settings.keys.toLocaleString('en-US')} keys of ${settings.valueBytes} bytes; ` +
      `${report.machine.cpus} × ${report.machine.cpuModel.trim()}; Node ${report.node}; ${report.finishedAt.slice(0, 10)}`,
    series,
  };
}

function formatComparison(one: Comparison): string {
  const { storeCell, echoCell } = one;
  const flagged = storeCell.errors > 0 || echoCell.errors > 0;
  return formatRow([
    one.store,
    one.method,
    String(one.connections),
    storeCell.requestsPerSecond.toFixed(0),
    storeCell.p50Ms.toFixed(2),
    storeCell.p99Ms.toFixed(2),
    `${storeCell.errors}${flagged ? ' !' : ''}`,
    echoCell.requestsPerSecond.toFixed(0),
    echoCell.p99Ms.toFixed(2),
    one.ratio.toFixed(2),
  ]) + ((storeCell.nodeLogLines ?? 0) > 0 ? '  (node warnings)' : '');
}

function formatRow(cells: string[]): string {
  return cells.map((cell, i) => (i < 2 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
}

function describeErrors(cell: Cell): string {
  const socket = Object.entries(cell.socketErrors).filter(([, count]) => count > 0);
  const parts = [...Object.entries(cell.non2xx), ...socket].map(([label, count]) => `${label}:${count}`);
  return parts.length === 0 ? 'none' : `${parts.join(' ')} of ${cell.requests}`;
}

function formatCounts(counts: Record<string, number>): string {
  return Object.entries(counts)
    .map(([label, count]) => `${label}:${count}`)
    .join(' ');
}

function storesOrExit(): StoreKind[] {
  if (flags.only !== undefined) {
    if (flags.only !== 'memory' && flags.only !== 'durable' && flags.only !== 'etcd') {
      console.error(`bench http: --only takes memory, durable or etcd, got ${JSON.stringify(flags.only)}`);
      process.exit(2);
    }
    if (flags.only === 'etcd' && flags['no-etcd']) {
      console.error('bench http: --only etcd and --no-etcd leave nothing to measure');
      process.exit(2);
    }
    if (flags.only === 'etcd' && etcd === undefined && !flags['chart-only']) {
      // As for wrk: status 3, "not installed".
      console.error(`bench http: --only etcd, but etcd is not installed; install it: ${etcdInstallHint}`);
      process.exit(3);
    }
    return [flags.only];
  }
  return [...(flags['no-durable'] ? ['memory' as const] : ['memory' as const, 'durable' as const]), ...(etcd !== undefined ? ['etcd' as const] : [])];
}

function integerOrExit(name: string, text: string, min: number): number {
  const parsed = Number(text);
  if (!/^\d+$/.test(text.trim()) || parsed < min) {
    console.error(`bench http: --${name} must be an integer >= ${min}, got ${JSON.stringify(text)}`);
    process.exit(2);
  }
  return parsed;
}
