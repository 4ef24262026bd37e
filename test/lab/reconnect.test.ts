// A replica cut off for about a second (too short for anyone to remove it from a view) and
// reconnected is not resynchronised silently (spec section 2, "Partitions"): its links are held
// down for HOLD_DOWN_MS after they answer again, so for that long it answers 503 to a client that
// depends on what it missed, serves what it has to one that does not, and then catches up by
// itself. Real link cuts (the node's veth down) on a real network; default timings (HOLD_DOWN_MS
// 5000, CAUSAL_WAIT_MS 1000, PING_INTERVAL_MS 500, PROBE_LATE_MS 500).

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { NotYet, pollUntil } from '../helpers/cluster.ts';
import { call, Client, get, put, readShardLayout, type CausalMetadata, type NodeAddress } from '../helpers/http.ts';
import { skipReason, sleep, useLab } from './helpers.ts';
import type { Lab } from '../../harness/lab/lab.ts';
import { LATE_GRACE_MS } from '../../src/core/links.ts';

const DEPENDENCIES_MISSING = 'Causal dependencies not satisfied; try again later';
/** The scenario's pacing: the second write about 1 s into the cut, the reads about 1 s after it heals. */
const SCENARIO_STEP_MS = 1_000;
const CATCH_UP_TIMEOUT_MS = 20_000;

interface HeldLink {
  peer: string;
  mirrored?: true;
}

async function heldBy(node: NodeAddress): Promise<string[]> {
  const r = await call('GET', node, '/status', undefined, { timeoutMs: 2_000 });
  if (r.status !== 200) throw new NotYet(`/status at ${node}: ${r.status}`);
  return (r.body.links.held as HeldLink[]).filter((link) => link.mirrored !== true).map((link) => link.peer);
}

/**
 * The scenario: `k` = v1 written at `a` (M1), `b` cut off, v2 written at `a` with M1 (M2)
 * about 1 s later, `b` reconnected, and about 1 s after that the reads; `others` are the rest of
 * the store, which must serve M2 (directly or by forwarding to a member that has v2).
 */
async function cutShortAndReconnect(lab: Lab, a: NodeAddress, b: NodeAddress, others: NodeAddress[], key: string): Promise<void> {
  const writer = new Client();
  const first = await writer.put(a, key, 'v1');
  assert.ok(first.status === 201 || first.status === 200, first.text);
  const m1: CausalMetadata = writer.meta;
  await pollUntil(`${b} serves v1 of ${key}`, async () => {
    const r = await get(b, key, m1);
    if (r.status !== 200 || r.body.value !== 'v1') throw new NotYet(`${r.status} ${r.text}`);
  }, { timeoutMs: 10_000 });

  // Links of processes that just started are not held for late probes (they are busy starting):
  // the cut comes after that grace, as in a store that has been running.
  for (const node of [a, b, ...others]) {
    await pollUntil(`${node} up for ${LATE_GRACE_MS + 1_000} ms`, async () => {
      const r = await call('GET', node, '/status', undefined, { timeoutMs: 2_000 });
      if (!(r.body?.uptimeMs >= LATE_GRACE_MS + 1_000)) throw new NotYet(`up ${r.body?.uptimeMs} ms`);
    }, { timeoutMs: LATE_GRACE_MS + 10_000, intervalMs: 200 });
  }
  await lab.disconnect(b, { link: true });
  const cutAt = performance.now();
  // a notices (a probe late or failed) well within the second: shown, not assumed.
  await pollUntil(`${a} holds its link to ${b}`, async () => {
    if (!(await heldBy(a)).includes(b)) throw new NotYet('not held yet');
  }, { timeoutMs: 5_000, intervalMs: 50 });
  await sleep(Math.max(0, cutAt + SCENARIO_STEP_MS - performance.now()));
  const second = await writer.put(a, key, 'v2');
  assert.equal(second.status, 200, second.text);
  const m2: CausalMetadata = writer.meta;
  await lab.reconnect(b);
  const reconnectedAt = performance.now();
  const cutMs = reconnectedAt - cutAt;
  // Too short for anyone to remove b from a view (that takes two failed probes of 1 s each).
  await sleep(Math.max(0, reconnectedAt + SCENARIO_STEP_MS - performance.now()));

  const [atA, bNew, bPut, bOld] = await Promise.all([
    get(a, key, m2),
    get(b, key, m2),
    put(b, key, 'written at b with M2', m2),
    get(b, key, m1),
  ]);
  const answeredMs = performance.now() - reconnectedAt;
  assert.equal(atA.status, 200, `GET at ${a} with M2: ${atA.text}`);
  assert.equal(atA.body.value, 'v2');
  assert.equal(bNew.status, 503, `GET at ${b} with M2, ${Math.round(answeredMs)} ms after reconnecting: ${bNew.text}`);
  assert.deepEqual(bNew.body, { error: DEPENDENCIES_MISSING });
  assert.equal(bPut.status, 503, `PUT at ${b} with M2: ${bPut.text}`);
  assert.deepEqual(bPut.body, { error: DEPENDENCIES_MISSING });
  assert.equal(bOld.status, 200, `GET at ${b} with M1: ${bOld.text}`);
  assert.equal(bOld.body.value, 'v1', 'what b has and M1 needs is served');
  // b itself saw its links fail, and says so.
  const heldAtB = await heldBy(b);
  assert.ok(heldAtB.includes(a), `${b} holds its link to ${a}: ${JSON.stringify(heldAtB)}`);
  for (const node of others) {
    const r = await get(node, key, m2);
    assert.equal(r.status, 200, `GET at ${node} with M2: ${r.text}`);
    assert.equal(r.body.value, 'v2');
  }

  // After the hold-down b catches up by itself, and the refused PUT never took effect.
  const { elapsedMs } = await pollUntil(`${b} serves v2 with M2`, async () => {
    const r = await get(b, key, m2);
    if (r.status === 503) throw new NotYet(r.text);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.value, 'v2');
  }, { timeoutMs: CATCH_UP_TIMEOUT_MS, intervalMs: 200 });
  const caughtUpMs = performance.now() - reconnectedAt;
  assert.ok(caughtUpMs > 2_000, `caught up ${Math.round(caughtUpMs)} ms after reconnecting: not silently within ~2 s`);
  for (const node of [a, b, ...others]) {
    const r = await get(node, key, m2);
    assert.equal(r.body?.value, 'v2', `${node} after the hold-down: ${r.text}`);
  }
  console.log(`cut ${Math.round(cutMs)} ms; 503 at b until at least ${Math.round(answeredMs)} ms after reconnecting; v2 at b ${Math.round(caughtUpMs)} ms after (poll ${Math.round(elapsedMs)} ms)`);
}

describe('a replica cut off for about a second: 3 replicas, no SHARD_COUNT', { skip: skipReason }, () => {
  const lab = useLab({ nodeCount: 3, persist: false });

  test('503 for metadata needing what it missed, 200 for older metadata, caught up only after the hold-down', async () => {
    const [a, b, c] = lab().addresses() as [NodeAddress, NodeAddress, NodeAddress];
    await cutShortAndReconnect(lab(), a, b, [c], 'reconnect-k');
  });
});

describe('a replica cut off for about a second: 4 nodes, SHARD_COUNT=2', { skip: skipReason }, () => {
  const lab = useLab({ nodeCount: 4, shardCount: 2, persist: false });

  test('the same, per shard: the cut replica answers 503, the other shard forwards to the member that has the write', async () => {
    const nodes = lab().addresses() as NodeAddress[];
    const layout = await readShardLayout(nodes[0]!);
    const shard = layout.ids[0]!;
    const [a, b] = layout.members[shard] as [NodeAddress, NodeAddress];
    const others = nodes.filter((n) => n !== a && n !== b);
    // A key of a and b's shard.
    let key = '';
    for (let i = 0; key === ''; i++) {
      assert.ok(i < 200, 'no key of the shard among 200');
      const r = await put(nodes[0]!, `sharded-probe-${i}`, 'x', null);
      if (r.body?.['shard-id'] === shard) key = `sharded-probe-${i}`;
    }
    await cutShortAndReconnect(lab(), a, b, others, key);
  });
});
