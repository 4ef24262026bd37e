// A store of N node processes on one machine, for `kvs cluster` and the benchmark: spawns
// `node src/node/main.ts` per node with the environment of CONVENTIONS, relays their log lines,
// waits until every node says ready, and stops them all.

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { KvsClient } from '../client/client.ts';
import type { NodeAddress } from '../client/client.ts';

// Resolved from this file, not from the cwd, so the command works from any directory.
const nodeMainPath = join(import.meta.dirname, '..', 'node', 'main.ts');

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
  /** Resolves once every node's GET /status says ready:true; rejects at the deadline or when a
   * node exits first. */
  waitReady(timeoutMs: number): Promise<void>;
  /** SIGTERM to every node still running, SIGKILL to those that outlive the grace period. */
  stop(): Promise<void>;
  /** SIGKILL to every node still running, for a second Ctrl-C. */
  kill(): void;
};

type RunningNode = { address: NodeAddress; child: ChildProcess; exit: Promise<string>; exited: boolean };

export function startLocalCluster(options: LocalClusterOptions): LocalCluster {
  if (!Number.isInteger(options.nodeCount) || options.nodeCount < 1) throw new TypeError('nodeCount must be at least 1');
  // The store gives every shard at least 2 nodes (fault tolerance); say so before starting anything.
  if (options.shardCount * 2 > options.nodeCount) {
    throw new Error(`${options.shardCount} shards need at least ${options.shardCount * 2} nodes (2 per shard)`);
  }
  const addresses = Array.from({ length: options.nodeCount }, (_, i) => `${options.host}:${options.basePort + i}`);
  let stopping = false;

  const nodes: RunningNode[] = addresses.map((address) => {
    const env: Record<string, string | undefined> = { ...process.env, ...options.env, SOCKET_ADDRESS: address, VIEW: addresses.join(',') };
    // An inherited PORT would put every node on one port, and an inherited SHARD_COUNT would
    // shard a store meant to be replicated-only.
    delete env.PORT;
    delete env.SHARD_COUNT;
    delete env.DATA_DIR;
    if (options.dataRoot !== undefined) env.DATA_DIR = join(options.dataRoot, address.replace(':', '-'));
    if (options.shardCount > 0) env.SHARD_COUNT = String(options.shardCount);
    const child = spawn(process.execPath, [nodeMainPath], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => options.onLogLine(address, line));
    }
    const node: RunningNode = {
      address,
      child,
      exited: false,
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
      if (!stopping) options.onUnexpectedExit(address, description);
    });
    return node;
  });

  async function waitReady(timeoutMs: number): Promise<void> {
    const deadlineMs = performance.now() + timeoutMs;
    const client = new KvsClient({ nodes: addresses, timeoutMs: statusTimeoutMs });
    const notReady = new Set(addresses);
    try {
      while (notReady.size > 0) {
        const dead = nodes.find((node) => node.exited);
        if (dead !== undefined) throw new Error(`node ${dead.address} exited before the cluster was ready`);
        if (performance.now() > deadlineMs) {
          throw new Error(`not ready after ${timeoutMs} ms: ${[...notReady].join(', ')}`);
        }
        await Promise.all(
          [...notReady].map(async (address) => {
            const status = await client.status(address).catch(() => undefined);
            if (status?.ready === true) notReady.delete(address);
          }),
        );
        if (notReady.size > 0) await sleep(readyPollIntervalMs);
      }
    } finally {
      await client.close();
    }
  }

  async function stop(): Promise<void> {
    stopping = true;
    await Promise.all(
      nodes.map(async (node) => {
        if (node.exited) return;
        node.child.kill('SIGTERM');
        if (await settlesWithin(node.exit, stopGraceMs)) return;
        node.child.kill('SIGKILL');
        await settlesWithin(node.exit, killWaitMs);
      }),
    );
  }

  function kill(): void {
    stopping = true;
    for (const node of nodes) if (!node.exited) node.child.kill('SIGKILL');
  }

  return { addresses, waitReady, stop, kill };
}

async function settlesWithin(promise: Promise<unknown>, timeoutMs: number): Promise<boolean> {
  const timer = sleep(timeoutMs, false, { ref: false });
  return Promise.race([promise.then(() => true), timer]);
}
