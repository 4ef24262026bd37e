import { compareAddresses, sortAddresses } from './address.ts';
import { assert } from './assert.ts';
import { hash32 } from './hash.ts';
import type { Epoch, NodeAddress, ShardId, ShardMap } from './types.ts';

/**
 * Keys hash into a fixed number of partitions; the shard map assigns partitions to shards. A reshard
 * moves whole partitions, and only as many as the new balance needs.
 */
export const PARTITION_COUNT = 1024;

/** `n` as an Epoch, for an epoch from trusted data (a checked message, a key of checked metadata): asserts the shape. */
export function asEpoch(n: number): Epoch {
  assert(Number.isSafeInteger(n) && n >= 0, () => `${n} is not an epoch`);
  return n as Epoch;
}

/** The epoch a reshard of a map at `epoch` makes. */
export function nextEpoch(epoch: Epoch): Epoch {
  return asEpoch(epoch + 1);
}

/** A replicated store's first map; a sharded store's first map is one later. */
export const FIRST_EPOCH = asEpoch(0);

/** The id of the shard with this index: `s0`, `s1`, ... */
export function shardIdFor(index: number): ShardId {
  return `s${index}` as ShardId;
}

/** `text` as a ShardId, for an id from trusted data (a constant, a test): asserts the shape. */
export function shardId(text: string): ShardId {
  assert(isShardId(text), () => `${JSON.stringify(text)} is not a shard id`);
  return text;
}

/**
 * `text` as a ShardId without a check, where it is already known to be one (a key of a validated
 * shard map or clock set: Object.keys yields plain strings), or where an id of any shape is looked up
 * in a map before use, so an unknown one finds nothing (as the wire decoders have always done).
 * Costs nothing and changes nothing at run time.
 */
export function asShardId(text: string): ShardId {
  return text as ShardId;
}

/** Shard ids are `s0`, `s1`, ...: anything else from a request or a peer is no shard of ours. */
export function isShardId(value: unknown): value is ShardId {
  return typeof value === 'string' && /^s(0|[1-9][0-9]{0,5})$/.test(value);
}

export function partitionOfKey(key: string): number {
  return hash32(key) % PARTITION_COUNT;
}

export function shardOfKey(map: ShardMap, key: string): ShardId {
  const shard = map.partitions[partitionOfKey(key)];
  assert(shard !== undefined, 'a shard map assigns each of the PARTITION_COUNT partitions');
  return shard;
}

export function shardIds(map: ShardMap): ShardId[] {
  return (Object.keys(map.shards) as ShardId[]).sort(compareShardIds);
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
      epoch: FIRST_EPOCH,
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
  return { epoch: nextEpoch(FIRST_EPOCH), mode: 'sharded', partitions, shards };
}

/** At least 1 shard, and at least 2 nodes per shard where there are 2 nodes at all. */
export function clampShardCount(requested: number, nodeCount: number): number {
  const most = Math.max(1, Math.floor(nodeCount / 2));
  return Math.max(1, Math.min(Math.floor(requested), most));
}

/**
 * Combine two maps that replicas hold: the higher epoch wins; within one epoch each address's
 * membership count of each shard only grows (see ShardMap.membershipCounts), so the higher count is
 * the merge (commutative, associative, idempotent): a member added anywhere is a member everywhere,
 * and so is a drop, and a join after the drop. The epoch never goes back, and
 * the result is a well-formed map (checkShardMap) when both are: O(PARTITION_COUNT + members),
 * what comparing the layouts costs anyway.
 */
export function mergeShardMaps(a: ShardMap, b: ShardMap): ShardMap {
  const merged = mergeWithin(a, b);
  assert(merged.epoch >= a.epoch && merged.epoch >= b.epoch, 'merging shard maps never lowers the epoch');
  checkShardMap(merged);
  return merged;
}

/**
 * The invariants of a map every node can route by: each of the PARTITION_COUNT partitions belongs
 * to one of its shards, and each shard's members are sorted and distinct. (A node may be a member
 * of two shards: racing add-member requests at two nodes can do that, and shardOfNode picks one
 * alike everywhere; so that is not asserted.) O(PARTITION_COUNT + members).
 */
export function checkShardMap(map: ShardMap): void {
  assert(map.partitions.length === PARTITION_COUNT, () => `a shard map has ${map.partitions.length} partitions, not ${PARTITION_COUNT}`);
  for (const shard of map.partitions) assert(Object.hasOwn(map.shards, shard), () => `a partition belongs to ${shard}, which is no shard of the map`);
  for (const [id, members] of Object.entries(map.shards)) {
    let previous: NodeAddress | null = null;
    for (const member of members) {
      assert(previous === null || compareAddresses(previous, member) < 0, () => `the members of ${id} are not sorted and distinct`);
      previous = member;
    }
  }
  for (const [id, counts] of Object.entries(map.membershipCounts ?? {})) {
    const members = Object.hasOwn(map.shards, id) ? (map.shards[id] as NodeAddress[]) : undefined;
    assert(members !== undefined, () => `membership counts name ${id}, which is no shard of the map`);
    for (const [node, count] of Object.entries(counts)) {
      assert(Number.isSafeInteger(count) && count >= 2, () => `the membership count of ${node} in ${id} is ${count}, not 2 or more`);
      assert(members.includes(node as NodeAddress) === (count % 2 === 1), () => `${node} is ${count % 2 === 1 ? 'not ' : ''}listed in ${id} though its membership count is ${count}`);
    }
  }
}

/** How many times `node`'s membership of `shard` changed in this epoch, plus one (odd: a member; 0: never one). */
export function membershipCount(map: ShardMap, shard: ShardId, node: NodeAddress): number {
  const counted = map.membershipCounts?.[shard];
  if (counted !== undefined && Object.hasOwn(counted, node)) return counted[node] as number;
  return membersOf(map, shard)?.includes(node) === true ? 1 : 0;
}

/** Addresses dropped from a shard in this epoch and not members again, by shard. */
export function droppedMembers(map: ShardMap): { shard: ShardId; node: NodeAddress }[] {
  const out: { shard: ShardId; node: NodeAddress }[] = [];
  for (const [shard, counts] of Object.entries(map.membershipCounts ?? {})) {
    for (const [node, count] of Object.entries(counts)) if (count % 2 === 0) out.push({ shard: asShardId(shard), node: node as NodeAddress });
  }
  return out;
}

/** `map` with `node`'s membership of `shard` at `count`, and the members listed accordingly. */
function withCount(map: ShardMap, shard: ShardId, node: NodeAddress, count: number): ShardMap {
  const members = (membersOf(map, shard) ?? []).filter((n) => n !== node);
  if (count % 2 === 1) members.push(node);
  const counts = { ...(map.membershipCounts ?? {}) };
  counts[shard] = { ...(counts[shard] ?? {}), [node]: count };
  return { ...map, shards: { ...map.shards, [shard]: sortAddresses(members) }, membershipCounts: counts };
}

function mergeWithin(a: ShardMap, b: ShardMap): ShardMap {
  if (a.epoch !== b.epoch) return a.epoch > b.epoch ? a : b;
  // Two different partition layouts at one epoch come only from racing coordinators; pick one alike everywhere.
  const layoutA = a.partitions.join(',');
  const layoutB = b.partitions.join(',');
  const base = layoutA === layoutB ? a : layoutA > layoutB ? a : b;
  const shards: Record<string, NodeAddress[]> = {};
  const counts: Record<string, Record<string, number>> = {};
  for (const id of Object.keys(base.shards) as ShardId[]) {
    const candidates = new Set<NodeAddress>([
      ...(membersOf(a, id) ?? []),
      ...(membersOf(b, id) ?? []),
      ...(Object.keys(a.membershipCounts?.[id] ?? {}) as NodeAddress[]),
      ...(Object.keys(b.membershipCounts?.[id] ?? {}) as NodeAddress[]),
    ]);
    const members: NodeAddress[] = [];
    for (const node of candidates) {
      const count = Math.max(membershipCount(a, id, node), membershipCount(b, id, node));
      if (count % 2 === 1) members.push(node);
      if (count >= 2) counts[id] = { ...(counts[id] ?? {}), [node]: count };
    }
    shards[id] = sortAddresses(members);
  }
  const mode = a.mode === 'sharded' || b.mode === 'sharded' ? 'sharded' : 'replicated';
  const merged: ShardMap = { epoch: base.epoch, mode, partitions: base.partitions, shards };
  if (Object.keys(counts).length > 0) merged.membershipCounts = counts;
  return merged;
}

/** `node` a member of `shard` (a join; again, if it was dropped). The same map when it is one, or there is no such shard. */
export function withMember(map: ShardMap, shard: ShardId, node: NodeAddress): ShardMap {
  const members = membersOf(map, shard);
  if (!members || members.includes(node)) return map;
  const count = membershipCount(map, shard, node) + 1;
  if (count === 1) return { ...map, shards: { ...map.shards, [shard]: sortAddresses([...members, node]) } };
  return withCount(map, shard, node, count);
}

/** `node` dropped from `shard` (a member that never joined). The same map when it is no member. */
export function withoutMember(map: ShardMap, shard: ShardId, node: NodeAddress): ShardMap {
  const members = membersOf(map, shard);
  if (!members || !members.includes(node)) return map;
  return withCount(map, shard, node, membershipCount(map, shard, node) + 1);
}

export function mapsEqual(a: ShardMap, b: ShardMap): boolean {
  return mapDigest(a) === mapDigest(b);
}

/** A short fingerprint peers compare in pings to notice that their maps differ. */
export function mapDigest(map: ShardMap): string {
  const members = shardIds(map)
    .map((id) => `${id}=${(membersOf(map, id) ?? []).join('+')}`)
    .join(';');
  const digest = `${map.epoch}:${map.mode}:${hash32(map.partitions.join(',')).toString(16)}:${hash32(members).toString(16)}`;
  if (map.membershipCounts === undefined) return digest;
  const counts = Object.entries(map.membershipCounts)
    .sort(([x], [y]) => compareShardIds(asShardId(x), asShardId(y)))
    .map(([id, byNode]) => `${id}=${Object.entries(byNode).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)).map(([node, count]) => `${node}*${count}`).join('+')}`)
    .join(';');
  return `${digest}:${hash32(counts).toString(16)}`;
}

/** Sorted members, with a stable order for comparison in tests and answers. */
export function sortedMembers(members: NodeAddress[]): NodeAddress[] {
  return [...members].sort(compareAddresses);
}
