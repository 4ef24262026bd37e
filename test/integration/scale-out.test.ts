// Scaling out as a StatefulSet does it: a new node starts with the same SHARD_COUNT as the store's
// nodes and a VIEW that names it too. Its address sorts before theirs (as kvs-10 sorts between
// kvs-1 and kvs-2), so the map it builds from its environment deals the nodes otherwise than the
// store's. It must take the store's map, not merge its own into it: it joins the view in no shard,
// the store's shards and keys stay as they were, and add-member then puts it in one. Scaling in: a
// node gone for good is dropped by a reshard to the count the store has.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Cluster, NotYet, pollUntil, printLogsOnFailure, retryWhile503 } from '../helpers/cluster.ts';
import { Client, call, getNodeShardId, readShardLayout, type NodeAddress, type ShardLayout } from '../helpers/http.ts';
import { portsFor } from '../helpers/ports.ts';

const ports = portsFor(import.meta.url);
const KEY_COUNT = 40;
const WAIT_MS = 20_000;

let cluster: Cluster | undefined;
let initial: NodeAddress[] = [];
let layout: ShardLayout;
const client = new Client();
const values = new Map<string, string>();
/** Port 0 of the range sorts before the store's nodes (ports 1-4). */
const newcomer = ports.address(0);

before(async () => {
  ports.port(4);
  cluster = await Cluster.start({ basePort: ports.port(1), nodeCount: 4, shardCount: 2 });
  initial = cluster.addresses();
  await cluster.waitForViews(initial, { timeoutMs: WAIT_MS });
  layout = await readShardLayout(initial[0]!);
  for (let i = 0; i < KEY_COUNT; i++) {
    const reply = await client.put(initial[i % initial.length]!, `scale-${i}`, `v${i}`);
    assert.ok(reply.status === 200 || reply.status === 201, `put scale-${i}: ${reply.status} ${reply.text}`);
    values.set(`scale-${i}`, `v${i}`);
  }
});
after(async () => {
  await cluster?.stop();
});
printLogsOnFailure(() => cluster);

// One test in three phases, each building on the one before (so the file passes in any order).
test('scaling out and in as a StatefulSet does', async () => {
  await joinsInNoShard();
  await addMemberPlacesIt();
  await reshardDropsTheGone();
});

/** A new node with SHARD_COUNT and a VIEW naming it joins the view in no shard, and the store keeps its map. */
async function joinsInNoShard(): Promise<void> {
  const c = cluster!;
  await c.startJoiner(ports.port(0), { SHARD_COUNT: '2' });
  await c.waitReady([newcomer]);
  const everyone = [...initial, newcomer];
  await c.waitForViews(everyone, { timeoutMs: WAIT_MS });
  assert.equal(await getNodeShardId(newcomer), null, 'in no shard until add-member');
  // Every node, the newcomer too, routes by the store's map as it was.
  for (const node of everyone) assert.deepEqual(await readShardLayout(node), layout, `the shard map at ${node}`);
  for (const node of everyone) {
    for (const [key, value] of values) {
      const reply = await client.get(node, key);
      assert.equal(reply.status, 200, `GET ${key} at ${node}: ${reply.status} ${reply.text}`);
      assert.equal(reply.body.value, value);
    }
  }
}

/** add-member then puts the new node in a shard, whose keys it copies. */
async function addMemberPlacesIt(): Promise<void> {
  const c = cluster!;
  const shard = layout.ids[1]!;
  const added = await call('PUT', initial[0]!, `/shard/add-member/${shard}`, { 'socket-address': newcomer });
  assert.equal(added.status, 200, added.text);
  const expected = [...layout.members[shard]!, newcomer].sort();
  for (const node of c.addresses()) {
    await pollUntil(
      `${node} lists ${newcomer} in ${shard}`,
      async () => {
        const members = (await call('GET', node, `/shard/members/${shard}`)).body['shard-members'] as string[];
        if ([...members].sort().join() !== expected.join()) throw new NotYet(members.join());
      },
      { timeoutMs: WAIT_MS },
    );
  }
  assert.equal(await getNodeShardId(newcomer), shard);
  for (const [key, value] of values) {
    // While it copies its shard, the new member answers 503 for what it lacks.
    const reply = await retryWhile503(`GET ${key} at the new member`, () => client.get(newcomer, key), WAIT_MS);
    assert.equal(reply.status, 200, `GET ${key} at the new member: ${reply.status} ${reply.text}`);
    assert.equal(reply.body.value, value);
  }
}

/** Scaling in: a node stopped for good is dropped from the map by a reshard to the same count. */
async function reshardDropsTheGone(): Promise<void> {
  const c = cluster!;
  await c.kill(newcomer);
  await c.waitForViews(initial, { timeoutMs: WAIT_MS });
  // The map still lists the stopped node; a reshard at the same count is then no no-op.
  const before = await readShardLayout(initial[0]!);
  assert.ok(Object.values(before.members).flat().includes(newcomer), 'still in the map while only out of the view');
  const resharded = await call('PUT', initial[0]!, '/shard/reshard', { 'shard-count': 2 }, { timeoutMs: WAIT_MS });
  assert.equal(resharded.status, 200, resharded.text);
  for (const node of initial) {
    await pollUntil(
      `${node} drops ${newcomer} from the map`,
      async () => {
        const layout = await readShardLayout(node);
        if (Object.values(layout.members).flat().includes(newcomer)) throw new NotYet(JSON.stringify(layout.members));
        assert.deepEqual(Object.values(layout.members).flat().sort(), [...initial].sort(), 'every running node keeps a shard');
      },
      { timeoutMs: WAIT_MS },
    );
  }
  for (const [key, value] of values) {
    const reply = await retryWhile503(`GET ${key} after the reshard`, () => client.get(initial[0]!, key), WAIT_MS);
    assert.equal(reply.body.value, value);
  }
  // And now the same count again changes nothing: no new epoch.
  const epochOf = async () => (await call('GET', initial[0]!, '/status')).body.epoch as number;
  const epoch = await epochOf();
  const again = await call('PUT', initial[0]!, '/shard/reshard', { 'shard-count': 2 }, { timeoutMs: WAIT_MS });
  assert.equal(again.status, 200, again.text);
  assert.equal(await epochOf(), epoch);
}
