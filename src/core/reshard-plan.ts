import { sortAddresses } from './address.ts';
import { assert } from './assert.ts';
import { compareShardIds, nextEpoch, PARTITION_COUNT, shardIdFor, shardOfNode } from './shard-map.ts';
import type { NodeAddress, ShardId, ShardMap } from './types.ts';

export type ReshardCheck = { ok: true } | { ok: false; reason: 'too-few-nodes' | 'bad-count' };

/** The API's rule: every shard must get at least 2 nodes of the view. */
export function checkReshard(viewSize: number, shardCount: unknown): ReshardCheck {
  if (!Number.isSafeInteger(shardCount) || (shardCount as number) < 1) return { ok: false, reason: 'bad-count' };
  if (2 * (shardCount as number) > viewSize) return { ok: false, reason: 'too-few-nodes' };
  return { ok: true };
}

/**
 * The next epoch's map for `shardCount` shards over the nodes of `view`. Both nodes and partitions
 * stay in their shard when that shard survives and has room, so a reshard from N to M shards moves
 * close to the minimum share of keys (2 -> 3 moves a third of the partitions).
 */
export function planReshard(current: ShardMap, view: NodeAddress[], shardCount: number): ShardMap {
  const nodes = sortAddresses(view);
  const ids = Array.from({ length: shardCount }, (_, i) => shardIdFor(i));

  const nodeShards = fillBuckets(
    ids,
    nodes.map((node) => shardOfNode(current, node)),
    nodes.length,
  );
  const shards: Record<ShardId, NodeAddress[]> = {};
  for (const id of ids) shards[id] = [];
  nodes.forEach((node, i) => {
    const id = nodeShards[i];
    const members = id === undefined ? undefined : shards[id];
    assert(members !== undefined, () => `${node} is placed in a shard of the new map`);
    members.push(node);
  });

  const partitions = fillBuckets(ids, current.partitions, PARTITION_COUNT);
  return { epoch: nextEpoch(current.epoch), mode: 'sharded', partitions, shards };
}

/**
 * Assign `count` items to buckets so that sizes differ by at most one, keeping each item in its
 * previous bucket where that bucket survives and has room; the rest go to the emptiest buckets.
 */
function fillBuckets(ids: ShardId[], previous: (ShardId | null | undefined)[], count: number): ShardId[] {
  const floor = Math.floor(count / ids.length);
  let bigLeft = count % ids.length; // buckets that may hold floor + 1
  const sizes = new Map<ShardId, number>(ids.map((id) => [id, 0]));
  /** The size of a bucket: every id has one (sizes is made from ids). */
  const sizeOf = (id: ShardId): number => {
    const size = sizes.get(id);
    assert(size !== undefined, () => `${id} is one of the buckets`);
    return size;
  };
  const out: (ShardId | null)[] = new Array(count).fill(null);
  for (let i = 0; i < count; i++) {
    const id = previous[i];
    if (id === null || id === undefined || !sizes.has(id)) continue;
    const size = sizeOf(id);
    if (size < floor || (size === floor && bigLeft > 0)) {
      if (size === floor) bigLeft--;
      sizes.set(id, size + 1);
      out[i] = id;
    }
  }
  const filled: ShardId[] = [];
  for (let i = 0; i < count; i++) {
    const kept = out[i];
    if (kept !== null && kept !== undefined) {
      filled.push(kept);
      continue;
    }
    let best: ShardId | null = null;
    let bestSize = 0;
    for (const id of ids) {
      const size = sizeOf(id);
      const room = size < floor || (size === floor && bigLeft > 0);
      if (!room) continue;
      if (best === null || size < bestSize || (size === bestSize && compareShardIds(id, best) < 0)) {
        best = id;
        bestSize = size;
      }
    }
    // The buckets hold `count` items in all (floor each, one more for `count % ids.length` of
    // them), so while an item is left some bucket has room.
    assert(best !== null, 'a bucket has room for every item');
    if (bestSize === floor) bigLeft--;
    sizes.set(best, bestSize + 1);
    filled.push(best);
  }
  return filled;
}

/** How many partitions change shard between two maps (the share of keys a reshard moves). */
export function movedPartitions(before: ShardMap, after: ShardMap): number {
  let moved = 0;
  for (let p = 0; p < PARTITION_COUNT; p++) if (before.partitions[p] !== after.partitions[p]) moved++;
  return moved;
}
