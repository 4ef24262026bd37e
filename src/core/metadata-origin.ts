import { asNodeAddress } from './address.ts';
import { asEpoch, asShardId, membersOf, shardIds } from './shard-map.ts';
import type { CausalMetadata, Epoch, NodeAddress, ShardClocks, ShardMap } from './types.ts';

/**
 * Why `metadata` cannot be this store's (null when it can be): it names a shard the map of its
 * epoch does not have, or a node that is not a member of that shard nor a node this store knows.
 * For an epoch whose map this node did not keep (it restarted since, or lags behind), the shard
 * and node must at least be ones the store has now. So metadata is never larger than the
 * store's own shards × nodes, and no dependency on a made-up writer can be stored for others to
 * inherit. (A made-up counter of a real writer is what only the cluster secret's MAC can refuse.)
 * Used only without a cluster secret. `known`: the nodes of the view and those being probed; the
 * members of every kept map are added.
 */
export function metadataOriginFault(
  metadata: CausalMetadata,
  current: ShardMap,
  pastMaps: ReadonlyMap<Epoch, ShardMap>,
  known: Set<NodeAddress>,
): string | null {
  for (const map of [current, ...pastMaps.values()]) for (const members of Object.values(map.shards)) for (const n of members) known.add(n);
  const check = (epoch: Epoch, clocks: ShardClocks): string | null => {
    const map = epoch === current.epoch ? current : pastMaps.get(epoch);
    for (const [key, clock] of Object.entries(clocks)) {
      // Any text: it is looked up in the map, and an unknown one is refused below.
      const shard = asShardId(key);
      const members = map === undefined ? undefined : membersOf(map, shard);
      if (map !== undefined && members === undefined) return `it names shard ${shard}, which epoch ${epoch} does not have`;
      // A map this node did not keep had at most as many shards as the store has pairs of nodes.
      if (map === undefined && Number(shard.slice(1)) >= Math.max(shardIds(current).length, Math.floor(known.size / 2))) {
        return `it names shard ${shard}, which this store cannot have had`;
      }
      for (const node of Object.keys(clock).map(asNodeAddress)) {
        if (!(members?.includes(node) ?? false) && !known.has(node)) return `it names ${node}, which is not a node of this store`;
      }
    }
    return null;
  };
  const fault = check(metadata.e, metadata.c);
  if (fault !== null) return fault;
  for (const [epoch, clocks] of Object.entries(metadata.o ?? {})) {
    const old = check(asEpoch(Number(epoch)), clocks);
    if (old !== null) return old;
  }
  return null;
}
