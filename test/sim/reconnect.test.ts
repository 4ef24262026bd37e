// In the simulator, scripted: a replica cut off for a second, shorter than failure detection takes
// to remove it from any view, then reconnected. What the network held during the cut is delivered
// at the heal, as TCP would retransmit it. Its links are held down for HOLD_DOWN_MS after they
// answer again, so reads there that depend on what it missed get 503 (not stale data) until then;
// without the hold-down (HOLD_DOWN_MS=0) it would catch up silently within a second, which the
// control case shows.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MESSAGES } from '../../src/core/api-messages.ts';
import { LATE_GRACE_MS } from '../../src/core/links.ts';
import { shardOfKey, shardOfNode } from '../../src/core/shard-map.ts';
import type { NodeAddress } from '../../src/core/types.ts';
import { World, type ScriptReply, type WorldSettings } from '../../harness/sim/world.ts';

const CLIENT = 'client';
const path = (key: string) => `/kvs/${encodeURIComponent(key)}`;

function settings(nodes: number, shards: number, holdDownMs: number | null): Partial<WorldSettings> {
  return {
    nodes,
    shards,
    clients: 0,
    faults: [],
    network: { latencyMs: [0.2, 2], lossRate: 0, duplicateRate: 0, holdMsMax: 10_000, connectTimeoutMs: 500 },
    nodeEnv: { CLUSTER_SECRET: 'sim-reconnect-secret-0123456789', ...(holdDownMs === null ? {} : { HOLD_DOWN_MS: String(holdDownMs) }) },
  };
}

interface Outcome {
  /** Every node's view still lists the cut node after the heal: the cut was shorter than detection. */
  viewsKeptIt: boolean;
  atA: ScriptReply;
  bNew: ScriptReply;
  bPut: ScriptReply;
  bOld: ScriptReply;
  /** What the cut node served with M2 once it did. */
  finalValue: unknown;
  /** Simulated ms from the heal until the cut node served M2. */
  caughtUpMs: number;
}

/** The scenario: k = v1 at a, b cut off, v2 at a about 1 s later, heal, reads about 1 s after. */
async function cutShort(world: World): Promise<Outcome> {
  // Past the grace in which a starting process's late probes are forgiven: a store that has been running.
  await world.advance(LATE_GRACE_MS + 1_500);
  const nodes = world.addresses();
  const map = world.nodes().get(nodes[0]!)!.core.map;
  // a key of the first node's shard, and another member of that shard
  const a = nodes[0]!;
  const shard = shardOfNode(map, a);
  let key = 'k';
  for (let i = 0; shardOfKey(map, key) !== shard; i++) key = `k${i}`;
  const b = nodes.find((n) => n !== a && shardOfNode(map, n) === shard) as NodeAddress;

  const w1 = await world.request(CLIENT, a, 'PUT', path(key), { value: 'v1', 'causal-metadata': null });
  assert.equal(w1.status, 201, JSON.stringify(w1.body));
  const m1 = w1.body['causal-metadata'];
  await world.advance(500);
  const seen = await world.request(CLIENT, b, 'GET', path(key), { 'causal-metadata': m1 });
  assert.equal(seen.body.value, 'v1', `${b} has v1 before the cut`);

  world.network.partition([b], nodes.filter((n) => n !== b));
  await world.advance(1_000);
  const w2 = await world.request(CLIENT, a, 'PUT', path(key), { value: 'v2', 'causal-metadata': m1 });
  assert.equal(w2.status, 200, JSON.stringify(w2.body));
  const m2 = w2.body['causal-metadata'];
  world.network.heal();
  const healedMs = world.scheduler.now();
  const viewsKeptIt = [...world.nodes().values()].every((node) => node.core.view().includes(b));
  await world.advance(1_000);

  let finalValue: unknown;
  const [atA, bNew, bPut, bOld] = await world.settle([
    world.send(CLIENT, a, 'GET', path(key), { 'causal-metadata': m2 }),
    world.send(CLIENT, b, 'GET', path(key), { 'causal-metadata': m2 }),
    world.send(CLIENT, b, 'PUT', path(key), { value: 'written at b with M2', 'causal-metadata': m2 }),
    world.send(CLIENT, b, 'GET', path(key), { 'causal-metadata': m1 }),
  ]) as [ScriptReply, ScriptReply, ScriptReply, ScriptReply];
  for (;;) {
    const r = await world.request(CLIENT, b, 'GET', path(key), { 'causal-metadata': m2 });
    if (r.status === 200) {
      finalValue = r.body.value;
      break;
    }
    assert.equal(r.status, 503, JSON.stringify(r.body));
    assert.ok(world.scheduler.now() - healedMs < 30_000, 'b caught up within 30 simulated seconds');
    await world.advance(100);
  }
  return { viewsKeptIt, atA, bNew, bPut, bOld, finalValue, caughtUpMs: world.scheduler.now() - healedMs };
}

function assertHeldDown(outcome: Outcome): void {
  assert.equal(outcome.viewsKeptIt, true, 'the cut was shorter than failure detection: no view dropped the node');
  assert.equal(outcome.atA.status, 200);
  assert.equal(outcome.atA.body.value, 'v2');
  assert.deepEqual(outcome.bNew, { status: 503, body: { error: MESSAGES.causalUnavailable } }, 'GET with M2 at the reconnected replica');
  assert.deepEqual(outcome.bPut, { status: 503, body: { error: MESSAGES.causalUnavailable } }, 'PUT with M2 at the reconnected replica');
  assert.equal(outcome.bOld.status, 200, 'GET with M1 at the reconnected replica');
  assert.equal(outcome.bOld.body.value, 'v1');
  assert.equal(outcome.finalValue, 'v2', 'the PUT refused at b never took effect');
  // Caught up by itself, after the hold-down (5 s from when its links answered again).
  assert.ok(outcome.caughtUpMs >= 5_000, `caught up ${outcome.caughtUpMs} ms after the heal`);
}

for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
  test(`seed ${seed}, 3 replicas: a cut shorter than detection, then 503 at the reconnected replica until the hold-down is over`, async () => {
    const world = new World({ seed, settings: settings(3, 0, null) });
    assertHeldDown(await world.script(cutShort));
  });

  test(`seed ${seed}, 4 nodes in 2 shards: the same, per shard`, async () => {
    const world = new World({ seed, settings: settings(4, 2, null) });
    assertHeldDown(await world.script(cutShort));
  });
}

test('control: without the hold-down (HOLD_DOWN_MS=0) the same replica catches up silently within a second', async () => {
  const world = new World({ seed: 1, settings: settings(3, 0, 0) });
  const outcome = await world.script(cutShort);
  assert.equal(outcome.viewsKeptIt, true);
  // Served at once (v2, or the PUT sent with it, which b then takes too): the scenario can tell a
  // held link from a silent resync.
  assert.equal(outcome.bNew.status, 200, JSON.stringify(outcome.bNew.body));
  assert.equal(outcome.bPut.status, 200, JSON.stringify(outcome.bPut.body));
  assert.ok(['v2', 'written at b with M2'].includes(outcome.bNew.body.value as string));
});
