// Starts real store nodes as child processes for the black-box integration tests.
//
// Each node is `node src/node/main.ts` with SOCKET_ADDRESS / VIEW / SHARD_COUNT (see
// README's "Configuration"). Its stdout and stderr go to a per-node ring buffer, printed when a test
// fails. Every wait is a poll with a deadline that fails with a message naming what it waited for.

import { TEST_CLUSTER_SECRET } from './peer.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterEach } from 'node:test';
import { AssertionError } from 'node:assert';
import { call, getView, sortedAddresses, type CallOptions, type NodeAddress, type Reply } from './http.ts';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const NODE_ENTRY = 'src/node/main.ts';
const HOST = '127.0.0.1';

/** How long a node may take from spawn to /status ready:true (two cores, two test files at once). */
export const READY_TIMEOUT_MS = 30_000;
const LOG_LINES_MAX = 400;
const STOP_TIMEOUT_MS = 5_000;

// ---- polling -------------------------------------------------------------------------------------

export interface PollOptions {
  timeoutMs: number;
  intervalMs?: number;
}

export interface PollResult<T> {
  value: T;
  /** Milliseconds from the start of the poll until the check first passed. */
  elapsedMs: number;
}

/**
 * Calls `check` every `intervalMs` until it returns without throwing, or fails after `timeoutMs`
 * with `what` and the last reason. A check signals "not yet" by throwing anything except an
 * AssertionError; an AssertionError is a violation and fails the poll at once (e.g. a stale read
 * is wrong no matter how long we wait).
 */
export async function pollUntil<T>(what: string, check: () => Promise<T>, options: PollOptions): Promise<PollResult<T>> {
  const intervalMs = options.intervalMs ?? 100;
  const start = performance.now();
  const deadline = start + options.timeoutMs;
  let attempts = 0;
  let lastReason = '(never checked)';
  for (;;) {
    attempts++;
    try {
      const value = await check();
      return { value, elapsedMs: performance.now() - start };
    } catch (err) {
      if (err instanceof AssertionError) throw err;
      lastReason = err instanceof Error ? err.message : String(err);
    }
    if (performance.now() >= deadline) {
      throw new Error(`timed out after ${options.timeoutMs} ms (${attempts} attempts) waiting for: ${what}\n  last: ${lastReason}`);
    }
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, Math.min(intervalMs, deadline - performance.now()))));
  }
}

/** Thrown by poll checks to mean "condition not reached yet". */
export class NotYet extends Error {}

// ---- one node ------------------------------------------------------------------------------------

export class StoreNode {
  readonly addr: NodeAddress;
  readonly env: Record<string, string>;
  proc: ChildProcess | null = null;
  /** Last lines of stdout and stderr, oldest first. */
  readonly log: string[] = [];
  /** Lines logged since the node was created, the ones no longer in `log` too. */
  linesLogged = 0;
  /** Set when the process exited without us killing it (a crash). */
  crashed: string | null = null;
  private killing = false;
  private exited: Promise<void> = Promise.resolve();

  constructor(addr: NodeAddress, env: Record<string, string>) {
    this.addr = addr;
    this.env = env;
  }

  get alive(): boolean {
    return this.proc !== null;
  }

  start(): void {
    if (this.proc) throw new Error(`node ${this.addr} is already running`);
    const env: Record<string, string | undefined> = { ...process.env };
    // Never leak the outer environment's deployment settings or the test runner's context.
    delete env.SHARD_COUNT;
    delete env.NODE_TEST_CONTEXT;
    delete env.NODE_OPTIONS;
    Object.assign(env, this.env);
    const proc = spawn(process.execPath, [NODE_ENTRY], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    this.killing = false;
    this.crashed = null;
    this.note(`--- spawned pid ${proc.pid} ---`);
    this.capture(proc.stdout, '');
    this.capture(proc.stderr, '[stderr] ');
    this.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        this.note(`--- exited code=${code} signal=${signal} ---`);
        if (!this.killing) {
          // Exit code 0 or SIGTERM: the node was stopped by someone else (it exits 0 on SIGTERM).
          const outside = code === 0 || signal === 'SIGTERM' || signal === 'SIGINT' ? ' (stopped from outside the test?)' : '';
          this.crashed = `exited without being killed by the test: code=${code} signal=${signal}${outside}`;
        }
        if (this.proc === proc) this.proc = null;
        resolve();
      });
    });
    proc.once('error', (err) => this.note(`--- spawn error: ${err.message} ---`));
    liveProcesses.add(proc);
    proc.once('exit', () => liveProcesses.delete(proc));
  }

  /** SIGKILL, and wait until the process is gone. */
  async kill(): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    this.killing = true;
    proc.kill('SIGKILL');
    await withTimeout(this.exited, STOP_TIMEOUT_MS, `node ${this.addr} (pid ${proc.pid}) to exit after SIGKILL`);
  }

  tail(lines: number): string {
    return this.log.slice(-lines).join('\n');
  }

  /** The lines logged after `linesLogged` was `mark` (those still in the ring buffer). */
  logSince(mark: number): string[] {
    return this.log.slice(Math.max(0, this.log.length - (this.linesLogged - mark)));
  }

  private note(line: string): void {
    this.linesLogged++;
    this.log.push(line);
    if (this.log.length > LOG_LINES_MAX) this.log.splice(0, this.log.length - LOG_LINES_MAX);
  }

  private capture(stream: NodeJS.ReadableStream | null, prefix: string): void {
    if (!stream) return;
    let partial = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      const parts = (partial + chunk).split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) this.note(prefix + line);
    });
    stream.on('end', () => {
      if (partial) this.note(prefix + partial);
      partial = '';
    });
  }
}

// Kill every node we started if the test process exits without running its `after` hooks.
const liveProcesses = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of liveProcesses) p.kill('SIGKILL');
});

// ---- a cluster -----------------------------------------------------------------------------------

export interface ClusterOptions {
  /** First port; node i listens on basePort + i. Each test file uses its own range. */
  basePort: number;
  nodeCount: number;
  /** Omitted: replicated-only deployment (no SHARD_COUNT anywhere). */
  shardCount?: number;
  /** Extra environment for every node (CAUSAL_WAIT_MS, HOLD_DOWN_MS, ...). */
  extraEnv?: Record<string, string>;
  /** Durable nodes: node i keeps its data in <dataRoot>/<port> (DATA_DIR). */
  dataRoot?: string;
  /** Environment of node i alone (its TLS certificate...), over `extraEnv`. */
  nodeEnv?: (addr: NodeAddress, index: number) => Record<string, string>;
  /** How the waits reach a node's GET /status (`scheme: 'https'` and a dispatcher that trusts the CA, for TLS). */
  callOptions?: CallOptions;
  readyTimeoutMs?: number;
}

export class Cluster {
  readonly nodes = new Map<NodeAddress, StoreNode>();
  readonly extraEnv: Record<string, string>;
  private readonly callOptions: CallOptions;

  private constructor(extraEnv: Record<string, string>, callOptions: CallOptions = {}) {
    this.extraEnv = extraEnv;
    this.callOptions = callOptions;
  }

  /** Starts `nodeCount` nodes and waits until every one reports ready:true. */
  static async start(options: ClusterOptions): Promise<Cluster> {
    const cluster = new Cluster(options.extraEnv ?? {}, options.callOptions);
    const addrs = Array.from({ length: options.nodeCount }, (_, i) => address(options.basePort + i));
    const view = addrs.join(',');
    for (const [i, addr] of addrs.entries()) {
      // Authenticated peers, as in production: a test may set CLUSTER_SECRET '' in extraEnv for a store without.
      const env: Record<string, string> = { SOCKET_ADDRESS: addr, VIEW: view, LOG_LEVEL: 'warn', LISTEN_HOST: HOST, CLUSTER_SECRET: TEST_CLUSTER_SECRET };
      if (options.shardCount !== undefined) env.SHARD_COUNT = String(options.shardCount);
      if (options.dataRoot !== undefined) env.DATA_DIR = `${options.dataRoot}/${addr.split(':')[1]}`;
      Object.assign(env, cluster.extraEnv, options.nodeEnv?.(addr, i));
      cluster.nodes.set(addr, new StoreNode(addr, env));
    }
    try {
      for (const addr of addrs) await assertPortFree(addr);
      for (const node of cluster.nodes.values()) node.start();
      await cluster.waitReady(addrs, options.readyTimeoutMs ?? READY_TIMEOUT_MS);
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  /** Every address this cluster manages, running or not, in the store's address order. */
  addresses(): NodeAddress[] {
    return sortedAddresses([...this.nodes.keys()]);
  }

  liveAddresses(): NodeAddress[] {
    return this.addresses().filter((a) => this.node(a).alive);
  }

  node(addr: NodeAddress): StoreNode {
    const n = this.nodes.get(addr);
    if (!n) throw new Error(`no node ${addr} in this cluster`);
    return n;
  }

  async kill(addr: NodeAddress): Promise<void> {
    await this.node(addr).kill();
  }

  /** Starts a killed node again with the same address and environment; does not wait for ready. */
  async restart(addr: NodeAddress): Promise<void> {
    await assertPortFree(addr);
    this.node(addr).start();
  }

  /**
   * Restarts those of `addrs` (default: every node) that are not running, and waits until they are
   * ready: a test that needs them up says so at its start instead of relying on an earlier test.
   */
  async ensureRunning(addrs: readonly NodeAddress[] = this.addresses()): Promise<void> {
    const down = addrs.filter((a) => !this.node(a).alive);
    for (const addr of down) await this.restart(addr);
    if (down.length > 0) await this.waitReady(down);
  }

  /**
   * Starts a node that joins the running store: no SHARD_COUNT, VIEW = the running nodes + itself.
   * Does not wait for ready.
   */
  async startJoiner(port: number, extraEnv: Record<string, string> = {}): Promise<NodeAddress> {
    const addr = address(port);
    if (this.nodes.has(addr)) throw new Error(`node ${addr} already exists`);
    await assertPortFree(addr);
    const view = [...this.liveAddresses(), addr].join(',');
    const env: Record<string, string> = { SOCKET_ADDRESS: addr, VIEW: view, LOG_LEVEL: 'warn', LISTEN_HOST: HOST, CLUSTER_SECRET: TEST_CLUSTER_SECRET, ...this.extraEnv, ...extraEnv };
    const node = new StoreNode(addr, env);
    this.nodes.set(addr, node);
    node.start();
    return addr;
  }

  /** Polls GET /status on each node until it answers ready:true; fails early if a node exits. */
  async waitReady(addrs: readonly NodeAddress[], timeoutMs = READY_TIMEOUT_MS): Promise<number> {
    const { elapsedMs } = await pollUntil(
      `GET /status ready:true on ${addrs.join(', ')}`,
      async () => {
        const pending: string[] = [];
        await Promise.all(
          addrs.map(async (addr) => {
            const node = this.node(addr);
            if (!node.alive) {
              throw new AssertionError({ message: `node ${addr} is not running (${node.crashed ?? 'killed'}) while waiting for ready\n${node.tail(40)}` });
            }
            try {
              const r = await call('GET', addr, '/status', undefined, { ...this.callOptions, timeoutMs: 2_000 });
              if (r.status !== 200 || r.body?.ready !== true) pending.push(`${addr}: ${r.status} ${r.text.slice(0, 200)}`);
              else if (r.body?.address !== addr) {
                throw new AssertionError({ message: `GET /status at ${addr} answered for ${JSON.stringify(r.body?.address)}: another process has the port` });
              }
            } catch (err) {
              if (err instanceof AssertionError) throw err;
              pending.push(`${addr}: ${(err as Error).message}`);
            }
          }),
        );
        if (pending.length > 0) throw new NotYet(pending.join('; '));
      },
      { timeoutMs, intervalMs: 100 },
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${this.logs(30, addrs)}`);
    });
    return elapsedMs;
  }

  /** Polls until every given node's GET /view equals `expected` (as a set). */
  async waitForViews(expected: readonly NodeAddress[], options: PollOptions & { at?: readonly NodeAddress[] }): Promise<number> {
    const want = sortedAddresses(expected).join(',');
    const at = options.at ?? this.liveAddresses();
    const { elapsedMs } = await pollUntil(
      `GET /view on ${at.join(', ')} to be [${want}]`,
      async () => {
        const views = await Promise.all(at.map(async (a) => [a, sortedAddresses(await getView(a, this.callOptions)).join(',')] as const));
        const wrong = views.filter(([, v]) => v !== want);
        if (wrong.length > 0) throw new NotYet(wrong.map(([a, v]) => `${a} has [${v}]`).join('; '));
      },
      options,
    );
    return elapsedMs;
  }

  /** Polls until no node of `at` lists `gone` in its view; the time it took. */
  async waitUntilNoneLists(gone: NodeAddress, at: readonly NodeAddress[], timeoutMs: number): Promise<number> {
    const { elapsedMs } = await pollUntil(
      `no remaining node lists ${gone}`,
      async () => {
        for (const addr of at) {
          const view = await getView(addr);
          if (view.includes(gone)) throw new NotYet(`${addr} still lists it: ${view}`);
        }
      },
      { timeoutMs },
    );
    return elapsedMs;
  }

  assertNoCrash(): void {
    const crashed = [...this.nodes.values()].filter((n) => n.crashed);
    if (crashed.length > 0) {
      throw new AssertionError({ message: `node(s) crashed: ${crashed.map((n) => `${n.addr} ${n.crashed}\n${n.tail(40)}`).join('\n')}` });
    }
  }

  /** The last `lines` log lines of every node (or of `only`). */
  logs(lines = 40, only?: readonly NodeAddress[]): string {
    const addrs = only ?? this.addresses();
    return addrs.map((a) => `===== ${a} (last ${lines} lines) =====\n${this.node(a).tail(lines)}`).join('\n');
  }

  /** SIGKILLs every running node and waits for them to exit. */
  async stop(): Promise<void> {
    await Promise.allSettled([...this.nodes.values()].map((n) => n.kill()));
  }
}

/**
 * Registers an afterEach hook (call it inside a describe) that prints every node's recent log
 * lines when a test failed.
 */
export function printLogsOnFailure(getCluster: () => Cluster | undefined, lines: number | (() => number) = 40): void {
  afterEach((t) => {
    const passed = (t as unknown as { passed?: boolean }).passed;
    const cluster = getCluster();
    if (passed === false && cluster) {
      const n = typeof lines === 'number' ? lines : lines();
      console.error(`\n##### test failed: ${t.name}; node logs follow #####\n${cluster.logs(n)}\n##### end of node logs #####`);
    }
  });
}

/**
 * Fails if something already listens on `addr` (a dev cluster, a bench, a leftover node): its
 * answers would otherwise be mistaken for our node's.
 */
export async function assertPortFree(addr: NodeAddress): Promise<void> {
  const [host = HOST, port = ''] = addr.split(':');
  await new Promise<void>((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (err: Error & { code?: string }) => {
      reject(new Error(`cannot start a node at ${addr}: port in use by another process (${err.code ?? err.message}); is a bench or another test using it?`));
    });
    probe.listen({ host, port: Number(port), exclusive: true }, () => probe.close(() => resolve()));
  });
}

export function address(port: number): NodeAddress {
  return `${HOST}:${port}`;
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Repeats `op` while it answers 503 (a replica waiting for causal dependencies may say "try again
 * later"); returns the first other reply, or fails after `timeoutMs`.
 */
export async function retryWhile503(what: string, op: () => Promise<Reply>, timeoutMs = 10_000): Promise<Reply> {
  const { value } = await pollUntil(
    what,
    async () => {
      const r = await op();
      if (r.status === 503) throw new NotYet(`503 ${r.text}`);
      return r;
    },
    { timeoutMs, intervalMs: 50 },
  );
  return value;
}

/** Runs `fn` over `items` with at most `limit` in flight; rejects with the first failure. */
export async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        await fn(items[i]!, i);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
