// Shards (spec section 4) on a sharded store: 6 nodes, SHARD_COUNT=2 (ports: test/helpers/ports.ts).
// Layout agreement, 404s, 600 keys written with chained metadata and read back elsewhere, balance,
// and forwarding.
//
// Every test can run alone: the layout is read before the tests, and the tests about the 600 keys
// ask for them with `keysWritten()` (written once, by the first test that asks). The forwarding test
// writes and deletes a key of its own, so the 600 keys and the key counts stay what the PUTs made.

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { NotYet, forEachLimited, pollUntil, retryWhile503 } from '../helpers/cluster.ts';
import { Client, call, del, get, getKeyCount, getNodeShardId, readShardLayout, put, sortedAddresses, type NodeAddress, type ShardLayout } from '../helpers/http.ts';
import { portsFor } from '../helpers/ports.ts';
import { readValue, step, useCluster } from '../helpers/store.ts';

const NODE_COUNT = 6;
const KEY_COUNT = 600;

describe('shards on a 6-node store with SHARD_COUNT=2', () => {
  const store = useCluster({ ports: portsFor(import.meta.url), nodeCount: NODE_COUNT, shardCount: 2 });
  let nodes: NodeAddress[] = [];
  /** The layout node 0 answers at the start (the first test checks that every node agrees). */
  let layout: ShardLayout;

  before(async () => {
    nodes = store.nodes;
    layout = await readShardLayout(nodes[0]!);
  });

  /**
   * KEY_COUNT keys written through varying nodes by one client chaining its metadata: the shard
   * each PUT named, and the client's metadata after the last PUT.
   */
  const keysWritten = step(async () => {
    const client = new Client();
    const shardOfKey = new Map<string, string>();
    for (let i = 0; i < KEY_COUNT; i++) {
      const key = `key-${i}`;
      const r = await client.put(nodes[i % NODE_COUNT]!, key, { i });
      assert.equal(r.status, 201, `PUT ${key} at ${nodes[i % NODE_COUNT]}: ${r.text}`);
      assert.equal(r.body.result, 'created');
      const shard = r.body['shard-id'];
      assert.ok(layout.ids.includes(shard), `PUT ${key}: shard-id ${JSON.stringify(shard)} not one of ${layout.ids}`);
      shardOfKey.set(key, shard);
    }
    return { shardOfKey, finalMeta: client.meta };
  });

  test('GET /shard/ids: 2 ids; ids and members are the same on every node', async () => {
    const r = await call('GET', nodes[0]!, '/shard/ids');
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(Object.keys(r.body), ['shard-ids']);
    assert.equal(r.body['shard-ids'].length, 2, r.text);
    assert.equal(new Set(r.body['shard-ids']).size, 2, `ids must be distinct: ${r.text}`);
    for (const id of r.body['shard-ids']) assert.equal(typeof id, 'string', `shard ids are strings: ${r.text}`);

    assert.deepEqual(await readShardLayout(nodes[0]!), layout, `layout at ${nodes[0]} changed since the start`);
    for (const addr of nodes.slice(1)) assert.deepEqual(await readShardLayout(addr), layout, `layout at ${addr} vs ${nodes[0]}`);
  });

  test('members: each shard has >= 2 members, sorted; every node is in exactly one shard', async () => {
    const seen: NodeAddress[] = [];
    for (const id of layout.ids) {
      const r = await call('GET', nodes[1]!, `/shard/members/${encodeURIComponent(id)}`);
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(Object.keys(r.body), ['shard-members']);
      const members: NodeAddress[] = r.body['shard-members'];
      assert.ok(members.length >= 2, `shard ${id} has ${members.length} members: ${members}`);
      assert.deepEqual(members, sortedAddresses(members), `members of ${id} are sorted`);
      seen.push(...members);
    }
    assert.deepEqual(sortedAddresses(seen), nodes, 'the shards partition the nodes');
  });

  test('GET /shard/node-shard-id: each node reports the shard that lists it', async () => {
    for (const addr of nodes) {
      const r = await call('GET', addr, '/shard/node-shard-id');
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(Object.keys(r.body), ['node-shard-id']);
      const id = r.body['node-shard-id'];
      assert.ok(layout.ids.includes(id), `${addr} reports ${JSON.stringify(id)}, not one of ${layout.ids}`);
      const listing = layout.ids.filter((s) => layout.members[s]!.includes(addr));
      assert.deepEqual(listing, [id], `${addr} reports ${id} but is listed in ${listing}`);
    }
  });

  test('members and key-count of an unknown shard: 404 with an error', async () => {
    for (const addr of [nodes[0]!, nodes[5]!]) {
      for (const path of ['/shard/members/no-such-shard', '/shard/key-count/no-such-shard']) {
        const r = await call('GET', addr, path);
        assert.equal(r.status, 404, `${path} at ${addr}: ${r.text}`);
        assert.equal(typeof r.body?.error, 'string', `${path} at ${addr}: ${r.text}`);
      }
    }
  });

  test(`${KEY_COUNT} keys written through varying nodes with chained metadata`, async () => {
    const { shardOfKey } = await keysWritten();
    assert.equal(shardOfKey.size, KEY_COUNT);
    assert.deepEqual(new Set(shardOfKey.values()), new Set(layout.ids), 'the keys landed in every shard');
  });

  test('every key reads back from another node with the final metadata', async () => {
    const { shardOfKey, finalMeta } = await keysWritten();
    await forEachLimited([...shardOfKey], 6, async ([key, shard], i) => {
      const reader = nodes[(i + 1) % NODE_COUNT]!; // never the node it was written at
      const r = await readValue(reader, key, finalMeta, { i });
      assert.equal(r.body['shard-id'], shard, `GET ${key}: shard-id differs from the PUT's`);
    });
  });

  test('each key is served by every member of the shard its PUT named', async () => {
    const { shardOfKey, finalMeta } = await keysWritten();
    const reads: [string, string, NodeAddress, number][] = [];
    for (const [key, shard] of shardOfKey) {
      for (const member of layout.members[shard]!) reads.push([key, shard, member, Number(key.slice(4))]);
    }
    await forEachLimited(reads, 6, async ([key, shard, member, i]) => {
      const r = await readValue(member, key, finalMeta, { i }, `a member of ${shard}`);
      assert.equal(r.body['shard-id'], shard);
    });
  });

  test(`key counts: the same on every node, summing to ${KEY_COUNT}, each within ±25% of the mean`, async () => {
    const { shardOfKey } = await keysWritten();
    const expected = new Map<string, number>(layout.ids.map((id) => [id, 0]));
    for (const shard of shardOfKey.values()) expected.set(shard, expected.get(shard)! + 1);

    const r = await call('GET', nodes[2]!, `/shard/key-count/${encodeURIComponent(layout.ids[0]!)}`);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(Object.keys(r.body), ['shard-key-count']);

    await pollUntil(
      'every node reports the key counts implied by the PUT responses',
      async () => {
        for (const addr of nodes) {
          for (const id of layout.ids) {
            const n = await getKeyCount(addr, id);
            if (n !== expected.get(id)) throw new NotYet(`${addr} says ${id} has ${n}, PUTs put ${expected.get(id)} there`);
          }
        }
      },
      { timeoutMs: 10_000 },
    );
    const mean = KEY_COUNT / layout.ids.length;
    for (const [id, n] of expected) {
      assert.ok(n > mean * 0.75 && n < mean * 1.25, `shard ${id} holds ${n} of ${KEY_COUNT} keys; must be strictly within (${mean * 0.75}, ${mean * 1.25})`);
    }
  });

  test('forwarding: a node outside the key\'s shard answers exactly what a member answers', async () => {
    // A key of this test's own, in whichever shard it lands: it ends deleted, so the key counts of
    // the other tests are what they were.
    const c = new Client();
    const key = 'forwarded-key';
    const created = await c.put(nodes[0]!, key, 'original');
    assert.equal(created.status, 201, created.text);
    const s0: string = created.body['shard-id'];
    const s1 = layout.ids.find((id) => id !== s0)!;
    assert.ok(layout.ids.includes(s0) && s1 !== undefined, `shard-id ${s0} of ${JSON.stringify(layout)}`);
    const member = layout.members[s0]![0]!;
    const outsider = layout.members[s1]![0]!;

    const viaMember = await retryWhile503('GET via member', () => get(member, key, c.meta));
    const viaOutsider = await retryWhile503('GET via outsider', () => get(outsider, key, c.meta));
    assert.equal(viaOutsider.status, viaMember.status, viaOutsider.text);
    assert.deepEqual(withoutMeta(viaOutsider.body), withoutMeta(viaMember.body));
    assert.equal(viaOutsider.body['shard-id'], s0);

    // Errors are relayed unchanged too.
    for (const missing of ['never-written-0', 'never-written-1', 'never-written-2']) {
      const m = await get(member, missing, null);
      const o = await get(outsider, missing, null);
      assert.equal(o.status, 404, o.text);
      assert.deepEqual(o.body, m.body);
    }

    // A PUT through an outsider lands in the key's shard, and a member serves it.
    const w = await c.put(outsider, key, 'written-via-outsider');
    assert.equal(w.status, 200, w.text);
    assert.deepEqual(withoutMeta(w.body), { result: 'replaced', 'shard-id': s0 });
    for (const m of layout.members[s0]!) await readValue(m, key, c.meta, 'written-via-outsider', `member ${m} serves the write made via ${outsider}`);
    // Forwarded DELETE, then 404 via both.
    const d = await c.del(outsider, key);
    assert.equal(d.status, 200, d.text);
    assert.deepEqual(withoutMeta(d.body), { result: 'deleted', 'shard-id': s0 });
    for (const addr of [member, outsider]) {
      const r = await retryWhile503(`GET deleted key at ${addr}`, () => get(addr, key, c.meta));
      assert.equal(r.status, 404, r.text);
      assert.deepEqual(r.body, { error: 'Key does not exist' });
    }
  });

  test('forwarding in batches: concurrent requests for the other shard go in batches, each answered as on its own', async () => {
    const { shardOfKey } = await keysWritten();
    const outsider = nodes[0]!;
    const own = await getNodeShardId(outsider);
    const elsewhere = [...shardOfKey].filter(([, shard]) => shard !== own).map(([key]) => key);
    assert.ok(elsewhere.length > 100, `${elsewhere.length} keys in the other shard`);
    const batches = async (): Promise<number> => {
      const r = await call('GET', outsider, '/metrics');
      return Number(/^kvs_forward_batches_total (\d+)$/m.exec(r.text)?.[1] ?? 'NaN');
    };
    const before = await batches();
    // Rounds of 64 reads at once, until the node has sent at least one batch (a node sends a
    // request alone when nothing else came in its turn, so a round may have none).
    let round = 0;
    await pollUntil(
      'a forwarded batch',
      async () => {
        const keys = elsewhere.slice((round * 64) % (elsewhere.length - 64)).slice(0, 64);
        round++;
        await Promise.all(
          keys.map(async (key) => {
            const r = await retryWhile503(`GET ${key} via ${outsider}`, () => get(outsider, key, null));
            assert.equal(r.status, 200, r.text);
            assert.deepEqual(r.body.value, { i: Number(key.slice('key-'.length)) }, `${key}: ${r.text}`);
            assert.equal(r.body['shard-id'], shardOfKey.get(key));
          }),
        );
        const now = await batches();
        if (!(now > before)) throw new NotYet(`kvs_forward_batches_total still ${now}`);
      },
      { timeoutMs: 30_000, intervalMs: 0 },
    );
    // Writes too: 48 new keys at once through the outsider, each then read at a member of its shard.
    const written = await Promise.all(
      Array.from({ length: 48 }, async (_, n) => {
        const key = `batched-${n}`;
        const r = await retryWhile503(`PUT ${key} via ${outsider}`, () => put(outsider, key, { n }, null));
        assert.equal(r.status, 201, r.text);
        return { key, n, shard: r.body['shard-id'] as string, meta: r.body['causal-metadata'] };
      }),
    );
    for (const { key, n, shard, meta } of written) {
      await readValue(layout.members[shard]![1]!, key, meta, { n }, `${key}, written via ${outsider} in a batch`);
      const d = await retryWhile503(`DELETE ${key}`, () => del(outsider, key, meta));
      assert.equal(d.status, 200, d.text);
    }
  });

  test('node-shard-id and layout are unchanged after all this traffic', async () => {
    for (const addr of nodes) {
      const id = await getNodeShardId(addr);
      assert.ok(layout.members[id!]!.includes(addr), `${addr} now reports ${id}`);
      assert.deepEqual(await readShardLayout(addr), layout);
    }
  });

  test('a reshard to the current shard count is a no-op: 200, no new epoch, nothing moved', async () => {
    const before = await Promise.all(nodes.map(async (addr) => (await call('GET', addr, '/status')).body));
    const counts = await Promise.all(layout.ids.map((id) => getKeyCount(nodes[0]!, id)));
    const r = await call('PUT', nodes[1]!, '/shard/reshard', { 'shard-count': layout.ids.length });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body, { result: 'resharded' });
    for (const [i, addr] of nodes.entries()) {
      const after = (await call('GET', addr, '/status')).body;
      assert.equal(after.epoch, before[i].epoch, `${addr}: no new epoch`);
      assert.deepEqual(await readShardLayout(addr), layout, `${addr}: the same layout`);
    }
    assert.deepEqual(await Promise.all(layout.ids.map((id) => getKeyCount(nodes[2]!, id))), counts, 'the same key counts');
  });
});

function withoutMeta(body: Record<string, unknown>): Record<string, unknown> {
  const { 'causal-metadata': _ignored, ...rest } = body;
  return rest;
}
