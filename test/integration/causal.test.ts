// Causal consistency (spec section 3) across shards, and the 503 of a replica that lacks a write
// the client depends on.
//
// Replication on loopback takes milliseconds, so racing a reader against it rarely catches a
// missing dependency. The deterministic tests therefore cut a replica off first: DELETE /view in
// both directions makes its peer stop replicating to it (and it stop pulling), and HOLD_DOWN_MS
// keeps them apart until the test puts each back with PUT /view.
//
// Store 1: 4 nodes, SHARD_COUNT=2 (2 members per shard), the first ports of the file's range.
// Store 2: 2 nodes, replicated-only, from the 50th port of the range (test/helpers/ports.ts).
// Each test of store 1 uses keys of its own among those written before the tests.

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { NotYet, pollUntil, retryWhile503 } from '../helpers/cluster.ts';
import { Client, call, get, getView, put, readShardLayout, type NodeAddress, type Reply, type ShardLayout } from '../helpers/http.ts';
import { portsFor } from '../helpers/ports.ts';
import { readValue, useCluster } from '../helpers/store.ts';

const ports = portsFor(import.meta.url);

const KEYS_PER_SHARD = 41;
const DEPENDENCIES_MISSING = 'Causal dependencies not satisfied; try again later';

describe('causal consistency across shards', () => {
  // CAUSAL_WAIT_MS short so the 503s below come quickly; HOLD_DOWN_MS long so that only the
  // test's own PUT /view brings back a node it cut off.
  const store = useCluster({ ports: ports.slice(0, 50), nodeCount: 4, shardCount: 2, extraEnv: { HOLD_DOWN_MS: '600000', CAUSAL_WAIT_MS: '300' } });
  let nodes: NodeAddress[] = [];
  let layout: ShardLayout;
  /** Keys of each shard, created during setup with value "init". */
  const keysOf = new Map<string, string[]>();

  before(async () => {
    nodes = store.nodes;
    layout = await readShardLayout(nodes[0]!);
    assert.equal(layout.ids.length, 2);
    for (const id of layout.ids) keysOf.set(id, []);
    const setup = new Client();
    // Every test below uses keys 0..KEYS_PER_SHARD-1 of each shard.
    for (let i = 0; [...keysOf.values()].some((keys) => keys.length < KEYS_PER_SHARD); i++) {
      assert.ok(i < 10 * KEYS_PER_SHARD, `after ${i} keys a shard still has fewer than ${KEYS_PER_SHARD}: ${[...keysOf.values()].map((k) => k.length)}`);
      const r = await setup.put(nodes[i % 4]!, `ck-${i}`, 'init');
      assert.equal(r.status, 201, r.text);
      keysOf.get(r.body['shard-id'])!.push(`ck-${i}`);
    }
    // Let every replica have the initial values, so "init" below can only mean a stale read.
    for (const [id, keys] of keysOf) {
      for (const member of layout.members[id]!) {
        for (const key of keys) await readValue(member, key, setup.meta, 'init', 'setup');
      }
    }
  });

  /** Reads `key` at `addr` as `client`, waiting out 503s; anything but `expected` fails. */
  function mustRead(client: Client, addr: NodeAddress, key: string, expected: unknown, why: string): Promise<Reply> {
    return readValue(addr, key, client, expected, `${why} (an older state is a violation)`);
  }

  /**
   * Reads `key` at `addr` as `client` until it returns `value` (older values are fine meanwhile:
   * the client has no dependency on it yet); the client then carries what it read.
   */
  async function readUntil(client: Client, addr: NodeAddress, key: string, value: unknown): Promise<void> {
    await pollUntil(
      `${key} = ${String(value)} at ${addr}`,
      async () => {
        const r = await client.get(addr, key);
        if (r.status !== 200 || r.body.value !== value) throw new NotYet(`${r.status} ${r.text}`);
      },
      { timeoutMs: 5_000, intervalMs: 10 },
    );
  }

  /** Removes `a` and `b` from each other's view: neither sends the other anything until `heal`. */
  async function split(a: NodeAddress, b: NodeAddress): Promise<void> {
    for (const [at, other] of [[a, b], [b, a]] as const) {
      const r = await call('DELETE', at, '/view', { 'socket-address': other });
      assert.equal(r.status, 200, `DELETE /view ${other} at ${at}: ${r.text}`);
    }
  }

  /** Every node is told about every other again; waits until all views are whole. */
  async function heal(): Promise<void> {
    for (const at of nodes) {
      for (const other of nodes) {
        if (other === at) continue;
        const r = await call('PUT', at, '/view', { 'socket-address': other });
        assert.ok(r.status === 200 || r.status === 201, `PUT /view ${other} at ${at}: ${r.text}`);
      }
    }
    await store.cluster.waitForViews(nodes, { timeoutMs: 10_000 });
  }

  /** The reply must be the 503 of a replica lacking a dependency (not the older value, not 404). */
  function assertDependencyMissing(r: Reply, why: string): void {
    assert.equal(r.status, 503, `${why}: expected 503, got ${r.status} ${r.text}`);
    assert.deepEqual(r.body, { error: DEPENDENCIES_MISSING }, why);
  }

  test('metadata minted by one shard is accepted by the other', async () => {
    const [sa, sb] = layout.ids as [string, string];
    const c = new Client();
    const w = await c.put(layout.members[sa]![0]!, keysOf.get(sa)![0]!, 'from-a');
    assert.equal(w.status, 200, w.text);
    for (const member of layout.members[sb]!) {
      const r = await c.get(member, keysOf.get(sb)![0]!);
      assert.equal(r.status, 200, `GET in shard ${sb} with metadata from shard ${sa}: ${r.text}`);
      assert.equal(r.body.value, 'init');
    }
    const w2 = await c.put(layout.members[sb]![1]!, keysOf.get(sb)![0]!, 'from-b');
    assert.equal(w2.status, 200, `PUT in shard ${sb} with metadata from both shards: ${w2.text}`);
    await mustRead(c, layout.members[sa]![1]!, keysOf.get(sa)![0]!, 'from-a', 'read-your-writes across shards');
  });

  test('x in one shard, then y in the other: whoever reads y then reads x sees x', async () => {
    const [sa, sb] = layout.ids as [string, string];
    const [a1, a2] = layout.members[sa] as [NodeAddress, NodeAddress];
    const [b1, b2] = layout.members[sb] as [NodeAddress, NodeAddress];
    for (let i = 1; i <= 20; i++) {
      const x = keysOf.get(sa)![i]!;
      const y = keysOf.get(sb)![i]!;
      const writer = new Client();
      assert.equal((await writer.put(a1, x, `x-${i}`)).status, 200);
      assert.equal((await writer.put(b1, y, `y-${i}`)).status, 200);

      // The reader starts with no metadata and reads y at the other replica of y's shard until the
      // new value shows up (older values are fine: it has no dependency yet).
      const reader = new Client();
      await readUntil(reader, b2, y, `y-${i}`);
      // y depended on x, so x must now be visible everywhere this reader looks: never "init", never 404.
      await mustRead(reader, a2, x, `x-${i}`, `round ${i}: read y (written after x) then x at the replica x was not written to`);
      await mustRead(reader, a1, x, `x-${i}`, `round ${i}: x at its writer`);
    }
  });

  test('transitive: a write that depends on a read carries the read\'s dependencies', async () => {
    const [sa, sb] = layout.ids as [string, string];
    const [a1, a2] = layout.members[sa] as [NodeAddress, NodeAddress];
    const [b1, b2] = layout.members[sb] as [NodeAddress, NodeAddress];
    for (let i = 21; i <= 30; i++) {
      const x = keysOf.get(sa)![i]!;
      const y = keysOf.get(sb)![i]!;
      const first = new Client();
      assert.equal((await first.put(a1, x, `x-${i}`)).status, 200);
      // A second client reads x, then writes y: y depends on x.
      const second = new Client();
      await mustRead(second, a1, x, `x-${i}`, 'second client reads x at its writer');
      assert.equal((await second.put(b1, y, `y-${i}`)).status, 200);
      // A third client that reads that y must then see x.
      const third = new Client();
      await readUntil(third, b2, y, `y-${i}`);
      await mustRead(third, a2, x, `x-${i}`, `round ${i}: x -> (read) -> y -> (read) -> x`);
    }
  });

  test('deterministic: x\'s other replica, cut off from x, answers 503 to a reader who saw y (x -> y)', async () => {
    const [sa, sb] = layout.ids as [string, string];
    const [a1, a2] = layout.members[sa] as [NodeAddress, NodeAddress];
    const [b1, b2] = layout.members[sb] as [NodeAddress, NodeAddress];
    for (let i = 31; i <= 33; i++) {
      const x = keysOf.get(sa)![i]!;
      const y = keysOf.get(sb)![i]!;
      await split(a1, a2); // a2 will not get x until healed
      try {
        const writer = new Client();
        assert.equal((await writer.put(a1, x, `x-${i}`)).status, 200);
        assert.equal((await writer.put(b1, y, `y-${i}`)).status, 200);
        const reader = new Client();
        await readUntil(reader, b2, y, `y-${i}`);
        // A reader without that dependency gets the old x from a2 (it is available)...
        const other = await get(a2, x, null);
        assert.equal(other.status, 200, other.text);
        assert.equal(other.body.value, 'init', 'a2 really lacks x (else this test proves nothing)');
        // ...but the reader who saw y must not: y's metadata, minted in shard B, names x.
        assertDependencyMissing(await reader.get(a2, x), `round ${i}: read y, then x at the replica that lacks x`);
      } finally {
        await heal();
      }
      const reader = new Client();
      await mustRead(reader, b2, y, `y-${i}`, 'after heal');
      await mustRead(reader, a2, x, `x-${i}`, `round ${i}: once healed, a2 gets x and serves it`);
    }
  });

  test('deterministic, transitive: x -> (read by a 2nd client) -> y -> (read by a 3rd) -> x is 503 where x is missing', async () => {
    const [sa, sb] = layout.ids as [string, string];
    const [a1, a2] = layout.members[sa] as [NodeAddress, NodeAddress];
    const [b1, b2] = layout.members[sb] as [NodeAddress, NodeAddress];
    const x = keysOf.get(sa)![34]!;
    const y = keysOf.get(sb)![34]!;
    await split(a1, a2);
    try {
      const first = new Client();
      assert.equal((await first.put(a1, x, 'x-34')).status, 200);
      const second = new Client();
      await mustRead(second, a1, x, 'x-34', 'second client reads x at its writer');
      assert.equal((await second.put(b1, y, 'y-34')).status, 200);
      const third = new Client();
      await readUntil(third, b2, y, 'y-34');
      assertDependencyMissing(await third.get(a2, x), 'third client: read y (which depended on x), then x where x is missing');
      // A write by the third client at a2 depends on x too.
      assertDependencyMissing(await third.put(a2, keysOf.get(sa)![35]!, 'w'), 'third client writes at the replica that lacks x');
    } finally {
      await heal();
    }
    const third = new Client();
    await mustRead(third, b2, y, 'y-34', 'after heal');
    await mustRead(third, a2, x, 'x-34', 'after heal, a2 serves x');
    const untouched = await retryWhile503('GET the refused write\'s key', () => third.get(a1, keysOf.get(sa)![35]!));
    assert.equal(untouched.body?.value, 'init', 'a write answered 503 must not take effect');
  });

  test('monotonic reads: a client never goes back to an older value, whichever replica it asks', async () => {
    const [sa] = layout.ids as [string];
    const members = layout.members[sa]!;
    const key = keysOf.get(sa)![40]!;
    const writer = new Client();
    const reader = new Client();
    let last = -1;
    for (let i = 0; i < 20; i++) {
      assert.equal((await writer.put(members[i % 2]!, key, i)).status, 200);
      for (const m of [members[1 - (i % 2)]!, members[i % 2]!, members[1 - (i % 2)]!]) {
        const r = await retryWhile503(`GET ${key} at ${m}`, () => reader.get(m, key));
        assert.equal(r.status, 200, r.text);
        const v = r.body.value;
        if (typeof v === 'number') {
          assert.ok(v >= last, `monotonic reads: saw ${last}, then ${v} at ${m}`);
          last = v;
        }
      }
    }
  });
});

describe('a replica that lacks a write the client depends on answers 503', () => {
  // Two nodes of one replicated-only store. Each is removed from the other's view by DELETE /view,
  // so neither sends anything to the other; HOLD_DOWN_MS keeps them from re-admitting each other
  // for the whole test. A write at A is then missing at B for as long as we like.
  const store = useCluster({ ports: ports.slice(50, 50), nodeCount: 2, extraEnv: { HOLD_DOWN_MS: '600000', CAUSAL_WAIT_MS: '300' } });
  let A: NodeAddress;
  let B: NodeAddress;

  before(() => {
    [A, B] = store.nodes as [NodeAddress, NodeAddress];
  });

  test('503 {"error": "Causal dependencies not satisfied; try again later"}, then the value once reconnected', async () => {
    // Baseline: both replicate to each other.
    const c = new Client();
    assert.equal((await c.put(A, 'dep', 'before-split')).status, 201);
    await mustEventuallyRead(B, 'dep', c, 'before-split');

    for (const [at, other] of [[B, A], [A, B]] as const) {
      const r = await call('DELETE', at, '/view', { 'socket-address': other });
      assert.equal(r.status, 200, `DELETE /view ${other} at ${at}: ${r.text}`);
    }
    assert.deepEqual(await getView(A), [A]);
    assert.deepEqual(await getView(B), [B]);

    const w = await c.put(A, 'dep', 'after-split');
    assert.equal(w.status, 200, w.text);
    // B does not have "after-split" and cannot get it: a read that depends on it must not return
    // the older value, nor wait forever.
    const start = performance.now();
    const r = await get(B, 'dep', c.meta);
    const elapsedMs = performance.now() - start;
    assert.equal(r.status, 503, `GET at the replica missing the write: ${r.status} ${r.text}`);
    assert.deepEqual(r.body, { error: DEPENDENCIES_MISSING });
    assert.ok(elapsedMs < 5_000, `the 503 took ${Math.round(elapsedMs)} ms (CAUSAL_WAIT_MS is 300)`);
    // Writes that depend on it are refused the same way, and do not take effect.
    const p = await put(B, 'other', 'x', c.meta);
    assert.equal(p.status, 503, `PUT at the replica missing the dependency: ${p.status} ${p.text}`);
    assert.deepEqual(p.body, { error: DEPENDENCIES_MISSING });
    // A client without that dependency is served (availability).
    const fresh = await get(B, 'dep', null);
    assert.equal(fresh.status, 200, fresh.text);
    assert.equal(fresh.body.value, 'before-split');
    // Still nothing to be had at B: the view stays split (no silent resync).
    assert.deepEqual(await getView(B), [B]);
    const again = await get(B, 'dep', c.meta);
    assert.equal(again.status, 503, again.text);

    // Reconnect: each is told about the other. B then gets the write and serves it.
    for (const [at, other] of [[A, B], [B, A]] as const) {
      const re = await call('PUT', at, '/view', { 'socket-address': other });
      assert.ok(re.status === 201 || re.status === 200, `PUT /view ${other} at ${at}: ${re.text}`);
    }
    await mustEventuallyRead(B, 'dep', c, 'after-split');
  });

  async function mustEventuallyRead(addr: NodeAddress, key: string, c: Client, expected: unknown): Promise<void> {
    await pollUntil(
      `${key} = ${JSON.stringify(expected)} at ${addr}`,
      async () => {
        const r = await get(addr, key, c.meta);
        if (r.status === 503) throw new NotYet(`503 ${r.text}`);
        assert.equal(r.status, 200, `GET ${key} at ${addr} with the client's metadata: ${r.text}`);
        assert.deepEqual(r.body.value, expected, `GET ${key} at ${addr} with the client's metadata`);
      },
      { timeoutMs: 10_000 },
    );
  }
});
