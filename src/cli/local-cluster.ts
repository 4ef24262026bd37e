// A store of N node processes on one machine, for `kvs cluster` and the benchmark: spawns
// `node src/node/main.ts` per node with the environment of README's "Configuration", relays their log lines,
// waits until every node says ready, and stops them all.

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { extname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { KvsClient } from '../client/client.ts';
import type { NodeAddress } from '../client/client.ts';

// Resolved from this file, not from the cwd, so the command works from any directory; with this
// file's own extension, so the compiled package (dist/, .js) starts its own compiled node.
const nodeMainPath = join(import.meta.dirname, '..', 'node', `main${extname(import.meta.filename)}`);

/**
 * V8 flags every node runs with (the image's CMD has the same). `--max-semi-space-size=16` caps V8's
 * young generation at 3 x 16 MiB: left alone, V8 grows it to 3 x 64 MiB on a machine with much
 * memory once a node is busy, about 100 MB of RSS per node that holds no data. In `npm run bench`
 * the cap cost no measurable throughput. A NODE_OPTIONS that sets the size itself wins.
 */
export const NODE_V8_FLAGS: readonly string[] = ['--max-semi-space-size=16'];

function v8FlagsFor(env: Record<string, string | undefined>): string[] {
  return (env.NODE_OPTIONS ?? '').includes('semi-space-size') ? [] : [...NODE_V8_FLAGS];
}

/** Between two rounds of GET /status while waiting for readiness. */
const readyPollIntervalMs = 100;
/** Bound on one GET /status: a starting node that accepts connections answers at once. */
const statusTimeoutMs = 1_000;
/** A node gets this long to exit after SIGTERM before it is killed. */
const stopGraceMs = 5_000;
/** After SIGKILL the kernel ends the process at once; this only bounds waiting for the event. */
const killWaitMs = 2_000;

export type LocalClusterOptions = {
  nodeCount: number;
  /** 0: no SHARD_COUNT, a replicated-only store. */
  shardCount: number;
  host: string;
  basePort: number;
  /** Extra environment for every node (LOG_LEVEL...), over the parent's environment. */
  env?: Record<string, string>;
  /** A folder under which each node keeps its data (DATA_DIR = <folder>/<host>-<port>); none: in memory. */
  dataRoot?: string;
  onLogLine: (address: NodeAddress, line: string) => void;
  /** A node exited while the cluster was not being stopped. */
  onUnexpectedExit: (address: NodeAddress, description: string) => void;
};

export type LocalCluster = {
  addresses: NodeAddress[];
  /**
   * Resolves once every running node's GET /status says ready:true and comes from that node's own
   * process (its `pid`: another store answering on the port does not count); rejects at the
   * deadline or when a node exits first.
   */
  waitReady(timeoutMs: number): Promise<void>;
  /** SIGTERM to every node still running, SIGKILL to those that outlive the grace period. */
  stop(): Promise<void>;
  /** SIGKILL to every node still running, for a second Ctrl-C. */
  kill(): void;
  /** The addresses whose process runs now, in order. */
  running(): NodeAddress[];
  /** Stops one node as `stop` does (no unexpected-exit report); resolves once it has exited. */
  stopNode(address: NodeAddress): Promise<void>;
  /** SIGKILL to one node, as a crash would (no unexpected-exit report). */
  killNode(address: NodeAddress): Promise<void>;
  /** Starts a node that is not running, with the environment it had; resolves once it is ready. */
  startNode(address: NodeAddress, timeoutMs: number): Promise<void>;
};

type RunningNode = { address: NodeAddress; child: ChildProcess; exit: Promise<string>; exited: boolean; stopping: boolean };

export function startLocalCluster(options: LocalClusterOptions): LocalCluster {
  if (!Number.isInteger(options.nodeCount) || options.nodeCount < 1) throw new TypeError('nodeCount must be at least 1');
  // The store gives every shard at least 2 nodes (fault tolerance); say so before starting anything.
  if (options.shardCount * 2 > options.nodeCount) {
    throw new Error(`${options.shardCount} shards need at least ${options.shardCount * 2} nodes (2 per shard)`);
  }
  const addresses = Array.from({ length: options.nodeCount }, (_, i) => `${options.host}:${options.basePort + i}`);
  let stopping = false;
  const nodes = new Map<NodeAddress, RunningNode>();

  function spawnNode(address: NodeAddress): RunningNode {
    const env: Record<string, string | undefined> = { ...process.env, ...options.env, SOCKET_ADDRESS: address, VIEW: addresses.join(',') };
    // An inherited PORT would put every node on one port, and an inherited SHARD_COUNT would
    // shard a store meant to be replicated-only.
    delete env.PORT;
    delete env.SHARD_COUNT;
    delete env.DATA_DIR;
    // The nodes listen where they are reached, not on every interface.
    env.LISTEN_HOST = options.host;
    if (options.dataRoot !== undefined) env.DATA_DIR = join(options.dataRoot, address.replace(':', '-'));
    if (options.shardCount > 0) env.SHARD_COUNT = String(options.shardCount);
    const child = spawn(process.execPath, [...v8FlagsFor(env), nodeMainPath], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => options.onLogLine(address, line));
    }
    const node: RunningNode = {
      address,
      child,
      exited: false,
      stopping: false,
      exit: new Promise((resolve) => {
        child.once('error', (err) => {
          node.exited = true;
          resolve(`could not start: ${err.message}`);
        });
        child.once('exit', (code, signal) => {
          node.exited = true;
          resolve(signal === null ? `exited with code ${code}` : `killed by ${signal}`);
        });
      }),
    };
    void node.exit.then((description) => {
      if (!stopping && !node.stopping) options.onUnexpectedExit(address, description);
    });
    nodes.set(address, node);
    return node;
  }

  for (const address of addresses) spawnNode(address);

  function nodeOf(address: NodeAddress): RunningNode {
    const node = nodes.get(address);
    if (node === undefined) throw new Error(`${address} is not a node of this cluster (${addresses.join(', ')})`);
    return node;
  }

  async function waitReady(timeoutMs: number, only?: NodeAddress): Promise<void> {
    const deadlineMs = performance.now() + timeoutMs;
    const waiting = only === undefined ? [...nodes.values()].filter((node) => !node.exited) : [nodeOf(only)];
    const client = new KvsClient({ nodes: addresses, timeoutMs: statusTimeoutMs });
    const notReady = new Set(waiting);
    // Addresses answered by another process than the node started there, for the error message.
    const foreignPids = new Map<NodeAddress, unknown>();
    try {
      while (notReady.size > 0) {
        const dead = [...notReady].find((node) => node.exited);
        if (dead !== undefined) throw new Error(`node ${dead.address} exited before it was ready`);
        if (performance.now() > deadlineMs) {
          const foreign = [...notReady].filter((node) => foreignPids.has(node.address));
          throw new Error(
            `not ready after ${timeoutMs} ms: ${[...notReady].map((node) => node.address).join(', ')}` +
              (foreign.length > 0 ? ` (${foreign.map((node) => `${node.address} is answered by process ${foreignPids.get(node.address)}, not by this cluster's node`).join('; ')})` : ''),
          );
        }
        await Promise.all(
          [...notReady].map(async (node) => {
            const status = await client.status(node.address).catch(() => undefined);
            if (status === undefined) return;
            // Another process answering at the address is not this node, however ready it is.
            if (status.pid !== node.child.pid) {
              foreignPids.set(node.address, status.pid);
              return;
            }
            foreignPids.delete(node.address);
            if (status.ready === true) notReady.delete(node);
          }),
        );
        if (notReady.size > 0) await sleep(readyPollIntervalMs);
      }
    } finally {
      await client.close();
    }
  }

  async function stopOne(node: RunningNode): Promise<void> {
    node.stopping = true;
    if (node.exited) return;
    node.child.kill('SIGTERM');
    if (await settlesWithin(node.exit, stopGraceMs)) return;
    node.child.kill('SIGKILL');
    await settlesWithin(node.exit, killWaitMs);
  }

  async function stop(): Promise<void> {
    stopping = true;
    await Promise.all([...nodes.values()].map(stopOne));
  }

  function kill(): void {
    stopping = true;
    for (const node of nodes.values()) if (!node.exited) node.child.kill('SIGKILL');
  }

  return {
    addresses,
    waitReady: (timeoutMs) => waitReady(timeoutMs),
    stop,
    kill,
    running: () => addresses.filter((address) => !nodeOf(address).exited),
    stopNode: (address) => stopOne(nodeOf(address)),
    async killNode(address) {
      const node = nodeOf(address);
      node.stopping = true;
      if (node.exited) return;
      node.child.kill('SIGKILL');
      await settlesWithin(node.exit, killWaitMs);
    },
    async startNode(address, timeoutMs) {
      if (!nodeOf(address).exited) throw new Error(`${address} is running`);
      if (stopping) throw new Error('the cluster is stopping');
      spawnNode(address);
      await waitReady(timeoutMs, address);
    },
  };
}

/**
 * The ports among `ports` that something on this machine already listens on at `host`: each is
 * bound for a moment and released. A taken one would make its node exit at start, or worse, leave
 * another store answering in its place.
 */
export async function portsInUse(host: string, ports: readonly number[]): Promise<number[]> {
  const taken: number[] = [];
  for (const port of ports) {
    const free = await new Promise<boolean>((resolve, reject) => {
      const server = createServer();
      server.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' ? resolve(false) : reject(err)));
      server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
    });
    if (!free) taken.push(port);
  }
  return taken;
}

async function settlesWithin(promise: Promise<unknown>, timeoutMs: number): Promise<boolean> {
  const timer = sleep(timeoutMs, false, { ref: false });
  return Promise.race([promise.then(() => true), timer]);
}
