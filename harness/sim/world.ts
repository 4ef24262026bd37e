// One simulated world: real KvsNode runtimes (and so real NodeCores) on a simulated clock, network
// and disk, all driven by one seed. Clients run a random workload and record a history; a nemesis
// partitions, cuts one way, slows links, crashes and restarts nodes, starts new ones, adds them to
// shards and reshards, all while the clients run. Then every fault heals and the store must become
// quiescent within a bounded simulated time (liveness); the checker of harness/check judges the
// history against what every replica finally holds (safety).

import { createHash } from 'node:crypto';
import { pino, type Logger } from 'pino';
import { checkHistory, formatReport, type ReplicaState } from '../check/checker.ts';
import { HistoryRecorder } from '../check/history.ts';
import { WorkloadClient } from '../check/workload.ts';
import type { PlantedBug } from '../../src/core/planted-bugs.ts';
import { asNodeAddress, nodeAddress } from '../../src/core/address.ts';
import { shardOfKey } from '../../src/core/shard-map.ts';
import type { NodeAddress } from '../../src/core/types.ts';
import { Prng } from '../lab/prng.ts';
import { loadConfig } from '../../src/node/config.ts';
import { sleep, type PeerTransport, type Timers } from '../../src/node/env.ts';
import type { HttpRequest } from '../../src/node/http-server.ts';
import { KvsNode } from '../../src/node/node.ts';
import { PeerUnreachableError } from '../../src/node/peer-client.ts';
import { SimDisk, SimStorage } from './disk.ts';
import { SimNetwork, type NetworkSettings } from './network.ts';
import { ALWAYS, Scheduler, type Owner } from './scheduler.ts';

export const FAULTS = ['partition', 'oneway', 'isolate', 'slow', 'crash', 'join', 'add-member', 'reshard'] as const;
export type Fault = (typeof FAULTS)[number];

/** Everything a world is made of; `settingsFor(seed)` draws them (swarm testing: each seed its own mix). */
export interface WorldSettings {
  nodes: number;
  /** Shards at start; 0 starts a replicated store (no SHARD_COUNT). */
  shards: number;
  clients: number;
  keys: number;
  /** Simulated seconds of client load with faults. */
  seconds: number;
  /** Simulated seconds the store gets, after the heal, to become quiescent. */
  livenessSeconds: number;
  faults: Fault[];
  /** Simulated ms between two nemesis steps, uniform in [min, max]. */
  nemesisEveryMs: [number, number];
  network: NetworkSettings;
  /** Node environment overrides (timers and bounds of the runtime). */
  nodeEnv: Record<string, string>;
  /** Simulated fsync time, uniform in [min, max] ms. */
  fsyncMs: [number, number];
}

export interface WorldOptions {
  seed: number;
  bugs?: readonly PlantedBug[];
  /** Replaces the drawn settings, field by field. */
  settings?: Partial<WorldSettings>;
  /** JSON log lines of every node (level debug), with simulated time, to this function. */
  log?: (line: string) => void;
  /** Called when the run is over, before the nodes are torn down (to look at their state). */
  onEnd?: (world: World) => void;
}

export interface WorldResult {
  seed: number;
  /** Hash of the history: the same seed gives the same hash. */
  hash: string;
  passed: boolean;
  ops: number;
  ok: number;
  failed: number;
  unknown: number;
  causalViolations: number;
  lostWrites: number;
  divergentKeys: number;
  quiescent: boolean;
  /** Simulated ms from the heal to quiescence (null when it never came). */
  quiescenceMs: number | null;
  /** Errors thrown inside a node (handlers, background tasks): each is a bug. */
  nodeErrors: string[];
  simSeconds: number;
  events: number;
  nemesis: string[];
  network: SimNetwork['stats'];
  settings: WorldSettings;
  bugs: PlantedBug[];
  /** The checker's report, and why the run was not quiescent, when it failed. */
  report?: string;
  notQuiescentBecause?: string;
}

const PORT = 8090;
const CLIENT_TIMEOUT_MS = 6_000;
const ADMIN_TIMEOUT_MS = 30_000;

const address = (i: number): NodeAddress => nodeAddress(`10.10.0.${i + 2}:${PORT}`);

/** The world a seed stands for: sizes, fault mix, network quality and node timings. */
export function settingsFor(seed: number): WorldSettings {
  const prng = new Prng(seed ^ 0x5eed);
  const nodes = prng.between(3, 6);
  const shards = prng.next() < 0.25 ? 0 : prng.between(1, Math.floor(nodes / 2));
  const faults = FAULTS.filter(() => prng.next() < 0.6);
  const settings: WorldSettings = {
    nodes,
    shards,
    clients: prng.between(2, 5),
    keys: prng.between(2, 12),
    seconds: prng.between(15, 30),
    livenessSeconds: 60,
    faults,
    nemesisEveryMs: prng.next() < 0.5 ? [500, 2_000] : [2_000, 5_000],
    network: {
      latencyMs: prng.next() < 0.5 ? [0.2, 2] : [1, prng.between(5, 60)],
      lossRate: prng.pick([0, 0, 0.001, 0.01, 0.03]),
      duplicateRate: prng.pick([0, 0.01, 0.05]),
      holdMsMax: prng.pick([0, 2_000, 10_000]),
      connectTimeoutMs: 500,
    },
    nodeEnv: {
      // Authenticated peers and sealed metadata, as in production.
      CLUSTER_SECRET: `sim-secret-${seed}-0123456789`,
      ANTI_ENTROPY_INTERVAL_MS: String(prng.pick([500, 2_000, 5_000])),
      REPLICATION_QUEUE_MAX: String(prng.pick([20, 1_000, 10_000])),
      REPLICATION_BATCH_MAX: String(prng.pick([1, 16, 256])),
      PENDING_MAX: String(prng.pick([10, 10_000])),
      CAUSAL_WAIT_MS: String(prng.pick([200, 1_000])),
      HOLD_DOWN_MS: String(prng.pick([1_000, 3_000])),
    },
    fsyncMs: prng.next() < 0.5 ? [0.05, 0.5] : [1, 8],
  };
  // Drawn last, so the draws above (and every older seed's world but for this) stay as they were.
  // A grace shorter than the faults' 0.5-6 s holds collects tombstones without a crashed or cut off
  // member, which must then copy its shard afresh when it is back.
  settings.nodeEnv.TOMBSTONE_GRACE_MS = String(prng.pick([1_500, 4_000, 10_800_000]));
  // Sometimes no graveyard: safety must not rest on remembering ordinary collections (bounded, and
  // in memory); with none, nothing is collected without a member (what is must be kept: Graveyard).
  settings.nodeEnv.GRAVEYARD_MAX = String(prng.pick([0, 100_000]));
  // Sometimes a short join grace: a member down since it was added is dropped, and joins again when back.
  settings.nodeEnv.MEMBER_JOIN_GRACE_MS = String(prng.pick([2_000, 600_000]));
  return settings;
}

/** An answer to a scripted request. */
export interface ScriptReply {
  status: number;
  body: Record<string, unknown>;
}

/** One node's process: a KvsNode with its owner (dead after a crash). */
interface Process {
  owner: Owner;
  node: KvsNode;
}

export class World {
  readonly seed: number;
  readonly settings: WorldSettings;
  readonly bugs: PlantedBug[];
  readonly scheduler = new Scheduler();
  readonly network: SimNetwork;
  readonly recorder = new HistoryRecorder();
  readonly #prng: Prng;
  readonly #nemesisPrng: Prng;
  readonly #disks = new Map<NodeAddress, SimDisk>();
  readonly #processes = new Map<NodeAddress, Process>();
  /** Every node ever started, and the VIEW it starts with. */
  readonly #views = new Map<NodeAddress, NodeAddress[]>();
  readonly #nodeErrors: string[] = [];
  readonly #nemesisLog: string[] = [];
  readonly #log: ((line: string) => void) | undefined;
  readonly #onEnd: ((world: World) => void) | undefined;
  readonly #timers: Timers;
  /** Crashed nodes waiting for their restart. */
  readonly #down = new Set<NodeAddress>();
  /** Nodes that join a running store, started without SHARD_COUNT (as the spec says a joining node is). */
  readonly #joiners = new Set<NodeAddress>();
  /** Processes started so far: each one's incarnation (deterministic, unlike a real node's random one). */
  #starts = 0;
  #loadOver = false;

  constructor(options: WorldOptions) {
    this.seed = options.seed >>> 0;
    this.settings = { ...settingsFor(this.seed), ...options.settings };
    this.bugs = [...(options.bugs ?? [])];
    this.#prng = new Prng(this.seed);
    this.#nemesisPrng = this.#prng.fork();
    this.network = new SimNetwork(this.scheduler, this.#prng.fork(), this.settings.network);
    this.#log = options.log;
    this.#onEnd = options.onEnd;
    this.#timers = this.scheduler.timersFor(ALWAYS);
  }

  // ------------------------------------------------------------------ nodes

  #logger(node: NodeAddress): Logger {
    const sink = this.#log;
    if (sink === undefined) return pino({ level: 'silent' });
    return pino(
      { level: 'debug', base: { node }, timestamp: () => `,"simMs":${this.scheduler.now().toFixed(1)}` },
      { write: (line: string) => sink(line.trimEnd()) },
    );
  }

  #start(node: NodeAddress): void {
    const view = this.#views.get(node) as NodeAddress[];
    const owner: Owner = { alive: true };
    const timers = this.scheduler.timersFor(owner);
    let disk = this.#disks.get(node);
    if (!disk) this.#disks.set(node, (disk = new SimDisk()));
    const [fsyncMin, fsyncMax] = this.settings.fsyncMs;
    const fsyncPrng = this.#prng.fork();
    const storage = new SimStorage(disk, timers, () => fsyncMin + fsyncPrng.next() * (fsyncMax - fsyncMin));
    const saved = storage.load();
    const config = loadConfig({
      SOCKET_ADDRESS: node,
      VIEW: view.join(','),
      ...(this.settings.shards > 0 && !this.#joiners.has(node) ? { SHARD_COUNT: String(this.settings.shards) } : {}),
      ...this.settings.nodeEnv,
    });
    const transportCap = Math.max(config.requestTimeoutMs, config.reshardTimeoutMs);
    const transport: PeerTransport = {
      call: (peer, method, path, body, options = {}) =>
        this.network.call(owner, node, peer, { method, path, headers: { ...options.headers }, body }, Math.min(options.timeoutMs ?? config.requestTimeoutMs, transportCap)),
      close: async () => {},
    };
    const kvs = new KvsNode(config, this.#logger(node), {
      timers,
      transport,
      storage: { storage, saved },
      plantedBugs: new Set(this.bugs),
      incarnation: (++this.#starts).toString(36),
      // The simulator's turn is one delivered message: what it forwards goes in one batch.
      soon: queueMicrotask,
    });
    this.#processes.set(node, { owner, node: kvs });
    this.network.register(node, {
      owner,
      handle: (request) => kvs.handle(request),
      onError: (error, request) => this.#nodeError(node, `${request.method} ${request.path}`, error),
    });
    kvs.run().catch((error: unknown) => this.#nodeError(node, 'start-up', error));
  }

  /** `node`: the node's address, or a name for who else failed (a client, the nemesis). */
  #nodeError(node: string, where: string, error: unknown): void {
    const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
    this.#nodeErrors.push(`${node} ${where} at ${this.scheduler.now().toFixed(0)} ms: ${text}`);
  }

  #crash(node: NodeAddress): void {
    const process = this.#processes.get(node);
    if (!process) return;
    process.owner.alive = false;
    this.#processes.delete(node);
    this.network.unregister(node);
  }

  /** The nodes running now. */
  nodes(): Map<NodeAddress, KvsNode> {
    return new Map([...this.#processes].map(([address, process]) => [address, process.node]));
  }

  #alive(): NodeAddress[] {
    return [...this.#processes.keys()];
  }

  #all(): NodeAddress[] {
    return [...this.#views.keys()];
  }

  // ------------------------------------------------------------------ clients

  /** A request from outside the store (a client, an operator) to `node`. */
  #request(from: string, node: NodeAddress, method: 'GET' | 'PUT' | 'DELETE', path: string, body: unknown, timeoutMs: number) {
    const request: Omit<HttpRequest, 'remoteAddress'> = { method, path, headers: {}, body };
    return this.network.call(ALWAYS, from, node, request, timeoutMs);
  }

  async #client(id: number, prng: Prng): Promise<void> {
    const client = new WorkloadClient(id, prng, this.recorder, {
      now: () => this.scheduler.now(),
      pause: (ms) => sleep(this.#timers, ms),
      neverSent: (error) => error instanceof PeerUnreachableError && !error.maybeDelivered,
      send: async (method, node, path, body) => {
        // One of this.#all(), handed back as a plain string by the (lab-shared) workload.
        const reply = await this.#request(`c${id}`, asNodeAddress(node), method, path, body, CLIENT_TIMEOUT_MS);
        const answer = typeof reply.body === 'object' && reply.body !== null ? (reply.body as Record<string, unknown>) : undefined;
        return { status: reply.status, body: answer };
      },
    });
    await sleep(this.#timers, prng.between(500, 1_500));
    await client.run({ nodes: () => this.#all(), keys: this.settings.keys, keepGoing: () => !this.#loadOver, thinkMsMax: 20 });
  }

  // ------------------------------------------------------------------ nemesis

  #note(line: string): void {
    this.#nemesisLog.push(`${(this.scheduler.now() / 1000).toFixed(2)}s ${line}`);
  }

  async #admin(method: 'PUT', path: string, body: unknown): Promise<string> {
    const alive = this.#alive();
    if (alive.length === 0) return 'no node alive';
    const node = this.#nemesisPrng.pick(alive);
    try {
      const reply = await this.#request('admin', node, method, path, body, ADMIN_TIMEOUT_MS);
      return `${node} ${reply.status} ${JSON.stringify(reply.body)}`;
    } catch (error) {
      return `${node} ${(error as Error).message}`;
    }
  }

  async #nemesis(): Promise<void> {
    const prng = this.#nemesisPrng;
    const { faults, nemesisEveryMs } = this.settings;
    let joined = 0;
    while (!this.#loadOver && faults.length > 0) {
      await sleep(this.#timers, prng.between(...nemesisEveryMs));
      if (this.#loadOver) break;
      const fault = prng.pick(faults);
      const holdMs = prng.between(500, 6_000);
      const nodes = prng.shuffle(this.#all());
      const cut = prng.between(1, Math.max(1, nodes.length - 1));
      switch (fault) {
        case 'partition': {
          const [a, b] = [nodes.slice(0, cut), nodes.slice(cut)];
          this.network.partition(a, b);
          this.#note(`partition ${a.join(' ')} | ${b.join(' ')} for ${holdMs} ms`);
          this.#timers.setTimeout(() => this.network.heal(), holdMs);
          break;
        }
        case 'oneway': {
          const [a, b] = [nodes.slice(0, cut), nodes.slice(cut)];
          for (const x of a) for (const y of b) this.network.cut(x, y);
          this.#note(`one-way cut ${a.join(' ')} -> ${b.join(' ')} for ${holdMs} ms`);
          this.#timers.setTimeout(() => this.network.heal(), holdMs);
          break;
        }
        case 'isolate': {
          const node = nodes[0] as NodeAddress;
          const others = [...this.#all().filter((n) => n !== node), 'admin', ...Array.from({ length: this.settings.clients }, (_, i) => `c${i}`)];
          this.network.partition([node], others);
          this.#note(`isolate ${node} (clients too) for ${holdMs} ms`);
          this.#timers.setTimeout(() => this.network.heal(), holdMs);
          break;
        }
        case 'slow': {
          const extra = prng.between(50, 3_000);
          for (const x of nodes.slice(0, cut)) for (const y of nodes) if (x !== y) this.network.slow(x, y, extra);
          this.#note(`slow links from ${nodes.slice(0, cut).join(' ')} by ${extra} ms for ${holdMs} ms`);
          this.#timers.setTimeout(() => this.network.heal(), holdMs);
          break;
        }
        case 'crash': {
          const node = prng.pick(this.#alive().length > 0 ? this.#alive() : nodes);
          if (!this.#processes.has(node)) break;
          this.#crash(node);
          this.#down.add(node);
          this.#note(`crash ${node}; restart in ${holdMs} ms`);
          this.#timers.setTimeout(() => this.#restart(node), holdMs);
          break;
        }
        case 'join': {
          if (joined >= 2) break;
          const node = address(this.settings.nodes + joined++);
          this.#views.set(node, [...this.#all(), node]);
          this.#note(`start new node ${node}`);
          this.#start(node);
          break;
        }
        case 'add-member': {
          const unassigned = this.#all().filter((n) => this.#processes.get(n)?.node.core.shard === null);
          const shards = this.#anyMap()?.shards;
          if (unassigned.length === 0 || !shards) break;
          const node = prng.pick(unassigned);
          const shard = prng.pick(Object.keys(shards).sort());
          this.#note(`add-member ${node} to ${shard}: ${await this.#admin('PUT', `/shard/add-member/${encodeURIComponent(shard)}`, { 'socket-address': node })}`);
          break;
        }
        case 'reshard': {
          const count = prng.between(1, Math.max(1, Math.floor(this.#all().length / 2)));
          this.#note(`reshard to ${count}: ${await this.#admin('PUT', '/shard/reshard', { 'shard-count': count })}`);
          break;
        }
      }
    }
  }

  #restart(node: NodeAddress): void {
    if (!this.#down.delete(node)) return;
    this.#note(`restart ${node}`);
    this.#start(node);
  }

  #anyMap() {
    for (const process of this.#processes.values()) return process.node.core.map;
    return undefined;
  }

  // ------------------------------------------------------------------ the end: liveness and safety

  /** Empty when the store is quiescent: every node up, ready, agreeing, and every shard's replicas equal. */
  #notQuiescent(): string {
    const all = this.#all().sort();
    const digests = new Set<string>();
    const byShard = new Map<string, { node: NodeAddress; signature: string }[]>();
    for (const node of all) {
      const process = this.#processes.get(node);
      if (!process) return `${node} is down`;
      const status = process.node.status() as Record<string, unknown> & { view: string[]; replication: { queued: number; hints: number } };
      const core = process.node.core;
      if (!core.ready) return `${node} is not ready`;
      if ([...status.view].sort().join(',') !== all.join(',')) return `${node} has view [${status.view.join(' ')}]`;
      if (core.reshardInProgress) return `${node} is resharding`;
      if (core.stale !== null) return `${node} holds a stale replica`;
      if (status.pendingEarlyWrites !== 0) return `${node} buffers ${String(status.pendingEarlyWrites)} early writes`;
      if (status.replication.queued > 0 || status.replication.hints > 0) return `${node} has ${status.replication.queued + status.replication.hints} versions to replicate`;
      if (status.lateTransfers !== 0) return `${node} still hands what it held before a missed reshard to the new owners`;
      digests.add(core.mapDigest);
      const replica = core.replica;
      if (replica) {
        const list = byShard.get(replica.shard) ?? [];
        list.push({ node, signature: JSON.stringify([sorted(replica.applied), replica.digests()]) });
        byShard.set(replica.shard, list);
      }
    }
    if (digests.size > 1) return 'nodes hold different shard maps';
    for (const [shard, members] of byShard) {
      if (new Set(members.map((m) => m.signature)).size > 1) {
        const detail = members.map((m) => {
          const replica = this.#processes.get(m.node)?.node.core.replica;
          return `${m.node} applied ${JSON.stringify(replica?.applied)} keys ${replica?.size}`;
        });
        return `replicas of ${shard} differ: ${detail.join('; ')}`;
      }
    }
    return '';
  }

  #finalStates(): ReplicaState[] {
    const states: ReplicaState[] = [];
    for (const [node, process] of this.#processes) {
      const replica = process.node.core.replica;
      if (!replica) continue;
      const data = new Map<string, unknown>();
      for (const version of replica.allVersions()) if (!version.deleted) data.set(version.key, version.value);
      states.push({ node, shard: replica.shard, data });
    }
    return states;
  }

  /** Starts the store's initial nodes, each within 300 ms, all with the same VIEW. */
  #boot(): void {
    for (let i = 0; i < this.settings.nodes; i++) this.#views.set(address(i), []);
    const initial = this.#all();
    for (const node of initial) this.#views.set(node, initial);
    for (const node of initial) this.scheduler.after(this.#prng.between(0, 300), () => this.#start(node));
  }

  // ------------------------------------------------------------------ scripted scenarios

  /**
   * A scripted scenario instead of `run`'s random one: boots the store (no clients, no nemesis),
   * then `script` drives it through `request`, `advance` and `network`; every node is stopped after.
   * Errors inside nodes fail the script.
   */
  async script<T>(script: (world: World) => Promise<T>): Promise<T> {
    try {
      this.#boot();
      const result = await script(this);
      if (this.#nodeErrors.length > 0) throw new Error(`node errors:\n${this.#nodeErrors.join('\n')}`);
      return result;
    } finally {
      for (const node of this.#alive()) this.#crash(node);
    }
  }

  /** The nodes the store started with, in address order. */
  addresses(): NodeAddress[] {
    return this.#all().sort();
  }

  /** Every node ever started (up or down), in address order. */
  allNodes(): NodeAddress[] {
    return this.#all().sort();
  }

  /** Whether `node`'s process runs. */
  isUp(node: NodeAddress): boolean {
    return this.#processes.has(node);
  }

  /** Kills `node`'s process: what its disk had committed survives for `restart`. */
  crash(node: NodeAddress): void {
    if (!this.#processes.has(node)) throw new Error(`${node} is not running`);
    this.#crash(node);
  }

  /** Starts a new process for a crashed node, with the VIEW it first started with and its disk. */
  restart(node: NodeAddress): void {
    if (this.#processes.has(node)) throw new Error(`${node} is running`);
    if (!this.#views.has(node)) throw new Error(`${node} never ran`);
    this.#start(node);
  }

  /** Starts a new node at the next address, joining the running store: VIEW is every node so far and itself, no SHARD_COUNT. */
  join(): NodeAddress {
    const node = address(this.#views.size);
    this.#views.set(node, [...this.#all(), node]);
    this.#joiners.add(node);
    this.#start(node);
    return node;
  }

  /** Empty when the store is quiescent (every node up, ready, agreeing, every shard's replicas equal); else why not. */
  quiescence(): string {
    return this.#notQuiescent();
  }

  /** Runs simulated time `ms` further. */
  async advance(ms: number): Promise<void> {
    await this.scheduler.runUntil(this.scheduler.now() + ms);
  }

  /** One client request to `node` over the simulated network, from a client named `from` (cuts can name it too). Time does not move: see `settle`. */
  send(from: string, node: NodeAddress, method: 'GET' | 'PUT' | 'DELETE', path: string, body: unknown, timeoutMs = 10_000): Promise<ScriptReply> {
    return this.#request(from, node, method, path, body, timeoutMs).then((reply) => ({ status: reply.status, body: (reply.body ?? {}) as Record<string, unknown> }));
  }

  /** Runs simulated time until every one of `requests` has its answer (at most 11 simulated seconds). */
  async settle<T>(requests: Promise<T>[]): Promise<T[]> {
    let done = false;
    const all = Promise.all(requests).finally(() => {
      done = true;
    });
    all.catch(() => undefined);
    const deadline = this.scheduler.now() + 11_000;
    while (!done && this.scheduler.now() < deadline) await this.scheduler.runUntil(this.scheduler.now() + 5);
    if (!done) throw new Error('requests not answered in 11 simulated seconds');
    return all;
  }

  /** `send` and `settle` for one request. */
  async request(from: string, node: NodeAddress, method: 'GET' | 'PUT' | 'DELETE', path: string, body: unknown): Promise<ScriptReply> {
    const [reply] = await this.settle([this.send(from, node, method, path, body)]);
    return reply as ScriptReply;
  }

  async run(): Promise<WorldResult> {
    const errorsBefore = (error: unknown): void => this.#nodeError('?', 'unhandled rejection', error);
    process.on('unhandledRejection', errorsBefore);
    try {
      this.#boot();
      const loadEndMs = this.settings.seconds * 1_000;
      this.scheduler.after(loadEndMs, () => {
        this.#loadOver = true;
      });
      for (let i = 0; i < this.settings.clients; i++) {
        this.#client(i, this.#prng.fork()).catch((error: unknown) => this.#nodeError(`client c${i}`, 'workload', error));
      }
      this.#nemesis().catch((error: unknown) => this.#nodeError('nemesis', 'faults', error));
      await this.scheduler.runUntil(loadEndMs);
      // The end of the faults: the network heals and every crashed node restarts.
      this.network.heal();
      // Healed means healed: no more lost messages either (they look like failures to the detector).
      this.network.settings.lossRate = 0;
      for (const node of [...this.#down]) this.#restart(node);
      await this.scheduler.runUntil(loadEndMs + CLIENT_TIMEOUT_MS + 100);
      this.network.heal();
      const healedMs = this.scheduler.now();
      let reason = this.#notQuiescent();
      const deadline = healedMs + this.settings.livenessSeconds * 1_000;
      while (reason !== '' && this.scheduler.now() < deadline) {
        await this.scheduler.runUntil(this.scheduler.now() + 250);
        reason = this.#notQuiescent();
      }
      const quiescent = reason === '';
      const quiescenceMs = quiescent ? this.scheduler.now() - healedMs : null;
      const map = this.#anyMap();
      const check = checkHistory(this.recorder.history(), this.#finalStates(), map ? { shardOf: (key) => shardOfKey(map, key) } : {});
      const passed = check.valid && quiescent && this.#nodeErrors.length === 0;
      const result: WorldResult = {
        seed: this.seed,
        hash: this.hash(),
        passed,
        ops: check.ops,
        ok: check.ok,
        failed: check.failed,
        unknown: check.unknown,
        causalViolations: check.causalViolations.length,
        lostWrites: check.lostWrites.length,
        divergentKeys: check.divergentKeys.length,
        quiescent,
        quiescenceMs,
        nodeErrors: [...this.#nodeErrors],
        simSeconds: this.scheduler.now() / 1_000,
        events: this.scheduler.events,
        nemesis: [...this.#nemesisLog],
        network: { ...this.network.stats },
        settings: this.settings,
        bugs: this.bugs,
      };
      this.#onEnd?.(this);
      if (!passed) {
        result.report = formatReport(check);
        if (!quiescent) result.notQuiescentBecause = reason;
      }
      return result;
    } finally {
      process.off('unhandledRejection', errorsBefore);
      for (const node of this.#alive()) this.#crash(node);
    }
  }

  /** A hash of every operation of the history, with its simulated times and outcome. */
  hash(): string {
    const hash = createHash('sha256');
    for (const op of this.recorder.history()) hash.update(JSON.stringify(op));
    return hash.digest('hex').slice(0, 16);
  }
}

function sorted(clock: Readonly<Record<string, number>>): [string, number][] {
  return Object.entries(clock).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}
