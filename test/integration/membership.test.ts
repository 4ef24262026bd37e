// Membership changes (spec section 4): a 7th node joins and is added to a shard, then the store is
// resharded to 3 shards and back to 2. Starts with 6 nodes, SHARD_COUNT=2; the joiner is the 7th
// port of the file's range (test/helpers/ports.ts).

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { NotYet, forEachLimited, pollUntil } from '../helpers/cluster.ts';
import {
  Client,
  call,
  getKeyCount,
  getNodeShardId,
  getView,
  readShardLayout,
  sortedAddresses,
  type CausalMetadata,
  type NodeAddress,
  type ShardLayout,
} from '../helpers/http.ts';
import { portsFor } from '../helpers/ports.ts';
import { readValue, step, useCluster } from '../helpers/store.ts';

const ports = portsFor(import.meta.url);
const NODE_COUNT = 6;
const NOT_A_NODE = ports.address(99);
const KEY_COUNT = 600;
/** Spec: the added node reports its shard and the same key count within 5 s. */
const SPEC_WINDOW_MS = 5_000;
const MEASURE_SLACK_MS = 250;
/** Spec: a reshard completes within 20 s for thousands of keys. */
const RESHARD_WINDOW_MS = 20_000;
const NOT_ENOUGH_NODES = 'Not enough nodes to provide fault tolerance with requested shard count';

// The store goes through stages, forward only: the joiner joins, it is added to a shard, the store
// is resharded to 3, then back to 2. The first two stages are `step`s, run by the test about them or
// by the first test that needs the store at that stage; the two reshards are one test, since each
// changes what the other's checks look at. Tests that only look (a rejected request changes
// nothing) compare with what the store answered at their own start, so the tests pass in any order
// (`--test-randomize`) and alone.

describe('membership: add-member and reshard', () => {
  const store = useCluster({ ports, nodeCount: NODE_COUNT, shardCount: 2 });
  const joiner = ports.address(NODE_COUNT);
  /** The nodes the store started with. */
  let initial: NodeAddress[] = [];
  /** Every node in the store, the joiner too once it has joined. */
  let nodes: NodeAddress[] = [];
  /** The shard layout, until the reshards: at the start, then with the joiner added. */
  let layout: ShardLayout;
  const client = new Client();
  /** key -> latest value written; every key is live. */
  const values = new Map<string, unknown>();

  before(async () => {
    initial = store.nodes;
    nodes = initial;
    layout = await readShardLayout(nodes[0]!);
    for (let i = 0; i < KEY_COUNT; i++) {
      const key = `key-${i}`;
      const r = await client.put(nodes[i % nodes.length]!, key, `v0-${i}`);
      assert.equal(r.status, 201, `setup PUT ${key}: ${r.text}`);
      values.set(key, `v0-${i}`);
    }
  });

  /** Stage 1: a node started without SHARD_COUNT is in no shard and has announced itself into every view. */
  const joined = step(async () => {
    assert.equal(await store.cluster.startJoiner(ports.port(NODE_COUNT)), joiner);
    await store.cluster.waitReady([joiner]);
    const r = await call('GET', joiner, '/shard/node-shard-id');
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body, { 'node-shard-id': null });
    nodes = sortedAddresses([...initial, joiner]);
    await store.cluster.waitForViews(nodes, { timeoutMs: SPEC_WINDOW_MS });
    // It learned the shard layout from its peers; it is in none of the shards.
    await pollUntil(
      'the joiner answers the same shard layout as the others',
      async () => {
        const mine = await readShardLayout(joiner);
        if (JSON.stringify(mine) !== JSON.stringify(layout)) throw new NotYet(`joiner: ${JSON.stringify(mine)} vs ${JSON.stringify(layout)}`);
      },
      { timeoutMs: SPEC_WINDOW_MS },
    );
    for (const id of layout.ids) assert.ok(!layout.members[id]!.includes(joiner));
  });

  /** Stage 2: add-member put the joiner in the first shard; within 5 s it has the shard and its data. */
  const added = step(async () => {
    await joined();
    const target = layout.ids[0]!;
    const via = layout.members[layout.ids[1]!]![0]!; // a node outside the target shard
    const expectedMembers = sortedAddresses([...layout.members[target]!, joiner]);
    const start = performance.now();
    const r = await call('PUT', via, `/shard/add-member/${encodeURIComponent(target)}`, { 'socket-address': joiner });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body, { result: 'node added to shard' });

    await pollUntil(
      `every node lists ${joiner} in ${target}; it reports ${target} and the same key count`,
      async () => {
        for (const addr of nodes) {
          const layoutThere = await readShardLayout(addr);
          if (JSON.stringify(layoutThere.members[target]) !== JSON.stringify(expectedMembers)) {
            throw new NotYet(`${addr} lists ${target} members ${layoutThere.members[target]}`);
          }
        }
        const reported = await getNodeShardId(joiner);
        if (reported !== target) throw new NotYet(`joiner reports ${reported}`);
        const counts = await Promise.all(nodes.map((a) => getKeyCount(a, target)));
        if (new Set(counts).size !== 1) throw new NotYet(`key counts of ${target} differ: ${counts}`);
      },
      { timeoutMs: SPEC_WINDOW_MS + 1_000 },
    );
    const elapsedMs = performance.now() - start;
    assert.ok(elapsedMs <= SPEC_WINDOW_MS + MEASURE_SLACK_MS, `add-member took ${Math.round(elapsedMs)} ms, spec allows ${SPEC_WINDOW_MS}`);
    layout.members[target] = expectedMembers;
    for (const addr of nodes) assert.deepEqual(await readShardLayout(addr), layout, `layout at ${addr}`);

    // It copied the shard's data: it serves every key of its shard with the client's metadata.
    const meta = client.meta;
    const keysOfTarget: string[] = [];
    for (const [key, value] of values) {
      const g = await readValue(joiner, key, meta, value, 'at the joiner');
      if (g.body['shard-id'] === target) keysOfTarget.push(key);
    }
    assert.equal(await getKeyCount(joiner, target), keysOfTarget.length, 'key count of the joined shard');
  });

  interface Resharded {
    /** The client's metadata just before the reshard. */
    metaBefore: CausalMetadata;
    layout: ShardLayout;
  }

  /** Stages 3 and 4, in one test (each changes what the other's checks look at): resharded to 3 shards, then back to 2. */
  const RESHARDS = [3, 2] as const;

  /** PUT /shard/reshard: 200 "resharded"; within 20 s every node agrees on `shardCount` shards holding every key, balanced. */
  async function reshard(shardCount: number): Promise<Resharded> {
    assert.equal(nodes.length, 7, 'the joiner is in');
    const metaBefore = client.meta;
    const start = performance.now();
    const r = await call('PUT', nodes[1]!, '/shard/reshard', { 'shard-count': shardCount }, { timeoutMs: RESHARD_WINDOW_MS });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body, { result: 'resharded' });

    const total = values.size;
    const { value } = await pollUntil(
      `every node agrees on ${shardCount} shards whose key counts sum to ${total}`,
      async () => {
        const first = await readShardLayout(nodes[0]!);
        if (first.ids.length !== shardCount) throw new NotYet(`${nodes[0]} has ids ${first.ids}`);
        for (const addr of nodes.slice(1)) {
          const l = await readShardLayout(addr);
          if (JSON.stringify(l) !== JSON.stringify(first)) throw new NotYet(`${addr}: ${JSON.stringify(l)} vs ${JSON.stringify(first)}`);
        }
        for (const addr of nodes) {
          const id = await getNodeShardId(addr);
          if (!first.members[id!]?.includes(addr)) throw new NotYet(`${addr} reports ${id}`);
        }
        const counts: number[] = [];
        for (const id of first.ids) {
          const perNode = await Promise.all(nodes.map((a) => getKeyCount(a, id)));
          if (new Set(perNode).size !== 1) throw new NotYet(`key counts of ${id} differ between nodes: ${perNode}`);
          counts.push(perNode[0]!);
        }
        const sum = counts.reduce((a, b) => a + b, 0);
        if (sum !== total) throw new NotYet(`key counts ${counts} sum to ${sum}, not ${total}`);
        return { layout: first, counts };
      },
      { timeoutMs: RESHARD_WINDOW_MS, intervalMs: 250 },
    );
    const elapsedMs = performance.now() - start;
    assert.ok(elapsedMs <= RESHARD_WINDOW_MS + 1_000, `reshard took ${Math.round(elapsedMs)} ms`);
    const newLayout = value.layout;

    const members: NodeAddress[] = [];
    for (const id of newLayout.ids) {
      const m = newLayout.members[id]!;
      assert.ok(m.length >= 2, `shard ${id} has ${m.length} members: ${m}`);
      assert.deepEqual(m, sortedAddresses(m), `members of ${id} sorted`);
      members.push(...m);
    }
    assert.deepEqual(sortedAddresses(members), nodes, 'every node in the view is in exactly one shard');
    const mean = total / shardCount;
    for (const [i, n] of value.counts.entries()) {
      assert.ok(n > mean * 0.75 && n < mean * 1.25, `shard ${newLayout.ids[i]} holds ${n} of ${total} keys; must be strictly within (${mean * 0.75}, ${mean * 1.25})`);
    }
    return { metaBefore, layout: newLayout };
  }

  test('reshard to more shards than the view can give two nodes each (4 with 6 nodes, or with 7): 400, nothing changes', async () => {
    // Whatever stage the store is at (this test may run before or after the join).
    const view = await getView(nodes[4]!);
    const shardCount = Math.floor(view.length / 2) + 1;
    assert.equal(shardCount, 4, `${view.length} nodes`);
    const before = await readShardLayout(nodes[0]!);
    const r = await call('PUT', nodes[4]!, '/shard/reshard', { 'shard-count': shardCount });
    assert.equal(r.status, 400, r.text);
    assert.deepEqual(r.body, { error: NOT_ENOUGH_NODES });
    for (const addr of view) assert.deepEqual(await readShardLayout(addr), before, `layout at ${addr}`);
  });

  test('a node started without SHARD_COUNT is in no shard and announces itself into every view', async () => {
    await joined();
  });

  test('add-member to an unknown shard or of an address not in the view: 404', async () => {
    await joined();
    const before = await readShardLayout(nodes[0]!);
    const joinerShard = await getNodeShardId(joiner);
    const unknownShard = await call('PUT', nodes[0]!, '/shard/add-member/no-such-shard', { 'socket-address': joiner });
    assert.equal(unknownShard.status, 404, unknownShard.text);
    assert.equal(typeof unknownShard.body?.error, 'string', unknownShard.text);

    const unknownNode = await call('PUT', nodes[0]!, `/shard/add-member/${encodeURIComponent(before.ids[0]!)}`, { 'socket-address': NOT_A_NODE });
    assert.equal(unknownNode.status, 404, unknownNode.text);
    assert.equal(typeof unknownNode.body?.error, 'string', unknownNode.text);

    assert.equal(await getNodeShardId(joiner), joinerShard, 'a failed add-member changes nothing');
    for (const addr of [nodes[0]!, joiner]) assert.deepEqual(await readShardLayout(addr), before, `layout at ${addr}`);
  });

  test('add-member: 200; within 5 s every node lists it, it reports the shard and the same key count', async () => {
    await added();
  });

  test('reshard: invalid shard-count values get a 4xx JSON error', async () => {
    const before = await readShardLayout(nodes[3]!);
    for (const body of [{}, { 'shard-count': 0 }, { 'shard-count': -1 }, { 'shard-count': 'three' }, { 'shard-count': 1.5 }]) {
      const r = await call('PUT', nodes[0]!, '/shard/reshard', body);
      assert.ok(r.status >= 400 && r.status < 500, `reshard ${JSON.stringify(body)}: ${r.status} ${r.text}`);
      assert.equal(typeof r.body?.error, 'string', `reshard ${JSON.stringify(body)}: ${r.text}`);
    }
    assert.deepEqual(await readShardLayout(nodes[3]!), before, 'rejected reshards change nothing');
  });

  test('reshard to 4 with 7 nodes (8 > 7): 400, nothing changes', async () => {
    await joined();
    assert.equal(nodes.length, 7);
    const before = await readShardLayout(nodes[0]!);
    const r = await call('PUT', nodes[2]!, '/shard/reshard', { 'shard-count': 4 });
    assert.equal(r.status, 400, r.text);
    assert.deepEqual(r.body, { error: NOT_ENOUGH_NODES });
    for (const addr of nodes) assert.deepEqual(await readShardLayout(addr), before, `layout at ${addr}`);
  });

  test('reshard to 3, then back to 2: each time 200 "resharded", every node agrees on the shards within 20 s, balanced; every key is readable with the metadata from before, and writes with it work', async () => {
    await added();
    for (const shardCount of RESHARDS) {
      const resharded = await reshard(shardCount);
      await readableWithMetadataFromBefore(resharded);
      await writableWithMetadataFromBefore(shardCount, resharded);
    }
  });

  /** Every key is readable with the metadata from before the reshard, with its latest value, in the shard its key count says. */
  async function readableWithMetadataFromBefore({ metaBefore, layout: newLayout }: Resharded): Promise<void> {
    const perShard = new Map<string, number>();
    const entries = [...values];
    await forEachLimited(entries, 6, async ([key, value], i) => {
      const reader = nodes[i % nodes.length]!;
      const r = await readValue(reader, key, metaBefore, value, `with pre-reshard metadata (${newLayout.ids.length} shards)`);
      const shard = r.body['shard-id'];
      assert.ok(newLayout.ids.includes(shard), `GET ${key}: shard-id ${shard} is not one of ${newLayout.ids}`);
      perShard.set(shard, (perShard.get(shard) ?? 0) + 1);
    });
    for (const id of newLayout.ids) {
      assert.equal(perShard.get(id) ?? 0, await getKeyCount(nodes[0]!, id), `keys GET placed in ${id} vs its key count`);
    }
  }

  /** Writes with the metadata from before the reshard work, and read back everywhere; the view is untouched. */
  async function writableWithMetadataFromBefore(shardCount: number, { metaBefore, layout: newLayout }: Resharded): Promise<void> {
    const c = new Client();
    c.meta = metaBefore;
    const written: [string, unknown][] = [];
    for (let i = 0; i < 10; i++) {
      const key = `key-${i * 37}`;
      const value = `after-reshard-${shardCount}-${i}`;
      const r = await c.put(nodes[(i + 3) % nodes.length]!, key, value);
      assert.equal(r.status, 200, `PUT existing ${key} with pre-reshard metadata: ${r.text}`);
      written.push([key, value]);
    }
    for (let i = 0; i < 5; i++) {
      const key = `new-after-${shardCount}-${i}`;
      const r = await c.put(nodes[i % nodes.length]!, key, i);
      assert.equal(r.status, 201, `PUT new ${key} with pre-reshard metadata: ${r.text}`);
      assert.ok(newLayout.ids.includes(r.body['shard-id']));
      written.push([key, i]);
    }
    for (const [idx, [key, value]] of written.entries()) {
      const reader = nodes[(idx + 5) % nodes.length]!;
      await readValue(reader, key, c.meta, value);
      values.set(key, value);
    }
    // The client goes on from everything written so far (the next reshard's "before" metadata).
    client.meta = c.meta;
    for (const addr of nodes) assert.deepEqual(sortedAddresses(await getView(addr)), nodes, `view at ${addr}`);
  }
});
