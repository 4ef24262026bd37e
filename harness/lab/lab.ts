// The multi-host network lab: every node of the store is a real process in a network namespace of
// its own, at 10.10.<slot>.<i+2>:8090, on a bridge whose address 10.10.<slot>.1 is this process,
// so tests and clients reach every node directly. Faults are made on the network: iptables inside
// the namespaces (partitions, one-way partitions, cut-off nodes), a veth taken down, and added
// latency through a TCP relay (this kernel has no netem). See README.md beside this file.
//
// A lab cleans up after itself: close() in an `after` hook, and the same cleanup, synchronously,
// on process exit, SIGINT, SIGTERM and SIGHUP. A lab killed outright (SIGKILL) leaves its names
// behind with a lock naming a dead pid; the next lab to start removes them.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { appendFileSync, closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request, type Dispatcher } from 'undici';
import { LatencyProxy } from './proxy.ts';
import {
  claimSlot,
  forwardRuleArgs,
  labUnavailableReason,
  prefixOf,
  releaseSlot,
  removeLeftovers,
  run,
  runSync,
  sweepDeadLabs,
} from './sys.ts';

export type NodeAddress = string;

export const NODE_PORT = 8090;
const REPO_ROOT = join(import.meta.dirname, '..', '..');
const NODE_MAIN = join(REPO_ROOT, 'src', 'node', 'main.ts');
const READY_TIMEOUT_MS_DEFAULT = 30_000;
const STOP_GRACE_MS = 5_000;
const KILL_WAIT_MS = 5_000;
const STATUS_TIMEOUT_MS = 2_000;
/** Environment of the parent that must not leak into a node: deployment settings and test context. */
const SCRUBBED_ENV = ['SOCKET_ADDRESS', 'VIEW', 'SHARD_COUNT', 'PORT', 'LISTEN_HOST', 'NODE_TEST_CONTEXT', 'NODE_OPTIONS'];

export type LabOptions = {
  /** Nodes started with the store (VIEW lists all of them). */
  nodeCount: number;
  /** SHARD_COUNT given to the starting nodes; omitted or 0: none (a replicated-only store). */
  shardCount?: number;
  /** Extra environment for every node (CAUSAL_WAIT_MS, HOLD_DOWN_MS, ...). */
  env?: Record<string, string>;
  /** Give every node DATA_DIR=<lab dir>/<ip>.data, kept across its restarts (default true, as in
   * production); false: nodes keep everything in memory. */
  persist?: boolean;
  /** LOG_LEVEL of the nodes; default info. */
  logLevel?: string;
  /** Start the nodes and wait until every one is ready (default true). */
  start?: boolean;
  readyTimeoutMs?: number;
};

export type OneWayMode =
  /** Every packet from `from` to `to` is dropped (TCP between them stalls both ways). */
  | 'packets'
  /** `from` cannot make requests to `to` (its packets on connections it opened are dropped); `to`
   * can still make requests to `from` and get the answers. */
  | 'connections';

type NodeState = {
  index: number;
  ip: string;
  address: NodeAddress;
  ns: string;
  hostVeth: string;
  nsVeth: string;
  env: Record<string, string>;
  logPath: string;
  child: ChildProcess | undefined;
  exited: Promise<void>;
  expectExit: boolean;
  /** Exits nobody asked for: "pid 123 exited with code 1". */
  crashes: string[];
  /** The iptables script last installed in its namespace, to skip unchanged ones. */
  rules: string;
};

type OneWayRule = { from: Set<number>; to: Set<number>; mode: OneWayMode };

// Every open lab of this process, for the synchronous cleanup on exit and signals.
const openLabs = new Set<Lab>();
let exitHooksInstalled = false;

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on('exit', () => {
    for (const lab of openLabs) lab.destroySync();
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = (): void => {
      for (const lab of openLabs) lab.destroySync();
      process.off(signal, handler);
      // Do what the signal would have done, unless someone else handles it.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, handler);
  }
}

export class Lab {
  /** Every lab's nodes authenticate each other, as in production (options.env may set CLUSTER_SECRET '' for none). */
  readonly clusterSecret = randomBytes(16).toString('hex');
  readonly slot: number;
  readonly prefix: string;
  readonly subnet: string;
  /** The bridge's address: this process, as the nodes see it. */
  readonly hostIp: string;
  readonly bridge: string;
  /** Per-node log files (<ip>.log) and data directories (<ip>.data) live here; kept after close
   * unless asked otherwise. */
  readonly logDir: string;
  readonly options: LabOptions;
  readonly #nodes: NodeState[] = [];
  readonly #agent = new Agent({ keepAliveTimeout: 1_000, keepAliveMaxTimeout: 2_000, connect: { timeout: 2_000 } });
  #closed = false;
  #partition: number[][] | undefined;
  readonly #oneWay: OneWayRule[] = [];
  readonly #cutOff = new Set<number>();
  readonly #linkDown = new Set<number>();
  readonly #latency = new Map<string, { ms: number; proxy: LatencyProxy }>();
  #faultChain: Promise<void> = Promise.resolve();

  private constructor(slot: number, options: LabOptions) {
    this.slot = slot;
    this.prefix = prefixOf(slot);
    this.subnet = `10.10.${slot}.0/24`;
    this.hostIp = `10.10.${slot}.1`;
    this.bridge = `${this.prefix}br`;
    this.options = options;
    this.logDir = mkdtempSync(join(tmpdir(), `kvs-lab-${this.prefix}-`));
  }

  /** Creates the network and the nodes; unless `start: false`, starts them and waits until ready. */
  static async create(options: LabOptions): Promise<Lab> {
    const reason = labUnavailableReason();
    if (reason !== undefined) throw new Error(reason);
    if (!Number.isInteger(options.nodeCount) || options.nodeCount < 1 || options.nodeCount > 200) {
      throw new RangeError('nodeCount must be 1..200');
    }
    sweepDeadLabs();
    installExitHooks();
    const slot = claimSlot();
    const lab = new Lab(slot, options);
    openLabs.add(lab);
    try {
      await lab.#createBridge();
      const view = Array.from({ length: options.nodeCount }, (_, i) => lab.#addressOf(i));
      for (let i = 0; i < options.nodeCount; i++) {
        const env: Record<string, string> = { VIEW: view.join(',') };
        if (options.shardCount !== undefined && options.shardCount > 0) env.SHARD_COUNT = String(options.shardCount);
        await lab.#createNode(env);
      }
      if (options.start !== false) {
        for (const node of lab.#nodes) lab.#spawn(node);
        await lab.waitReady(undefined, options.readyTimeoutMs ?? READY_TIMEOUT_MS_DEFAULT);
      }
    } catch (error) {
      await lab.close();
      throw new Error(`lab setup failed (logs in ${lab.logDir}): ${(error as Error).message}`, { cause: error });
    }
    return lab;
  }

  // ------------------------------------------------------------------ addresses and processes

  #addressOf(index: number): NodeAddress {
    return `10.10.${this.slot}.${index + 2}:${NODE_PORT}`;
  }

  /** Every node the lab has (running or not), in creation order. */
  addresses(): NodeAddress[] {
    return this.#nodes.map((n) => n.address);
  }

  /** The nodes whose process is running. */
  running(): NodeAddress[] {
    return this.#nodes.filter((n) => n.child !== undefined).map((n) => n.address);
  }

  isRunning(address: NodeAddress): boolean {
    return this.#node(address).child !== undefined;
  }

  /** The node's network namespace (for `ip netns exec` by hand). */
  namespaceOf(address: NodeAddress): string {
    return this.#node(address).ns;
  }

  pidOf(address: NodeAddress): number | undefined {
    return this.#node(address).child?.pid;
  }

  #node(address: NodeAddress): NodeState {
    const node = this.#nodes.find((n) => n.address === address);
    if (node === undefined) throw new Error(`${address} is not a node of lab ${this.prefix}`);
    return node;
  }

  async #createBridge(): Promise<void> {
    await run('ip', ['link', 'add', this.bridge, 'type', 'bridge']);
    await run('ip', ['addr', 'add', `${this.hostIp}/24`, 'dev', this.bridge]);
    await run('ip', ['link', 'set', this.bridge, 'up']);
    // With br_netfilter, bridged traffic crosses the host's FORWARD chain; a DROP policy there (a
    // Docker host) would cut the nodes off from each other. Our own rule, commented with our prefix.
    if (runSync('iptables', ['-C', ...forwardRuleArgs(this.slot)]) === undefined) {
      await run('iptables', ['-I', ...forwardRuleArgs(this.slot)]).catch(() => undefined);
    }
  }

  async #createNode(env: Record<string, string>): Promise<NodeState> {
    const index = this.#nodes.length;
    const ip = `10.10.${this.slot}.${index + 2}`;
    const node: NodeState = {
      index,
      ip,
      address: this.#addressOf(index),
      ns: `${this.prefix}-${index}`,
      hostVeth: `${this.prefix}h${index}`,
      nsVeth: `${this.prefix}n${index}`,
      env: {
        CLUSTER_SECRET: this.clusterSecret,
        ...env,
        ...(this.options.persist === false ? {} : { DATA_DIR: join(this.logDir, `${ip}.data`) }),
        SOCKET_ADDRESS: this.#addressOf(index),
        // Slow links run through the lab's latency proxy on the host: node-to-node requests then
        // come from the host's address.
        PEER_SOURCE_IPS: this.hostIp,
      },
      logPath: join(this.logDir, `${ip}.log`),
      child: undefined,
      exited: Promise.resolve(),
      expectExit: false,
      crashes: [],
      rules: '',
    };
    this.#nodes.push(node);
    await run('ip', ['netns', 'add', node.ns]);
    await run('ip', ['link', 'add', node.hostVeth, 'type', 'veth', 'peer', 'name', node.nsVeth, 'netns', node.ns]);
    await run('ip', ['link', 'set', node.hostVeth, 'master', this.bridge, 'up']);
    await run('ip', ['-n', node.ns, 'link', 'set', 'lo', 'up']);
    await run('ip', ['-n', node.ns, 'addr', 'add', `${ip}/24`, 'dev', node.nsVeth]);
    await run('ip', ['-n', node.ns, 'link', 'set', node.nsVeth, 'up']);
    // Our chains, hooked once; every fault change rewrites only their contents.
    await run('ip', ['netns', 'exec', node.ns, 'iptables-restore'], {
      input: [
        '*filter',
        ':KVL-IN - [0:0]',
        ':KVL-OUT - [0:0]',
        '-A INPUT -j KVL-IN',
        '-A OUTPUT -j KVL-OUT',
        'COMMIT',
        '*nat',
        ':KVL-NAT - [0:0]',
        '-A OUTPUT -j KVL-NAT',
        'COMMIT',
        '',
      ].join('\n'),
    });
    return node;
  }

  #spawn(node: NodeState): void {
    if (node.child !== undefined) throw new Error(`${node.address} is already running`);
    const env: Record<string, string | undefined> = { ...process.env };
    for (const name of SCRUBBED_ENV) delete env[name];
    Object.assign(env, { LOG_LEVEL: this.options.logLevel ?? 'info' }, this.options.env, node.env);
    appendFileSync(node.logPath, `--- lab: starting ${node.address} in ${node.ns} at ${new Date().toISOString()} with ${JSON.stringify(node.env)} ---\n`);
    const fd = openSync(node.logPath, 'a');
    let child: ChildProcess;
    try {
      // `ip netns exec` execs the command, so the child's pid is the node's own.
      child = spawn('ip', ['netns', 'exec', node.ns, process.execPath, NODE_MAIN], { cwd: REPO_ROOT, env, stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
    node.child = child;
    node.expectExit = false;
    node.exited = new Promise((resolve) => {
      const done = (description: string): void => {
        if (node.child === child) node.child = undefined;
        try {
          appendFileSync(node.logPath, `--- lab: pid ${child.pid} ${description} at ${new Date().toISOString()} ---\n`);
        } catch {
          // The log directory may be gone at the very end.
        }
        if (!node.expectExit) node.crashes.push(`pid ${child.pid} ${description}`);
        resolve();
      };
      child.once('error', (error) => done(`could not start: ${error.message}`));
      child.once('exit', (code, signal) => done(signal === null ? `exited with code ${code}` : `killed by ${signal}`));
    });
  }

  /** Starts a node that is not running (same address, same environment as before). `wipeData`:
   * its data directory is deleted first (a node that lost its disk). */
  start(address: NodeAddress, options: { wipeData?: boolean } = {}): void {
    this.#assertOpen();
    const node = this.#node(address);
    if (options.wipeData === true && node.env.DATA_DIR !== undefined) {
      if (node.child !== undefined) throw new Error(`${address} is running: stop it before wiping its data`);
      rmSync(node.env.DATA_DIR, { recursive: true, force: true });
    }
    this.#spawn(node);
  }

  /** SIGKILL, and wait for the process to be gone. */
  async kill(address: NodeAddress): Promise<void> {
    const node = this.#node(address);
    const child = node.child;
    if (child === undefined) return;
    node.expectExit = true;
    child.kill('SIGKILL');
    await this.#waitExit(node, KILL_WAIT_MS, 'SIGKILL');
  }

  /** SIGTERM (the node shuts down cleanly); SIGKILL if it is still there after a grace period. */
  async stop(address: NodeAddress): Promise<void> {
    const node = this.#node(address);
    const child = node.child;
    if (child === undefined) return;
    node.expectExit = true;
    child.kill('SIGTERM');
    if (await settles(node.exited, STOP_GRACE_MS)) return;
    child.kill('SIGKILL');
    await this.#waitExit(node, KILL_WAIT_MS, 'SIGKILL after SIGTERM');
  }

  async #waitExit(node: NodeState, ms: number, what: string): Promise<void> {
    if (!(await settles(node.exited, ms))) throw new Error(`${node.address} (pid ${node.child?.pid}) did not exit within ${ms} ms of ${what}`);
  }

  /** Kills (SIGKILL, or SIGTERM with `graceful`) and starts the node again at the same address;
   * waits until it is ready unless `wait: false`. */
  async restart(address: NodeAddress, options: { graceful?: boolean; wait?: boolean; readyTimeoutMs?: number; wipeData?: boolean } = {}): Promise<void> {
    if (options.graceful === true) await this.stop(address);
    else await this.kill(address);
    this.start(address, { wipeData: options.wipeData });
    if (options.wait !== false) await this.waitReady([address], options.readyTimeoutMs);
  }

  /**
   * A new node that joins the running store: its own namespace, VIEW = every node of the lab plus
   * itself, no SHARD_COUNT (as the spec has a joining node start). Started unless `start: false`;
   * not waited for.
   */
  async addNode(options: { env?: Record<string, string>; start?: boolean } = {}): Promise<NodeAddress> {
    this.#assertOpen();
    const view = [...this.addresses(), this.#addressOf(this.#nodes.length)];
    const node = await this.#createNode({ ...options.env, VIEW: view.join(',') });
    await this.#applyFaults();
    if (options.start !== false) this.#spawn(node);
    return node.address;
  }

  /** Exits of nodes that nobody asked for, by node. */
  crashes(): Record<NodeAddress, string[]> {
    const out: Record<NodeAddress, string[]> = {};
    for (const node of this.#nodes) if (node.crashes.length > 0) out[node.address] = [...node.crashes];
    return out;
  }

  assertNoCrash(): void {
    const crashes = this.crashes();
    const crashed = Object.keys(crashes);
    if (crashed.length > 0) {
      throw new Error(`node(s) exited unexpectedly: ${JSON.stringify(crashes)}\n${this.logs(40, crashed)}`);
    }
  }

  // ------------------------------------------------------------------ HTTP from this process

  /** One request to a node from this process (the bridge address); bounded by `timeoutMs`. */
  async http(
    method: 'GET' | 'PUT' | 'DELETE',
    address: NodeAddress,
    path: string,
    body?: unknown,
    timeoutMs = 10_000,
  ): Promise<{ status: number; body: any; text: string }> {
    return jsonRequest(this.#agent, method, address, path, body, timeoutMs);
  }

  /** GET /status of one node, or undefined if it does not answer in time. */
  async status(address: NodeAddress, timeoutMs = STATUS_TIMEOUT_MS): Promise<Record<string, any> | undefined> {
    try {
      const reply = await this.http('GET', address, '/status', undefined, timeoutMs);
      return reply.status === 200 ? (reply.body as Record<string, any>) : undefined;
    } catch {
      return undefined;
    }
  }

  /** Polls until every given node (default: every running node) says ready:true. */
  async waitReady(addresses?: readonly NodeAddress[], timeoutMs = READY_TIMEOUT_MS_DEFAULT): Promise<void> {
    const targets = addresses ?? this.running();
    const deadline = performance.now() + timeoutMs;
    const pending = new Set(targets);
    while (pending.size > 0) {
      for (const address of pending) {
        const node = this.#node(address);
        if (node.child === undefined) throw new Error(`${address} is not running (${node.crashes.join('; ') || 'stopped'})\n${this.logs(30, [address])}`);
      }
      await Promise.all(
        [...pending].map(async (address) => {
          const status = await this.status(address);
          if (status?.ready === true) pending.delete(address);
        }),
      );
      if (pending.size === 0) return;
      if (performance.now() > deadline) {
        throw new Error(`not ready after ${timeoutMs} ms: ${[...pending].join(', ')}\n${this.logs(30, [...pending])}`);
      }
      await sleep(100);
    }
  }

  // ------------------------------------------------------------------ faults

  #indexOf(address: NodeAddress): number {
    return this.#node(address).index;
  }

  /** Whether packets from node a to node b are dropped now. */
  #packetsBlocked(a: number, b: number): boolean {
    if (a === b) return false;
    if (this.#cutOff.has(a) || this.#cutOff.has(b) || this.#linkDown.has(a) || this.#linkDown.has(b)) return true;
    if (this.#partition !== undefined) {
      const ga = this.#partition.findIndex((g) => g.includes(a));
      const gb = this.#partition.findIndex((g) => g.includes(b));
      if (ga !== gb) return true;
    }
    return this.#oneWay.some((r) => r.mode === 'packets' && r.from.has(a) && r.to.has(b));
  }

  /** Whether a cannot open (or use) connections to b now. */
  #connectionsBlocked(a: number, b: number): boolean {
    if (this.#packetsBlocked(a, b) || this.#packetsBlocked(b, a)) return true;
    return this.#oneWay.some((r) => r.mode === 'connections' && r.from.has(a) && r.to.has(b));
  }

  /** Whether `from` can reach `to` at all now (for tests of the lab and for humans). */
  canReach(from: NodeAddress, to: NodeAddress): boolean {
    return !this.#connectionsBlocked(this.#indexOf(from), this.#indexOf(to));
  }

  /**
   * Splits the nodes into groups that cannot talk to each other (both directions); nodes in no
   * group form one more group. Replaces a previous partition. This process still reaches everyone.
   */
  async partition(groups: readonly (readonly NodeAddress[])[]): Promise<void> {
    const seen = new Set<number>();
    const indexGroups = groups.map((group) =>
      group.map((address) => {
        const index = this.#indexOf(address);
        if (seen.has(index)) throw new Error(`${address} is in two groups`);
        seen.add(index);
        return index;
      }),
    );
    const rest = this.#nodes.map((n) => n.index).filter((i) => !seen.has(i));
    if (rest.length > 0) indexGroups.push(rest);
    this.#partition = indexGroups;
    await this.#applyFaults();
  }

  /** Drops traffic from every node of `from` to every node of `to` only (see OneWayMode); adds to
   * what is in place. */
  async partitionOneWay(from: readonly NodeAddress[], to: readonly NodeAddress[], mode: OneWayMode = 'packets'): Promise<void> {
    this.#oneWay.push({ from: new Set(from.map((a) => this.#indexOf(a))), to: new Set(to.map((a) => this.#indexOf(a))), mode });
    await this.#applyFaults();
  }

  /**
   * Cuts a node off from every other node, both directions. By default with iptables in its
   * namespace, so this process (clients, tests) still reaches it; `{ link: true }` takes its veth
   * down instead, which cuts it off from this process too.
   */
  async disconnect(address: NodeAddress, options: { link?: boolean } = {}): Promise<void> {
    const node = this.#node(address);
    if (options.link === true) {
      this.#linkDown.add(node.index);
      await run('ip', ['link', 'set', node.hostVeth, 'down']);
    } else {
      this.#cutOff.add(node.index);
    }
    await this.#applyFaults();
  }

  /** Undoes disconnect() of that node (both kinds). */
  async reconnect(address: NodeAddress): Promise<void> {
    const node = this.#node(address);
    this.#cutOff.delete(node.index);
    if (this.#linkDown.delete(node.index)) await run('ip', ['link', 'set', node.hostVeth, 'up']);
    await this.#applyFaults();
  }

  /**
   * Adds `ms` of delay to each direction of every connection `from` opens to `to` (a round trip
   * gets 2 × ms more), and the same from `to` to `from` unless `symmetric: false`. Connections
   * open when it starts are reset, so it applies at once.
   */
  async addLatency(from: NodeAddress, to: NodeAddress, ms: number, options: { symmetric?: boolean } = {}): Promise<void> {
    if (!(ms >= 0 && ms <= 60_000)) throw new RangeError('latency must be 0..60000 ms');
    const pairs: [NodeState, NodeState][] = [[this.#node(from), this.#node(to)]];
    if (options.symmetric !== false) pairs.push([this.#node(to), this.#node(from)]);
    for (const [a, b] of pairs) {
      const key = `${a.index}>${b.index}`;
      const old = this.#latency.get(key);
      this.#latency.delete(key);
      await old?.proxy.close();
      const proxy = await LatencyProxy.start({
        listenHost: this.hostIp,
        targetHost: b.ip,
        targetPort: NODE_PORT,
        delayMs: ms,
        blocked: (direction) => (direction === 'forward' ? this.#packetsBlocked(a.index, b.index) : this.#packetsBlocked(b.index, a.index)),
      });
      this.#latency.set(key, { ms, proxy });
    }
    await this.#applyFaults();
  }

  /** Removes added latency between two nodes (both directions), or every added latency. */
  async removeLatency(from?: NodeAddress, to?: NodeAddress): Promise<void> {
    const keys =
      from === undefined || to === undefined
        ? [...this.#latency.keys()]
        : [`${this.#indexOf(from)}>${this.#indexOf(to)}`, `${this.#indexOf(to)}>${this.#indexOf(from)}`];
    const removed = keys.flatMap((key) => {
      const entry = this.#latency.get(key);
      this.#latency.delete(key);
      return entry === undefined ? [] : [entry.proxy];
    });
    // Rules first (new connections go direct), then the relays (their connections reset).
    await this.#applyFaults();
    await Promise.all(removed.map((proxy) => proxy.close()));
  }

  /** Back to a clean network: no partition, no one-way rule, nobody cut off, no added latency. */
  async heal(): Promise<void> {
    this.#partition = undefined;
    this.#oneWay.length = 0;
    this.#cutOff.clear();
    for (const index of [...this.#linkDown]) {
      this.#linkDown.delete(index);
      await run('ip', ['link', 'set', this.#nodes[index]!.hostVeth, 'up']);
    }
    await this.removeLatency();
  }

  /** What is in place now, in words (for logs). */
  describeFaults(): string {
    const name = (i: number): string => this.#nodes[i]!.ip;
    const parts: string[] = [];
    if (this.#partition !== undefined) parts.push(`partition ${this.#partition.map((g) => `[${g.map(name).join(' ')}]`).join(' | ')}`);
    for (const r of this.#oneWay) parts.push(`one-way(${r.mode}) [${[...r.from].map(name).join(' ')}] -> [${[...r.to].map(name).join(' ')}]`);
    for (const i of this.#cutOff) parts.push(`cut off ${name(i)}`);
    for (const i of this.#linkDown) parts.push(`link down ${name(i)}`);
    for (const [key, { ms }] of this.#latency) {
      const [a, b] = key.split('>').map(Number);
      parts.push(`latency ${name(a!)} -> ${name(b!)} +${ms} ms`);
    }
    return parts.length === 0 ? 'none' : parts.join('; ');
  }

  /** Rewrites the lab's chains in every namespace whose rules changed; serialised. */
  #applyFaults(): Promise<void> {
    const next = this.#faultChain.then(() => this.#applyFaultsNow());
    this.#faultChain = next.catch(() => undefined);
    return next;
  }

  async #applyFaultsNow(): Promise<void> {
    if (this.#closed) return;
    await Promise.all(
      this.#nodes.map(async (node) => {
        const script = this.#rulesFor(node);
        if (script === node.rules) return;
        await run('ip', ['netns', 'exec', node.ns, 'iptables-restore', '--noflush'], { input: script });
        node.rules = script;
      }),
    );
  }

  #rulesFor(node: NodeState): string {
    const filter: string[] = ['*filter', '-F KVL-IN', '-F KVL-OUT'];
    const nat: string[] = ['*nat', '-F KVL-NAT'];
    for (const other of this.#nodes) {
      if (other === node) continue;
      if (this.#packetsBlocked(node.index, other.index)) {
        filter.push(`-A KVL-OUT -d ${other.ip} -j DROP`);
        // Connections redirected to a latency relay still have the peer as original destination.
        filter.push(`-A KVL-OUT -m conntrack --ctorigdst ${other.ip} -j DROP`);
      } else if (this.#oneWay.some((r) => r.mode === 'connections' && r.from.has(node.index) && r.to.has(other.index))) {
        // Only its packets on connections it opened to the peer: answers to the peer's requests pass.
        filter.push(`-A KVL-OUT -m conntrack --ctorigsrc ${node.ip} --ctorigdst ${other.ip} -j DROP`);
      }
      if (this.#packetsBlocked(other.index, node.index)) filter.push(`-A KVL-IN -s ${other.ip} -j DROP`);
      const latency = this.#latency.get(`${node.index}>${other.index}`);
      if (latency !== undefined) {
        nat.push(`-A KVL-NAT -p tcp -d ${other.ip} --dport ${NODE_PORT} -j DNAT --to-destination ${this.hostIp}:${latency.proxy.port}`);
        // Connections opened before the relay existed are reset, so the delay applies at once.
        filter.push(`-A KVL-OUT -p tcp -d ${other.ip} --dport ${NODE_PORT} -m conntrack ! --ctstate DNAT -j REJECT --reject-with tcp-reset`);
      }
    }
    return [...filter, 'COMMIT', ...nat, 'COMMIT', ''].join('\n');
  }

  /**
   * From inside a node's namespace, connects to `to` (IP:PORT) and, with `request: true`, sends
   * `GET /status` and waits for the first byte of the answer. Says 'connected' (or 'answered'),
   * 'refused' or 'timeout', and how long it took: a check of the network itself, not of the store.
   */
  async probe(
    from: NodeAddress,
    to: NodeAddress,
    options: { timeoutMs?: number; request?: boolean } = {},
  ): Promise<{ result: 'connected' | 'answered' | 'refused' | 'timeout'; ms: number }> {
    const timeoutMs = options.timeoutMs ?? 1_000;
    const [host, port] = to.split(':');
    const script =
      `const t0=performance.now();const say=(w)=>{console.log(w+' '+Math.round(performance.now()-t0));process.exit(0)};` +
      `const s=require('net').connect({host:${JSON.stringify(host)},port:${Number(port)}});` +
      `setTimeout(()=>say('timeout'),${timeoutMs});` +
      (options.request === true
        ? `s.on('connect',()=>s.write('GET /status HTTP/1.1\\r\\nhost: x\\r\\n\\r\\n'));s.on('data',()=>say('answered'));`
        : `s.on('connect',()=>say('connected'));`) +
      `s.on('error',e=>say(e.code==='ECONNREFUSED'||e.code==='ECONNRESET'?'refused':'timeout'));`;
    const out = await run('ip', ['netns', 'exec', this.#node(from).ns, process.execPath, '-e', script], { timeoutMs: timeoutMs + 10_000 });
    const [word = '', ms = ''] = out.trim().split(' ');
    if (word !== 'connected' && word !== 'answered' && word !== 'refused' && word !== 'timeout') throw new Error(`probe said ${out}`);
    return { result: word, ms: Number(ms) };
  }

  // ------------------------------------------------------------------ logs

  logPath(address: NodeAddress): string {
    return this.#node(address).logPath;
  }

  /** The last `lines` lines of a node's log. */
  logTail(address: NodeAddress, lines = 40): string {
    const path = this.#node(address).logPath;
    try {
      const size = statSync(path).size;
      const text = readFileSync(path, 'utf8').slice(Math.max(0, size - 256 * 1024));
      return text.split('\n').slice(-lines - 1).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** The last lines of every node's log (or of `only`), with headers; for failure messages. */
  logs(lines = 40, only?: readonly NodeAddress[]): string {
    return (only ?? this.addresses())
      .map((a) => `===== ${a} (${this.logPath(a)}, last ${lines} lines) =====\n${this.logTail(a, lines)}`)
      .join('\n');
  }

  // ------------------------------------------------------------------ teardown

  #assertOpen(): void {
    if (this.#closed) throw new Error(`lab ${this.prefix} is closed`);
  }

  /** Kills every node, removes every name the lab created, releases its slot. Idempotent.
   * `removeLogs: true` deletes the log directory too (keep it when something failed). */
  async close(options: { removeLogs?: boolean } = {}): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      for (const node of this.#nodes) {
        node.expectExit = true;
        node.child?.kill('SIGKILL');
      }
      await Promise.all(this.#nodes.map((node) => settles(node.exited, KILL_WAIT_MS)));
      await Promise.all([...this.#latency.values()].map(({ proxy }) => proxy.close()));
      this.#latency.clear();
      await this.#agent.close().catch(() => undefined);
      this.destroySync();
    }
    if (options.removeLogs === true) rmSync(this.logDir, { recursive: true, force: true });
  }

  /** The synchronous part of close(), also run on process exit and signals. */
  destroySync(): void {
    this.#closed = true;
    for (const node of this.#nodes) {
      node.expectExit = true;
      try {
        node.child?.kill('SIGKILL');
      } catch {
        // Gone.
      }
    }
    if (!openLabs.has(this)) return;
    openLabs.delete(this);
    removeLeftovers(this.slot);
    releaseSlot(this.slot);
  }
}

async function settles(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export { labUnavailableReason } from './sys.ts';

/**
 * One JSON request to a node over `dispatcher` (keep-alive kept even for GETs with a body), bounded
 * by `timeoutMs`; a body that is not JSON comes back as undefined, with the raw text beside it.
 */
export async function jsonRequest(
  dispatcher: Dispatcher,
  method: 'GET' | 'PUT' | 'DELETE',
  address: NodeAddress,
  path: string,
  body: unknown,
  timeoutMs: number,
): Promise<{ status: number; body: any; text: string }> {
  const response = await request(`http://${address}${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    dispatcher,
    reset: false,
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await response.body.text();
  let parsed: unknown;
  try {
    parsed = text === '' ? undefined : JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: response.statusCode, body: parsed, text };
}
