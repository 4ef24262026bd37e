// What a reshard moves, before and while it runs: which partitions change hands, and how many keys
// go with them, from each shard's live keys per partition (asked of one member of each shard).

import { membersOf, PARTITION_COUNT, partitionOfKey } from './shard-map.ts';
import type { NodeAddress, ShardId, ShardMap, Version } from './types.ts';

/** Live keys (tombstones excluded) per partition of a replica's versions. */
export function liveKeysByPartition(versions: Iterable<Version>): number[] {
  const counts = new Array<number>(PARTITION_COUNT).fill(0);
  for (const version of versions) if (!version.deleted) counts[partitionOfKey(version.key)]! += 1;
  return counts;
}

export interface ShardSide {
  id: ShardId;
  members: NodeAddress[];
  /** Live keys (null: no member of the shard answered with its counts). */
  keys: number | null;
}

export interface ReshardPreview {
  epoch: number;
  shardCount: number;
  before: ShardSide[];
  after: ShardSide[];
  /** Partitions whose data goes to a node that does not hold it now. */
  partitionsMoving: number;
  /** Live keys in those partitions (null when a shard's counts are unknown). */
  keysMoving: number | null;
  /** Per current shard: the partitions and keys it hands over. */
  moving: { shard: ShardId; partitions: number; keys: number | null }[];
}

/**
 * Compares `current` with `next`. A partition moves when the members that will own it are not all
 * among those that own it now (its data must cross to a new node). `counts`: per current shard,
 * its live keys per partition (absent: unknown).
 */
export function previewReshard(current: ShardMap, next: ShardMap, counts: ReadonlyMap<ShardId, readonly number[]>): ReshardPreview {
  const moving = new Map<ShardId, { partitions: number; keys: number | null }>();
  const afterKeys = new Map<ShardId, number | null>();
  for (let p = 0; p < PARTITION_COUNT; p++) {
    const from = current.partitions[p] as ShardId;
    const to = next.partitions[p] as ShardId;
    const known = counts.get(from);
    const keys = known === undefined ? null : (known[p] ?? 0);
    const sum = afterKeys.has(to) ? afterKeys.get(to)! : 0;
    afterKeys.set(to, sum === null || keys === null ? null : sum + keys);
    const owners = new Set(membersOf(current, from) ?? []);
    if ((membersOf(next, to) ?? []).every((node) => owners.has(node))) continue;
    const entry = moving.get(from) ?? { partitions: 0, keys: 0 };
    entry.partitions++;
    entry.keys = entry.keys === null || keys === null ? null : entry.keys + keys;
    moving.set(from, entry);
  }
  const sides = (map: ShardMap, keysOf: (id: ShardId) => number | null): ShardSide[] =>
    Object.entries(map.shards).map(([id, members]) => ({ id: id as ShardId, members: [...members], keys: keysOf(id as ShardId) }));
  const before = sides(current, (id) => {
    const known = counts.get(id);
    return known === undefined ? null : known.reduce((a, b) => a + b, 0);
  });
  const after = sides(next, (id) => afterKeys.get(id) ?? 0);
  const list = [...moving].map(([shard, m]) => ({ shard, ...m })).sort((a, b) => (a.shard < b.shard ? -1 : 1));
  const partitionsMoving = list.reduce((sum, m) => sum + m.partitions, 0);
  const keysMoving = list.some((m) => m.keys === null) ? null : list.reduce((sum, m) => sum + (m.keys ?? 0), 0);
  return { epoch: next.epoch, shardCount: Object.keys(next.shards).length, before, after, partitionsMoving, keysMoving, moving: list };
}
