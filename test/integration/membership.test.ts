// Membership changes (spec section 4): a 7th node joins and is added to a shard, then the store is
// resharded to 3 shards and back to 2. Starts with 6 nodes, SHARD_COUNT=2, on ports 9400-9405; the
// joiner is 9406.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster, NotYet, address, forEachLimited, pollUntil, printLogsOnFailure, retryWhile503 } from '../helpers/cluster.ts';
import {
  Client,
  call,
  get,
  getKeyCount,
  getNodeShardId,
  getView,
  readShardLayout,
  sortedAddresses,
  type CausalMetadata,
  type NodeAddress,
  type ShardLayout,
} from '../helpers/http.ts';

const BASE_PORT = 9400;
const JOINER_PORT = BASE_PORT + 6;
const NOT_A_NODE = address(BASE_PORT + 99);
const KEY_COUNT = 600;
/** Spec: the added node reports its shard and the same key count within 5 s. */
const SPEC_WINDOW_MS = 5_000;
const MEASURE_SLACK_MS = 250;
/** Spec: a reshard completes within 20 s for thousands of keys. */
const RESHARD_WINDOW_MS = 20_000;
const NOT_ENOUGH_NODES = 'Not enough nodes to provide fault tolerance with requested shard count';

describe('membership: add-member and reshard', () => {
  let cluster: Cluster | undefined;
  let nodes: NodeAddress[] = []; // every node in the store, the joiner too once it has joined
  let joiner: NodeAddress;
  let layout: ShardLayout;
  const client = new Client();
  /** key -> latest value written; every key is live. */
  const values = new Map<string, unknown>();

  before(async () => {
    cluster = await Cluster.start({ basePort: BASE_PORT, nodeCount: 6, shardCount: 2 });
    nodes = cluster.addresses();
    layout = await readShardLayout(nodes[0]!);
    for (let i = 0; i < KEY_COUNT; i++) {
      const key = `key-${i}`;
      const r = await client.put(nodes[i % nodes.length]!, key, `v0-${i}`);
      assert.equal(r.status, 201, `setup PUT ${key}: ${r.text}`);
      values.set(key, `v0-${i}`);
    }
  });
  after(async () => {
    await cluster?.stop();
  });
  printLogsOnFailure(() => cluster);

  test('reshard to 4 with 6 nodes (8 > 6): 400, nothing changes', async () => {
    const r = await call('PUT', nodes[4]!, '/shard/reshard', { 'shard-count': 4 });
    assert.equal(r.status, 400, r.text);
    assert.deepEqual(r.body, { error: NOT_ENOUGH_NODES });
    for (const addr of nodes) assert.deepEqual(await readShardLayout(addr), layout, `layout at ${addr}`);
  });

  test('a node started without SHARD_COUNT is in no shard and announces itself into every view', async () => {
    joiner = await cluster!.startJoiner(JOINER_PORT);
    await cluster!.waitReady([joiner]);
    const r = await call('GET', joiner, '/shard/node-shard-id');
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body, { 'node-shard-id': null });
    nodes = sortedAddresses([...nodes, joiner]);
    await cluster!.waitForViews(nodes, { timeoutMs: SPEC_WINDOW_MS });
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

  test('add-member to an unknown shard or of an address not in the view: 404', async () => {
    assert.ok(joiner, 'depends on the previous test');
    const unknownShard = await call('PUT', nodes[0]!, '/shard/add-member/no-such-shard', { 'socket-address': joiner });
    assert.equal(unknownShard.status, 404, unknownShard.text);
    assert.equal(typeof unknownShard.body?.error, 'string', unknownShard.text);

    const unknownNode = await call('PUT', nodes[0]!, `/shard/add-member/${encodeURIComponent(layout.ids[0]!)}`, { 'socket-address': NOT_A_NODE });
    assert.equal(unknownNode.status, 404, unknownNode.text);
    assert.equal(typeof unknownNode.body?.error, 'string', unknownNode.text);

    assert.equal(await getNodeShardId(joiner), null, 'a failed add-member changes nothing');
    for (const addr of [nodes[0]!, joiner]) assert.deepEqual(await readShardLayout(addr), layout, `layout at ${addr}`);
  });

  test('add-member: 200; within 5 s every node lists it, it reports the shard and the same key count', async () => {
    assert.ok(joiner, 'depends on the previous tests');
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
    for (const key of values.keys()) {
      const g = await retryWhile503(`GET ${key} at the joiner`, () => get(joiner, key, meta));
      assert.equal(g.status, 200, `GET ${key} at the joiner: ${g.text}`);
      assert.equal(g.body.value, values.get(key));
      if (g.body['shard-id'] === target) keysOfTarget.push(key);
    }
    assert.equal(await getKeyCount(joiner, target), keysOfTarget.length, 'key count of the joined shard');
  });

  test('reshard: invalid shard-count values get a 4xx JSON error', async () => {
    for (const body of [{}, { 'shard-count': 0 }, { 'shard-count': -1 }, { 'shard-count': 'three' }, { 'shard-count': 1.5 }]) {
      const r = await call('PUT', nodes[0]!, '/shard/reshard', body);
      assert.ok(r.status >= 400 && r.status < 500, `reshard ${JSON.stringify(body)}: ${r.status} ${r.text}`);
      assert.equal(typeof r.body?.error, 'string', `reshard ${JSON.stringify(body)}: ${r.text}`);
    }
    assert.deepEqual(await readShardLayout(nodes[3]!), layout, 'rejected reshards change nothing');
  });

  test('reshard to 4 with 7 nodes (8 > 7): 400, nothing changes', async () => {
    assert.equal(nodes.length, 7, 'depends on the joiner');
    const r = await call('PUT', nodes[2]!, '/shard/reshard', { 'shard-count': 4 });
    assert.equal(r.status, 400, r.text);
    assert.deepEqual(r.body, { error: NOT_ENOUGH_NODES });
    for (const addr of nodes) assert.deepEqual(await readShardLayout(addr), layout, `layout at ${addr}`);
  });

  for (const shardCount of [3, 2]) {
    describe(`reshard to ${shardCount}`, () => {
      let metaBefore: CausalMetadata;
      let newLayout: ShardLayout;

      test(`200 "resharded"; within 20 s every node agrees on ${shardCount} shards holding every key, balanced`, async () => {
        assert.equal(nodes.length, 7, 'depends on the joiner');
        metaBefore = client.meta;
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
        newLayout = value.layout;

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
      });

      test('every key is readable with the metadata from before the reshard, with its latest value', async () => {
        assert.ok(newLayout, 'depends on the previous test');
        const perShard = new Map<string, number>();
        const entries = [...values];
        await forEachLimited(entries, 6, async ([key, value], i) => {
          const reader = nodes[i % nodes.length]!;
          const r = await retryWhile503(`GET ${key} at ${reader}`, () => get(reader, key, metaBefore));
          assert.equal(r.status, 200, `GET ${key} at ${reader} with pre-reshard metadata: ${r.text}`);
          assert.equal(r.body.value, value, `GET ${key} at ${reader}`);
          const shard = r.body['shard-id'];
          assert.ok(newLayout.ids.includes(shard), `GET ${key}: shard-id ${shard} is not one of ${newLayout.ids}`);
          perShard.set(shard, (perShard.get(shard) ?? 0) + 1);
        });
        for (const id of newLayout.ids) {
          assert.equal(perShard.get(id) ?? 0, await getKeyCount(nodes[0]!, id), `keys GET placed in ${id} vs its key count`);
        }
      });

      test('writes with pre-reshard metadata work, and read back everywhere', async () => {
        assert.ok(newLayout, 'depends on the previous tests');
        const c = new Client();
        c.meta = metaBefore;
        const written: [string, string][] = [];
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
          written.push([key, String(i)]);
        }
        for (const [idx, [key]] of written.entries()) {
          const reader = nodes[(idx + 5) % nodes.length]!;
          const r = await retryWhile503(`GET ${key} at ${reader}`, () => get(reader, key, c.meta));
          assert.equal(r.status, 200, `GET ${key} at ${reader}: ${r.text}`);
          const expected = key.startsWith('new-after-') ? Number(written[idx]![1]) : written[idx]![1];
          assert.equal(r.body.value, expected, `GET ${key} at ${reader}`);
          values.set(key, expected);
        }
        // Later tests chain on from everything written so far.
        client.meta = c.meta;
        // The view is untouched by resharding.
        for (const addr of nodes) assert.deepEqual(sortedAddresses(await getView(addr)), nodes, `view at ${addr}`);
      });
    });
  }
});
