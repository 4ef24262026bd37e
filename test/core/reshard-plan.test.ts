// Reshard planning: the next epoch's map is balanced (nodes and partitions), assigns every node of
// the view exactly once, and moves no more partitions (keys) or nodes than the new balance needs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { checkReshard, movedPartitions, planReshard } from '../../src/core/reshard-plan.ts';
import { asEpoch, initialShardMap, PARTITION_COUNT, partitionOfKey, shardIds, shardIdFor, shardOfNode } from '../../src/core/shard-map.ts';
import { liveKeysByPartition, previewReshard } from '../../src/core/reshard-preview.ts';
import { nodeAddress, sortAddresses } from '../../src/core/address.ts';
import type { NodeAddress, ShardId, ShardMap, Version } from '../../src/core/types.ts';

const node = (i: number): NodeAddress => nodeAddress(`10.10.${i >> 8}.${(i & 255) + 2}:8090`);
const nodes = (count: number, from = 0): NodeAddress[] => Array.from({ length: count }, (_, i) => node(from + i));

function countBy<T>(items: T[]): Map<T, number> {
  const out = new Map<T, number>();
  for (const item of items) out.set(item, (out.get(item) ?? 0) + 1);
  return out;
}

/**
 * The fewest items that must change bucket: each surviving bucket can keep up to its new size, which
 * is floor(total / k) or, for total % k of them, one more.
 */
function minimumMoves(previousCounts: Map<ShardId, number>, ids: ShardId[], total: number): number {
  const floor = Math.floor(total / ids.length);
  const big = total % ids.length;
  let kept = 0;
  let over = 0;
  for (const id of ids) {
    const had = previousCounts.get(id) ?? 0;
    kept += Math.min(had, floor);
    if (had > floor) over++;
  }
  return total - kept - Math.min(big, over);
}

function fraction(before: ShardMap, after: ShardMap): number {
  return movedPartitions(before, after) / PARTITION_COUNT;
}

/** A map reached from an initial assignment by a few reshards, over a view that may since have changed. */
const historyArb = fc
  .record({
    startNodes: fc.integer({ min: 2, max: 14 }),
    startCount: fc.option(fc.integer({ min: 1, max: 7 }), { nil: null }),
    reshards: fc.array(fc.integer({ min: 1, max: 7 }), { maxLength: 3 }),
    joined: fc.integer({ min: 0, max: 4 }),
    left: fc.integer({ min: 0, max: 4 }),
    target: fc.integer({ min: 1, max: 9 }),
  })
  .map(({ startNodes, startCount, reshards, joined, left, target }) => {
    const first = nodes(startNodes);
    let map = initialShardMap(first, startCount);
    for (const count of reshards) map = planReshard(map, first, Math.min(count, Math.floor(first.length / 2)) || 1);
    // Some nodes left the view, some joined it (in no shard yet).
    const view = [...first.slice(Math.min(left, first.length - 2)), ...nodes(joined, 100)];
    const count = Math.max(1, Math.min(target, Math.floor(view.length / 2)));
    return { map, view, count };
  });

test('planReshard: nodes balanced (sizes differ by <= 1, each >= 2), every view node exactly once, epoch + 1', () => {
  fc.assert(
    fc.property(historyArb, ({ map, view, count }) => {
      const next = planReshard(map, view, count);
      assert.equal(next.epoch, map.epoch + 1);
      assert.equal(next.mode, 'sharded');
      const ids = Array.from({ length: count }, (_, i) => shardIdFor(i));
      assert.deepEqual(shardIds(next), ids);
      const assigned = Object.values(next.shards).flat();
      assert.equal(assigned.length, view.length, 'no node twice');
      assert.deepEqual(sortAddresses(assigned), sortAddresses(view), 'exactly the view');
      const sizes = Object.values(next.shards).map((m) => m.length);
      assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `sizes ${sizes}`);
      if (view.length >= 2 * count) for (const size of sizes) assert.ok(size >= 2, `sizes ${sizes}`);
      for (const members of Object.values(next.shards)) assert.deepEqual(members, sortAddresses(members));
      // Partitions: all assigned, to existing shards, balanced.
      assert.equal(next.partitions.length, PARTITION_COUNT);
      const perShard = countBy(next.partitions);
      assert.deepEqual([...perShard.keys()].sort(), [...ids].sort());
      assert.ok(Math.max(...perShard.values()) - Math.min(...perShard.values()) <= 1);
      // The input is not changed.
      assert.equal(map.partitions.length, PARTITION_COUNT);
    }),
    { numRuns: 300 },
  );
});

test('planReshard moves exactly the minimum number of partitions and of nodes the new balance needs', () => {
  fc.assert(
    fc.property(historyArb, ({ map, view, count }) => {
      const next = planReshard(map, view, count);
      const ids = shardIds(next);
      assert.equal(movedPartitions(map, next), minimumMoves(countBy(map.partitions), ids, PARTITION_COUNT));
      const previous = countBy(view.map((n) => shardOfNode(map, n)).filter((s): s is ShardId => s !== null));
      const movedNodes = view.filter((n) => shardOfNode(map, n) !== shardOfNode(next, n)).length;
      assert.equal(movedNodes, minimumMoves(previous, ids, view.length));
    }),
    { numRuns: 300 },
  );
});

test('from an even map, N -> M shards moves about PARTITION_COUNT * (1 - min(N,M)/max(N,M)) partitions', () => {
  for (let from = 1; from <= 8; from++) {
    for (let to = 1; to <= 8; to++) {
      const view = nodes(16);
      const before = initialShardMap(view, from);
      const after = planReshard(before, view, to);
      const ideal = PARTITION_COUNT * (1 - Math.min(from, to) / Math.max(from, to));
      const moved = movedPartitions(before, after);
      assert.ok(moved >= ideal - 8 && moved <= ideal + 8, `${from} -> ${to}: moved ${moved}, ideal ${ideal.toFixed(1)}`);
      if (from === to) assert.equal(moved, 0);
    }
  }
});

test('measured movement: 2 -> 3 moves 0.30..0.36 of partitions, 3 -> 2 at most 0.36', (t) => {
  const view = nodes(8);
  const cases: [number, number][] = [
    [1, 2],
    [2, 3],
    [3, 4],
    [3, 2],
    [4, 2],
  ];
  const measured = new Map<string, number>();
  for (const [from, to] of cases) {
    const before = initialShardMap(view, from);
    const after = planReshard(before, view, to);
    measured.set(`${from}->${to}`, fraction(before, after));
    // The same from a map that was itself reached by a reshard (not the initial round-robin layout).
    if (from > 1) {
      const viaBefore = planReshard(initialShardMap(view, 1), view, from);
      measured.set(`${from}->${to} (after 1->${from})`, fraction(viaBefore, planReshard(viaBefore, view, to)));
    }
  }
  t.diagnostic(
    'moved fraction of partitions: ' +
      [...measured].map(([name, f]) => `${name}: ${f.toFixed(4)}`).join(', '),
  );
  const twoToThree = measured.get('2->3') as number;
  assert.ok(twoToThree >= 0.3 && twoToThree <= 0.36, `2->3 moved ${twoToThree}`);
  assert.ok((measured.get('2->3 (after 1->2)') as number) <= 0.36);
  assert.ok((measured.get('3->2') as number) <= 0.36, `3->2 moved ${measured.get('3->2')}`);
  assert.ok((measured.get('3->2 (after 1->3)') as number) <= 0.36);
  assert.ok((measured.get('1->2') as number) <= 0.5 + 1 / PARTITION_COUNT);
  assert.ok((measured.get('3->4') as number) <= 0.25 + 2 / PARTITION_COUNT);
  assert.ok((measured.get('4->2') as number) <= 0.5 + 2 / PARTITION_COUNT);
});

test('a node that keeps its shard keeps it: 2 -> 3 over 6 nodes moves 2 nodes, 3 -> 2 moves 2', () => {
  const view = nodes(6);
  const two = initialShardMap(view, 2);
  const three = planReshard(two, view, 3);
  const movedUp = view.filter((n) => shardOfNode(two, n) !== shardOfNode(three, n));
  assert.equal(movedUp.length, 2, `moved ${movedUp}`);
  assert.deepEqual(Object.values(three.shards).map((m) => m.length), [2, 2, 2]);
  const back = planReshard(three, view, 2);
  const movedDown = view.filter((n) => shardOfNode(three, n) !== shardOfNode(back, n));
  assert.equal(movedDown.length, 2);
  assert.deepEqual(Object.values(back.shards).map((m) => m.length), [3, 3]);
});

test('planReshard is deterministic and ignores the order of the view', () => {
  fc.assert(
    fc.property(
      historyArb.chain((h) => fc.tuple(fc.constant(h), fc.shuffledSubarray(h.view, { minLength: h.view.length }))),
      ([{ map, view, count }, shuffled]) => {
        assert.deepEqual(planReshard(map, shuffled, count), planReshard(map, view, count));
      },
    ),
    { numRuns: 100 },
  );
});

test('checkReshard: a positive integer count, and at least 2 nodes of the view per shard', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 1, max: 25 }), (viewSize, count) => {
      const check = checkReshard(viewSize, count);
      if (2 * count <= viewSize) assert.deepEqual(check, { ok: true });
      else assert.deepEqual(check, { ok: false, reason: 'too-few-nodes' });
    }),
    { numRuns: 300 },
  );
  assert.deepEqual(checkReshard(4, 2), { ok: true });
  assert.deepEqual(checkReshard(5, 2), { ok: true });
  assert.deepEqual(checkReshard(5, 3), { ok: false, reason: 'too-few-nodes' });
  assert.deepEqual(checkReshard(1, 1), { ok: false, reason: 'too-few-nodes' });
  for (const bad of [0, -1, 1.5, '2', null, undefined, Number.NaN, Infinity, 2 ** 60, {}, [2], true]) {
    assert.deepEqual(checkReshard(100, bad), { ok: false, reason: 'bad-count' }, `bad count ${String(bad)}`);
  }
});

test('previewReshard: what moves is what leaves its owners, the key counts add up, and an unknown shard makes the keys unknown', () => {
  const view = Array.from({ length: 6 }, (_, i) => nodeAddress(`10.0.0.${i + 1}:8090`));
  const current = initialShardMap(view, 2);
  const next = planReshard(current, view, 3);
  // One live key in every partition, held by the shard that owns the partition now.
  const owned = (id: string) => current.partitions.map((owner) => (owner === id ? 1 : 0));
  const counts = new Map(Object.keys(current.shards).map((id) => [id as ShardId, owned(id)]));
  const preview = previewReshard(current, next, counts);
  // A partition moves exactly when a member of its new shard does not own it now.
  let expected = 0;
  for (let p = 0; p < PARTITION_COUNT; p++) {
    const owners = current.shards[current.partitions[p]!]!;
    if (!next.shards[next.partitions[p]!]!.every((n) => owners.includes(n))) expected++;
  }
  assert.ok(expected > 0 && expected < PARTITION_COUNT);
  assert.equal(preview.partitionsMoving, expected);
  assert.equal(preview.keysMoving, expected, 'one key per partition');
  assert.equal(preview.moving.reduce((sum, m) => sum + m.partitions, 0), expected);
  assert.equal(preview.before.reduce((sum, s) => sum + (s.keys ?? 0), 0), PARTITION_COUNT);
  assert.equal(preview.after.reduce((sum, s) => sum + (s.keys ?? 0), 0), PARTITION_COUNT);
  assert.deepEqual(preview.after.map((s) => s.id).sort(), Object.keys(next.shards).sort());
  // The same map: nothing moves.
  assert.equal(previewReshard(current, current, counts).partitionsMoving, 0);
  // A shard whose counts are unknown: its keys, and the total moving, are unknown.
  const partial = previewReshard(current, next, new Map([[shardIdFor(0), owned(shardIdFor(0))]]));
  assert.equal(partial.keysMoving, null);
  assert.equal(partial.before.find((s) => s.id === shardIdFor(1))?.keys, null);
  assert.equal(partial.partitionsMoving, expected, 'partitions are known from the maps alone');
});

test('liveKeysByPartition counts live keys only, each in its partition', () => {
  const A = nodeAddress('10.0.0.1:8090');
  const version = (key: string, deleted: boolean): Version => ({ key, deleted, ...(deleted ? {} : { value: 1 }), dot: { node: A, counter: 1 }, stamp: { epoch: asEpoch(1), lamport: 1, node: A }, deps: {} }) as Version;
  const live = Array.from({ length: 50 }, (_, i) => `live-${i}`);
  const counts = liveKeysByPartition([...live.map((k) => version(k, false)), version('gone-1', true), version('gone-2', true)]);
  const expected = new Array<number>(PARTITION_COUNT).fill(0);
  for (const key of live) expected[partitionOfKey(key)]! += 1;
  assert.deepEqual(counts, expected);
});
