// The setup every integration test file shares: one store of real nodes per describe (or per file),
// started before its tests and stopped after them, with the nodes' logs printed when a test fails;
// lazily run setup steps that any test can ask for; reads that check a value.
//
//   const ports = portsFor(import.meta.url);
//   describe('...', () => {
//     const store = useCluster({ ports, nodeCount: 3, shardCount: 2 });
//     test('...', async () => {
//       const [a, b] = store.nodes;
//       await store.cluster.kill(b);
//     });
//   });

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { Cluster, printLogsOnFailure, retryWhile503, type ClusterOptions } from './cluster.ts';
import { Client, get, type CausalMetadata, type NodeAddress, type Reply } from './http.ts';
import type { PortRange } from './ports.ts';

/** How long the start may take to have every node in every view (a hold-down of 5 s, and a loaded machine). */
const VIEWS_TIMEOUT_MS = 20_000;

export interface UseClusterOptions extends Omit<ClusterOptions, 'basePort' | 'dataRoot'> {
  /** Node i listens on ports.port(i); joiners and never-answering addresses come from the same range. */
  ports: PortRange;
  /** Durable nodes (DATA_DIR) in a temporary directory made before the start and removed after the tests. */
  durable?: boolean;
  /** Log lines per node printed when a test fails (default 40). */
  logLines?: number;
  /**
   * Before the tests, also wait until every node lists every node (default true): on a loaded
   * machine a node may drop a slow peer right after the start, and until the hold-down lets it back
   * writes that depend on that peer's get 503.
   */
  waitForViews?: boolean;
  /**
   * Runs in the same `before` hook once the store is ready. Needed for a store of the whole file
   * (useCluster at top level): node:test runs file-level `before` hooks at once, not one after the
   * other, so another file-level hook cannot count on the store being there.
   */
  afterStart?: (cluster: Cluster) => void | Promise<void>;
}

export interface StoreFixture {
  /** The running store; fails when the `before` hook has not started it. */
  readonly cluster: Cluster;
  /** The nodes the store started with, in the store's address order (joiners are not added). */
  readonly nodes: NodeAddress[];
  /** The directory of the durable nodes' data (node i in <dataRoot>/<its port>). */
  readonly dataRoot: string;
  readonly ports: PortRange;
}

/**
 * Starts a store in a `before` hook of the enclosing describe (or of the file, called at top
 * level) and SIGKILLs its nodes in an `after` hook, even when a test failed; prints the nodes' logs
 * after a failed test. `options` may be a function, called in the `before` hook, for options that
 * an earlier `before` hook makes (certificates...). In a describe, `before` hooks registered after
 * this call run once the store is ready (at file level, see `afterStart`).
 */
export function useCluster(options: UseClusterOptions | (() => UseClusterOptions)): StoreFixture {
  let cluster: Cluster | undefined;
  let nodes: NodeAddress[] = [];
  let dataRoot: string | undefined;
  let resolved: UseClusterOptions | undefined = typeof options === 'function' ? undefined : options;

  before(async () => {
    resolved = typeof options === 'function' ? options() : options;
    const { ports, durable, logLines: _logLines, waitForViews, afterStart, ...rest } = resolved;
    ports.port(rest.nodeCount - 1); // the range has room for every node
    if (durable === true) dataRoot = mkdtempSync(join(tmpdir(), 'kvs-test-'));
    cluster = await Cluster.start({ ...rest, basePort: ports.port(0), ...(dataRoot === undefined ? {} : { dataRoot }) });
    nodes = cluster.addresses();
    if (waitForViews !== false) await cluster.waitForViews(nodes, { timeoutMs: VIEWS_TIMEOUT_MS });
    await afterStart?.(cluster);
  });
  after(async () => {
    await cluster?.stop();
    if (dataRoot !== undefined) rmSync(dataRoot, { recursive: true, force: true });
  });
  printLogsOnFailure(() => cluster, () => resolved?.logLines ?? 40);

  return {
    get cluster(): Cluster {
      if (cluster === undefined) throw new Error('the store was not started (see the before hook of useCluster)');
      return cluster;
    },
    get nodes(): NodeAddress[] {
      if (cluster === undefined) throw new Error('the store was not started (see the before hook of useCluster)');
      return [...nodes];
    },
    get dataRoot(): string {
      if (dataRoot === undefined) throw new Error('not a durable store: pass durable: true to useCluster');
      return dataRoot;
    },
    get ports(): PortRange {
      if (resolved === undefined) throw new Error('the store was not started (see the before hook of useCluster)');
      return resolved.ports;
    },
  };
}

/** A setup step that runs once, when the first test asks for it; later calls get the same result. */
export interface Step<T> {
  (): Promise<T>;
  /** Whether it has run (or is running). */
  readonly done: boolean;
  /** Forget the result: a test that undid what the step did calls this, and the next call runs it again. */
  reset(): void;
}

/**
 * Wraps what some tests need done first (keys written, a node killed, a joiner admitted) so that
 * each of them asks for it at its start: run in the file's order, the step runs once for all of
 * them; run alone (--test-name-pattern), each test still has what it needs. A step that failed
 * fails every test that asks for it, with the same error.
 */
export function step<T>(run: () => Promise<T>): Step<T> {
  let result: Promise<T> | undefined;
  const call = (): Promise<T> => (result ??= run());
  Object.defineProperty(call, 'done', { get: () => result !== undefined });
  return Object.assign(call, { reset: () => void (result = undefined) }) as Step<T>;
}

/**
 * GET `key` at `addr` (with `meta`, or as `client`, which then carries what it read), waiting out
 * 503s; the reply must be 200 with exactly `expected` as the value. Returns the reply.
 */
export async function readValue(addr: NodeAddress, key: string, meta: CausalMetadata | Client, expected: unknown, what = ''): Promise<Reply> {
  const label = `${what === '' ? '' : `${what}: `}GET ${key} at ${addr}`;
  const r = await retryWhile503(label, () => (meta instanceof Client ? meta.get(addr, key) : get(addr, key, meta)));
  assert.equal(r.status, 200, `${label}: ${r.text}`);
  assert.deepEqual(r.body.value, expected, label);
  return r;
}
