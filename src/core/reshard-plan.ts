import { sortAddresses } from './address.ts';
import { compareShardIds, PARTITION_COUNT, shardIdFor, shardOfNode } from './shard-map.ts';
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
  nodes.forEach((node, i) => shards[nodeShards[i] as ShardId]?.push(node));

  const partitions = fillBuckets(ids, current.partitions, PARTITION_COUNT);
  return { epoch: current.epoch + 1, mode: 'sharded', partitions, shards };
}

/**
 * Assign `count` items to buckets so that sizes differ by at most one, keeping each item in its
 * previous bucket where that bucket survives and has room; the rest go to the emptiest buckets.
 */
function fillBuckets(ids: ShardId[], previous: (ShardId | null | undefined)[], count: number): ShardId[] {
  const floor = Math.floor(count / ids.length);
  let bigLeft = count % ids.length; // buckets that may hold floor + 1
  const sizes = new Map<ShardId, number>(ids.map((id) => [id, 0]));
  const out: (ShardId | null)[] = new Array(count).fill(null);
  for (let i = 0; i < count; i++) {
    const id = previous[i];
    if (id === null || id === undefined || !sizes.has(id)) continue;
    const size = sizes.get(id) as number;
    if (size < floor || (size === floor && bigLeft > 0)) {
      if (size === floor) bigLeft--;
      sizes.set(id, size + 1);
      out[i] = id;
    }
  }
  for (let i = 0; i < count; i++) {
    if (out[i] !== null) continue;
    let best: ShardId | null = null;
    for (const id of ids) {
      const size = sizes.get(id) as number;
      const room = size < floor || (size === floor && bigLeft > 0);
      if (!room) continue;
      if (best === null || size < (sizes.get(best) as number) || (size === sizes.get(best) && compareShardIds(id, best) < 0)) best = id;
    }
    const chosen = best as ShardId;
    if ((sizes.get(chosen) as number) === floor) bigLeft--;
    sizes.set(chosen, (sizes.get(chosen) as number) + 1);
    out[i] = chosen;
  }
  return out as ShardId[];
}

/** How many partitions change shard between two maps (the share of keys a reshard moves). */
export function movedPartitions(before: ShardMap, after: ShardMap): number {
  let moved = 0;
  for (let p = 0; p < PARTITION_COUNT; p++) if (before.partitions[p] !== after.partitions[p]) moved++;
  return moved;
}
