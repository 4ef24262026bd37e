import { compareAddresses, sortAddresses } from './address.ts';
import { hash32 } from './hash.ts';
import type { NodeAddress, ShardId, ShardMap } from './types.ts';

/**
 * Keys hash into a fixed number of partitions; the shard map assigns partitions to shards. A reshard
 * moves whole partitions, and only as many as the new balance needs.
 */
export const PARTITION_COUNT = 1024;

export function shardIdFor(index: number): ShardId {
  return `s${index}`;
}

/** Shard ids are `s0`, `s1`, ...: anything else from a request or a peer is no shard of ours. */
export function isShardId(value: unknown): value is ShardId {
  return typeof value === 'string' && /^s(0|[1-9][0-9]{0,5})$/.test(value);
}

export function partitionOfKey(key: string): number {
  return hash32(key) % PARTITION_COUNT;
}

export function shardOfKey(map: ShardMap, key: string): ShardId {
  return map.partitions[partitionOfKey(key)] as ShardId;
}

export function shardIds(map: ShardMap): ShardId[] {
  return Object.keys(map.shards).sort(compareShardIds);
}

export function compareShardIds(a: ShardId, b: ShardId): number {
  const na = Number(a.slice(1));
  const nb = Number(b.slice(1));
  if (Number.isInteger(na) && Number.isInteger(nb) && na !== nb) return na - nb;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The shard a node belongs to; null for a node in no shard. Lowest id if a race put it in two. */
export function shardOfNode(map: ShardMap, node: NodeAddress): ShardId | null {
  for (const id of shardIds(map)) {
    if (membersOf(map, id)?.includes(node)) return id;
  }
  return null;
}

/** A shard's members; undefined for an id that is no shard (`__proto__` included: ids are data). */
export function membersOf(map: ShardMap, shard: ShardId): NodeAddress[] | undefined {
  return Object.hasOwn(map.shards, shard) ? map.shards[shard] : undefined;
}

/**
 * The map every node started with SHARD_COUNT computes alike, without talking: nodes sorted by
 * address, dealt round-robin. Without a shard count: one shard of every node (replicated mode).
 * A count that would leave a shard with fewer than 2 nodes is lowered (see clampShardCount).
 */
export function initialShardMap(view: NodeAddress[], shardCount: number | null): ShardMap {
  const nodes = sortAddresses(view);
  if (shardCount === null) {
    return {
      epoch: 0,
      mode: 'replicated',
      partitions: new Array<ShardId>(PARTITION_COUNT).fill(shardIdFor(0)),
      shards: { [shardIdFor(0)]: nodes },
    };
  }
  const count = clampShardCount(shardCount, nodes.length);
  const shards: Record<ShardId, NodeAddress[]> = {};
  for (let i = 0; i < count; i++) shards[shardIdFor(i)] = [];
  nodes.forEach((node, i) => shards[shardIdFor(i % count)]?.push(node));
  const partitions = Array.from({ length: PARTITION_COUNT }, (_, p) => shardIdFor(p % count));
  return { epoch: 1, mode: 'sharded', partitions, shards };
}

/** At least 1 shard, and at least 2 nodes per shard where there are 2 nodes at all. */
export function clampShardCount(requested: number, nodeCount: number): number {
  const most = Math.max(1, Math.floor(nodeCount / 2));
  return Math.max(1, Math.min(Math.floor(requested), most));
}

/**
 * Combine two maps that replicas hold: the higher epoch wins; within one epoch members only grow, so
 * the union is the merge (commutative, associative, idempotent).
 */
export function mergeShardMaps(a: ShardMap, b: ShardMap): ShardMap {
  if (a.epoch !== b.epoch) return a.epoch > b.epoch ? a : b;
  // Two different partition layouts at one epoch come only from racing coordinators; pick one alike everywhere.
  const layoutA = a.partitions.join(',');
  const layoutB = b.partitions.join(',');
  const base = layoutA === layoutB ? a : layoutA > layoutB ? a : b;
  const shards: Record<ShardId, NodeAddress[]> = {};
  for (const id of Object.keys(base.shards)) {
    shards[id] = sortAddresses([...(membersOf(a, id) ?? []), ...(membersOf(b, id) ?? [])]);
  }
  const mode = a.mode === 'sharded' || b.mode === 'sharded' ? 'sharded' : 'replicated';
  return { epoch: base.epoch, mode, partitions: base.partitions, shards };
}

export function withMember(map: ShardMap, shard: ShardId, node: NodeAddress): ShardMap {
  const members = membersOf(map, shard);
  if (!members || members.includes(node)) return map;
  return { ...map, shards: { ...map.shards, [shard]: sortAddresses([...members, node]) } };
}

export function mapsEqual(a: ShardMap, b: ShardMap): boolean {
  return mapDigest(a) === mapDigest(b);
}

/** A short fingerprint peers compare in pings to notice that their maps differ. */
export function mapDigest(map: ShardMap): string {
  const members = shardIds(map)
    .map((id) => `${id}=${(membersOf(map, id) ?? []).join('+')}`)
    .join(';');
  return `${map.epoch}:${map.mode}:${hash32(map.partitions.join(',')).toString(16)}:${hash32(members).toString(16)}`;
}

/** Sorted members, with a stable order for comparison in tests and answers. */
export function sortedMembers(members: NodeAddress[]): NodeAddress[] {
  return [...members].sort(compareAddresses);
}
