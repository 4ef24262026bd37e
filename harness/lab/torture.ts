// The nemesis run: `npm run torture -- --seconds N --seed S [--nodes 6 --shards 2 ...]`.
//
// Starts a lab cluster, runs seeded concurrent clients against random nodes (each client its own
// causal session; every written value unique, "c<client>-<n>"; keys from a small key space so reads
// hit overwritten keys) while a nemesis partitions, cuts off, kills and restarts nodes. Then it heals
// everything, waits for quiescence, reads every key from every replica of its shard, and runs the
// history checker. The last line of output is one JSON object; the exit status is 0 only when the
// checker finds no causal violation, no lost write and no divergent key.
//
// Faults (--faults, comma-separated): partition (random halves, both ways), oneway (random halves,
// one direction; packet- or connection-level), disconnect (one node from its peers, or its link),
// kill (SIGKILL, restart a few seconds later), latency (added delay between random pairs).
// Nodes persist to DATA_DIR (as in production), so a killed node keeps what it acknowledged;
// `--memory` runs them without DATA_DIR, where a node killed before it replicated a write it
// acknowledged loses it and the checker rightly reports that write lost.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { randomInt } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent } from 'undici';
import { Lab, jsonRequest } from './lab.ts';
import type { NodeAddress } from './lab.ts';
import { Prng } from './prng.ts';
import { wasNeverSent } from '../../src/client/errors.ts';
import { HistoryRecorder } from '../check/history.ts';
import { checkHistory, formatReport } from '../check/checker.ts';
import { KEY_ABSENT } from '../check/classify.ts';
import { WorkloadClient } from '../check/workload.ts';
import type { CheckResult } from '../check/checker.ts';

export const ALL_FAULTS = ['partition', 'oneway', 'disconnect', 'kill', 'latency'] as const;
export type Fault = (typeof ALL_FAULTS)[number];
/** Faults that lose no acknowledged write even in a store without durability (`--memory`). */
export const SAFE_FAULTS: Fault[] = ['partition', 'oneway', 'disconnect', 'latency'];

export type TortureOptions = {
  seconds: number;
  seed: number;
  nodes: number;
  /** 0: replicated-only store. */
  shards: number;
  clients: number;
  keys: number;
  faults: Fault[];
  /** Nodes with DATA_DIR (default true); false: in memory. */
  persist?: boolean;
  /** Extra environment for every node. */
  env?: Record<string, string>;
  logLevel?: string;
  /** Progress lines (nemesis actions, phases); default to stderr. */
  log?: (line: string) => void;
  keepLogs?: boolean;
  /**
   * A scripted fault schedule run instead of the random nemesis, while the clients write; the
   * clients stop when both it has finished and `seconds` have passed.
   */
  scenario?: (lab: Lab, log: (line: string) => void) => Promise<void>;
};

export type TortureResult = {
  ops: number;
  ok: number;
  failed: number;
  unknown: number;
  causalViolations: number;
  lostWrites: number;
  divergentKeys: number;
  seed: number;
  seconds: number;
  nodes: number;
  shards: number;
  clients: number;
  keys: number;
  faults: Fault[];
  persist: boolean;
  nemesis: Record<string, number>;
  quiescent: boolean;
  /** From the heal (after the clients stopped) until every replica agreed. */
  quiescenceMs: number;
  crashes: Record<NodeAddress, string[]>;
  /** Where the node logs are, when they were kept (a failed run, or --keep-logs). */
  logDir?: string;
  /** Client sessions given up after STUCK_SESSION_503S (harness/check/workload.ts) causal 503s in a row (each then starts a new one). */
  sessionsAbandoned: number;
  /** Failed requests by status and error (or transport error code). */
  errors: Record<string, number>;
  /** The checker's report. */
  report?: CheckResult;
};

/** One client request: above CAUSAL_WAIT_MS (1 s) plus a forward that fails over once or twice. */
const CLIENT_TIMEOUT_MS = 6_000;
const QUIESCENCE_TIMEOUT_MS = 60_000;
// ----------------------------------------------------------------------- one client

/** A workload client (harness/check/workload.ts) over HTTP, with its own connections. */
function httpClient(id: number, prng: Prng, recorder: HistoryRecorder): { client: WorkloadClient; close: () => Promise<void> } {
  const agent = new Agent({ connections: 2, keepAliveTimeout: 2_000, connect: { timeout: 1_000 } });
  const client = new WorkloadClient(id, prng, recorder, {
    now: () => performance.now(),
    pause: (ms) => sleep(ms),
    neverSent: wasNeverSent,
    send: async (method, node, path, body) => {
      const { status, body: parsed } = await jsonRequest(agent, method, node, path, body, CLIENT_TIMEOUT_MS);
      const object = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined;
      return { status, body: object };
    },
  });
  return { client, close: () => agent.close() };
}

// ----------------------------------------------------------------------- the nemesis

async function nemesis(lab: Lab, prng: Prng, faults: Fault[], until: number, counts: Record<string, number>, log: (line: string) => void, started: number): Promise<void> {
  const at = (): string => `${((performance.now() - started) / 1000).toFixed(1)}s`;
  const halves = (): [NodeAddress[], NodeAddress[]] => {
    const nodes = prng.shuffle(lab.addresses());
    const cut = nodes.length <= 2 ? 1 : prng.between(Math.floor(nodes.length / 2) - (nodes.length > 3 ? 1 : 0), Math.ceil(nodes.length / 2));
    return [nodes.slice(0, cut), nodes.slice(cut)];
  };
  while (performance.now() < until) {
    await sleep(Math.min(prng.between(1_000, 3_000), Math.max(0, until - performance.now())));
    if (performance.now() >= until) break;
    const fault = prng.pick(faults);
    const holdMs = prng.between(2_000, 7_000);
    let killed: NodeAddress | undefined;
    let what: string;
    switch (fault) {
      case 'partition': {
        const [a, b] = halves();
        await lab.partition([a, b]);
        what = lab.describeFaults();
        break;
      }
      case 'oneway': {
        const [a, b] = halves();
        const mode = prng.next() < 0.5 ? 'packets' : 'connections';
        await lab.partitionOneWay(a, b, mode);
        what = lab.describeFaults();
        break;
      }
      case 'disconnect': {
        const node = prng.pick(lab.addresses());
        const link = prng.next() < 0.3;
        await lab.disconnect(node, { link });
        what = lab.describeFaults();
        break;
      }
      case 'latency': {
        const [a, b] = prng.shuffle(lab.addresses());
        const ms = prng.between(50, 400);
        await lab.addLatency(a!, b!, ms);
        what = lab.describeFaults();
        break;
      }
      case 'kill': {
        const candidates = lab.running();
        if (candidates.length === 0) continue;
        killed = prng.pick(candidates);
        await lab.kill(killed);
        what = `SIGKILL ${killed}`;
        break;
      }
    }
    counts[fault] = (counts[fault] ?? 0) + 1;
    log(`[${at()}] nemesis: ${what} for ${holdMs} ms (wall clock ${new Date().toISOString()})`);
    await sleep(Math.min(holdMs, Math.max(0, until - performance.now()) + 500));
    if (killed !== undefined) {
      lab.start(killed);
      log(`[${at()}] nemesis: restart ${killed}`);
      // Not waited for here: clients hitting it while it starts is part of the test.
    } else {
      await lab.heal();
      log(`[${at()}] nemesis: heal`);
    }
  }
}

// ----------------------------------------------------------------------- the end: quiescence, final state

type NodeStatus = { address: string; ready: boolean; shard: string | null; view: string[]; applied: unknown; keys: number; versions: number; pendingEarlyWrites: number; reshardInProgress: unknown; onProbation: string[] };

/** Polls GET /status until every node is ready, sees every node, and every replica of each shard
 * has the same applied clock and key count with nothing buffered; twice in a row. */
async function waitQuiescent(lab: Lab, timeoutMs: number, log: (line: string) => void): Promise<{ quiescent: boolean; statuses: Map<NodeAddress, NodeStatus> }> {
  const deadline = performance.now() + timeoutMs;
  const all = [...lab.addresses()].sort();
  let stableRounds = 0;
  let lastSignature = '';
  let lastReason = '';
  let statuses = new Map<NodeAddress, NodeStatus>();
  while (performance.now() < deadline) {
    statuses = new Map();
    const answers = await Promise.all(all.map(async (a) => [a, (await lab.status(a)) as NodeStatus | undefined] as const));
    let reason = '';
    for (const [address, status] of answers) {
      if (status === undefined) reason ||= `${address} does not answer /status`;
      else {
        statuses.set(address, status);
        if (!status.ready) reason ||= `${address} not ready`;
        else if ([...status.view].sort().join(',') !== all.join(',')) reason ||= `${address} view is [${status.view.join(' ')}]`;
        else if (status.pendingEarlyWrites !== 0) reason ||= `${address} has ${status.pendingEarlyWrites} early writes buffered`;
        else if (status.reshardInProgress !== null && status.reshardInProgress !== undefined) reason ||= `${address} is resharding`;
      }
    }
    const byShard = new Map<string, NodeStatus[]>();
    for (const status of statuses.values()) {
      if (status.shard === null) continue;
      byShard.set(status.shard, [...(byShard.get(status.shard) ?? []), status]);
    }
    for (const [shard, members] of byShard) {
      const clocks = new Set(members.map((m) => stableJson(m.applied)));
      const keys = new Set(members.map((m) => m.keys));
      if (clocks.size > 1 || keys.size > 1) reason ||= `shard ${shard} replicas differ: ${members.map((m) => `${m.address} keys=${m.keys} applied=${stableJson(m.applied)}`).join('; ')}`;
    }
    const signature = stableJson([...statuses.values()].map((s) => [s.address, s.applied, s.keys]));
    if (reason === '' && signature === lastSignature) stableRounds++;
    else stableRounds = 0;
    lastSignature = signature;
    if (reason === '' && stableRounds >= 1) return { quiescent: true, statuses };
    if (reason !== lastReason && reason !== '') log(`  not quiescent yet: ${reason}`);
    lastReason = reason;
    await sleep(500);
  }
  log(`  NOT QUIESCENT after ${timeoutMs} ms: ${lastReason}`);
  return { quiescent: false, statuses };
}

function stableJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}

export type FinalState = { node: NodeAddress; shard: string; data: Map<string, unknown> };

/**
 * Reads every key of the key space at every node with empty metadata. A node of the key's shard
 * answers from its own replica; those answers are the final state of that replica.
 */
async function readFinalStates(lab: Lab, statuses: Map<NodeAddress, NodeStatus>, keys: number): Promise<FinalState[]> {
  const nodes = lab.addresses();
  const states = new Map<NodeAddress, FinalState>();
  for (const node of nodes) {
    const shard = statuses.get(node)?.shard;
    if (typeof shard === 'string') states.set(node, { node, shard, data: new Map() });
  }
  for (let k = 0; k < keys; k++) {
    const key = `k${k}`;
    const answers = await Promise.all(
      nodes.map(async (node) => {
        // Bounded retries: after quiescence a node answers at once; a hiccup is not a finding.
        for (let attempt = 1; ; attempt++) {
          const reply = await lab.http('GET', node, `/kvs/${encodeURIComponent(key)}`, { 'causal-metadata': null }, 10_000).catch((error: Error) => ({ status: 0, body: undefined, text: error.message }));
          if (reply.status === 200 || reply.status === 404 || attempt >= 5) return [node, reply] as const;
          await sleep(500);
        }
      }),
    );
    const shardIds = new Set(answers.filter(([, r]) => r.status === 200).map(([, r]) => r.body['shard-id'] as string));
    if (shardIds.size > 1) throw new Error(`key ${key} is reported in several shards: ${[...shardIds].join(', ')}`);
    const keyShard = [...shardIds][0];
    for (const [node, reply] of answers) {
      const state = states.get(node);
      if (state === undefined || state.shard !== keyShard) continue; // not a replica of the key's shard
      if (reply.status === 200) state.data.set(key, reply.body?.value);
      else if (!(reply.status === 404 && reply.body?.error === KEY_ABSENT)) throw new Error(`final read of ${key} at ${node}: ${reply.status} ${reply.text}`);
    }
  }
  return [...states.values()];
}

// ----------------------------------------------------------------------- the run

export async function runTorture(options: TortureOptions): Promise<TortureResult> {
  const nemesisLog: string[] = [];
  const userLog = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const log = (line: string): void => {
    nemesisLog.push(line);
    userLog(line);
  };
  const prng = new Prng(options.seed);
  const nemesisPrng = prng.fork();
  const clientPrngs = Array.from({ length: options.clients }, () => prng.fork());
  log(`torture: seed ${options.seed}, ${options.seconds} s, ${options.nodes} nodes, ${options.shards} shards, ${options.clients} clients, ${options.keys} keys, faults ${options.faults.join(',')}${options.persist === false ? ', in memory' : ', DATA_DIR'}`);
  const lab = await Lab.create({ nodeCount: options.nodes, shardCount: options.shards, env: options.env, logLevel: options.logLevel ?? 'info', persist: options.persist });
  log(`lab ${lab.prefix}: nodes ${lab.addresses().join(' ')}; logs in ${lab.logDir}`);
  let passed = false;
  try {
    const recorder = new HistoryRecorder();
    const counts: Record<string, number> = {};
    const started = performance.now();
    const until = started + options.seconds * 1000;
    const clients = clientPrngs.map((p, i) => httpClient(i, p, recorder));
    const errors = new Map<string, number>();
    // With a scenario, the clients write until it has finished (and at least `seconds`).
    let scenarioDone = options.scenario === undefined;
    const clientsUntil = (): number => (scenarioDone ? until : Number.POSITIVE_INFINITY);
    await Promise.all([
      // A little think time, so two cores also leave room for the nodes.
      ...clients.map((c) => c.client.run({ nodes: () => lab.addresses(), keys: options.keys, keepGoing: () => performance.now() < clientsUntil(), thinkMsMax: 15, errors })),
      options.scenario !== undefined
        ? options.scenario(lab, log).finally(() => {
            scenarioDone = true;
          })
        : options.faults.length > 0
          ? nemesis(lab, nemesisPrng, options.faults, until, counts, log, started)
          : Promise.resolve(),
    ]);
    await Promise.all(clients.map((c) => c.close()));

    log('healing; restarting stopped nodes; waiting for quiescence');
    await lab.heal();
    for (const node of lab.addresses()) if (!lab.isRunning(node)) lab.start(node);
    const healedAt = performance.now();
    await lab.waitReady(undefined, 30_000);
    const { quiescent, statuses } = await waitQuiescent(lab, QUIESCENCE_TIMEOUT_MS, log);
    const quiescenceMs = Math.round(performance.now() - healedAt);
    const finalStates = await readFinalStates(lab, statuses, options.keys);
    const report = checkHistory(recorder.history(), finalStates);
    log(formatReport(report));
    const result: TortureResult = {
      ops: report.ops,
      ok: report.ok,
      failed: report.failed,
      unknown: report.unknown,
      causalViolations: report.causalViolations.length,
      lostWrites: report.lostWrites.length,
      divergentKeys: report.divergentKeys.length,
      seed: options.seed,
      seconds: options.seconds,
      nodes: options.nodes,
      shards: options.shards,
      clients: options.clients,
      keys: options.keys,
      faults: options.faults,
      persist: options.persist !== false,
      nemesis: counts,
      quiescent,
      quiescenceMs,
      crashes: lab.crashes(),
      sessionsAbandoned: clients.reduce((sum, c) => sum + c.client.abandoned, 0),
      errors: Object.fromEntries([...errors].sort(([, a], [, b]) => b - a)),
      report,
    };
    passed = result.causalViolations === 0 && result.lostWrites === 0 && result.divergentKeys === 0 && quiescent && Object.keys(result.crashes).length === 0;
    if (!passed || options.keepLogs === true) {
      result.logDir = lab.logDir;
      // The evidence next to the node logs: every operation (times in ms since the run started,
      // as are the nemesis lines), and the checker's report.
      const lines = recorder.history().map((op) => JSON.stringify({ ...op, startMs: Math.round(op.startMs - started), endMs: Math.round(op.endMs - started) }));
      writeFileSync(join(lab.logDir, 'history.jsonl'), `${lines.join('\n')}\n`);
      writeFileSync(join(lab.logDir, 'report.txt'), `${formatReport(report, 200)}\n\nnemesis:\n${nemesisLog.join('\n')}\n`);
    }
    return result;
  } finally {
    await lab.close({ removeLogs: passed && options.keepLogs !== true });
  }
}

// ----------------------------------------------------------------------- command line

function parseFaults(text: string): Fault[] {
  if (text.trim() === '' || text === 'none') return [];
  const faults = text.split(',').map((f) => f.trim());
  for (const fault of faults) {
    if (!(ALL_FAULTS as readonly string[]).includes(fault)) throw new Error(`unknown fault ${fault}; known: ${ALL_FAULTS.join(', ')}`);
  }
  return faults as Fault[];
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      seconds: { type: 'string', default: '60' },
      seed: { type: 'string' },
      nodes: { type: 'string', default: '6' },
      shards: { type: 'string', default: '2' },
      clients: { type: 'string', default: '8' },
      keys: { type: 'string', default: '16' },
      faults: { type: 'string', default: ALL_FAULTS.join(',') },
      'log-level': { type: 'string', default: 'info' },
      'keep-logs': { type: 'boolean', default: false },
      memory: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      'npm run torture -- [--seconds 60] [--seed S] [--nodes 6] [--shards 2] [--clients 8] [--keys 16]\n' +
        `                   [--faults ${ALL_FAULTS.join(',')}] [--log-level info] [--keep-logs] [--memory]\n` +
        'Runs as root (network namespaces). Last line: one JSON object; exit 0 only when the checker finds\n' +
        'no causal violation, no lost write and no divergent key.\n',
    );
    return 0;
  }
  const seed = values.seed === undefined ? randomInt(1, 2 ** 31) : Number(values.seed);
  const int = (name: string, text: string, min: number): number => {
    const n = Number(text);
    if (!Number.isSafeInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}`);
    return n;
  };
  const options: TortureOptions = {
    seconds: int('seconds', values.seconds, 1),
    seed: int('seed', String(seed), 0),
    nodes: int('nodes', values.nodes, 1),
    shards: int('shards', values.shards, 0),
    clients: int('clients', values.clients, 1),
    keys: int('keys', values.keys, 1),
    faults: parseFaults(values.faults),
    logLevel: values['log-level'],
    keepLogs: values['keep-logs'],
    persist: !values.memory,
  };
  try {
    const result = await runTorture(options);
    const bad = result.causalViolations + result.lostWrites + result.divergentKeys;
    const { report, ...summary } = result;
    process.stdout.write(
      `ops ${result.ops} (ok ${result.ok}, failed ${result.failed}, unknown ${result.unknown}); causal violations ${result.causalViolations}, ` +
        `lost writes ${result.lostWrites}, divergent keys ${result.divergentKeys}; quiescent ${result.quiescent}; ` +
        `nemesis ${JSON.stringify(result.nemesis)}; crashes ${JSON.stringify(result.crashes)}${result.logDir !== undefined ? `; node logs kept in ${result.logDir}` : ''}\n`,
    );
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    return bad === 0 ? 0 : 1;
  } catch (error) {
    process.stderr.write(`torture failed: ${(error as Error).stack ?? String(error)}\n`);
    process.stdout.write(`${JSON.stringify({ error: (error as Error).message, seed: options.seed })}\n`);
    return 2;
  }
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2));
  process.exitCode = code;
}
