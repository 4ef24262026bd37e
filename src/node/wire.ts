// Shape checks for what peers send. A peer running other code, or a stray client on an internal
// path, gets a 400 instead of corrupting state.
import { PARTITION_COUNT } from '../core/shard-map.ts';
import { isEpochKey } from '../core/causal-metadata.ts';
import type { TransferClaim } from '../core/node-core.ts';
import type { Clock, EpochClocks, ShardClocks, ShardMap, Version } from '../core/types.ts';

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Objects from peers become maps of ours; a "__proto__" key would become a prototype instead. */
function hasSafeKeys(value: Record<string, unknown>): boolean {
  return !Object.hasOwn(value, '__proto__');
}

export function isClock(value: unknown): value is Clock {
  return isObject(value) && hasSafeKeys(value) && Object.values(value).every((c) => Number.isSafeInteger(c) && (c as number) >= 0);
}

export function isShardClocks(value: unknown): value is ShardClocks {
  return isObject(value) && hasSafeKeys(value) && Object.values(value).every(isClock);
}

/** Epoch (a decimal string) -> shard clocks. */
export function isEpochClocks(value: unknown): value is EpochClocks {
  return isObject(value) && Object.entries(value).every(([epoch, clocks]) => isEpochKey(epoch) && isShardClocks(clocks));
}

export function isTransferClaim(value: unknown): value is TransferClaim {
  return isObject(value) && typeof value.shard === 'string' && isClock(value.applied) && isEpochClocks(value.base);
}

export function isShardMap(value: unknown): value is ShardMap {
  if (!isObject(value)) return false;
  const { epoch, mode, partitions, shards } = value;
  return (
    Number.isSafeInteger(epoch) &&
    (mode === 'replicated' || mode === 'sharded') &&
    Array.isArray(partitions) &&
    partitions.length === PARTITION_COUNT &&
    partitions.every((p) => typeof p === 'string' && isObject(shards) && p in shards) &&
    isObject(shards) &&
    hasSafeKeys(shards) &&
    Object.values(shards).every((m) => Array.isArray(m) && m.every((n) => typeof n === 'string'))
  );
}

export function isVersion(value: unknown): value is Version {
  if (!isObject(value)) return false;
  const { key, deleted, dot, stamp, deps, past, origin } = value;
  return (
    typeof key === 'string' &&
    typeof deleted === 'boolean' &&
    (dot === null || (isObject(dot) && typeof dot.node === 'string' && Number.isSafeInteger(dot.counter))) &&
    isObject(stamp) &&
    (stamp.epoch === undefined || (Number.isSafeInteger(stamp.epoch) && (stamp.epoch as number) >= 0)) &&
    Number.isSafeInteger(stamp.lamport) &&
    typeof stamp.node === 'string' &&
    isShardClocks(deps) &&
    (past === undefined || isEpochClocks(past)) &&
    (origin === undefined ||
      (isObject(origin) &&
        Number.isSafeInteger(origin.epoch) &&
        typeof origin.shard === 'string' &&
        typeof origin.node === 'string' &&
        Number.isSafeInteger(origin.counter)))
  );
}

export function isVersionList(value: unknown): value is Version[] {
  return Array.isArray(value) && value.every(isVersion);
}

/** One unsigned 32-bit digest per partition. */
export function isPartitionDigests(value: unknown): value is number[] {
  return Array.isArray(value) && value.length === PARTITION_COUNT && value.every((d) => Number.isInteger(d) && d >= 0 && d <= 0xffffffff);
}

export function isPartitionList(value: unknown): value is number[] {
  return Array.isArray(value) && value.length <= PARTITION_COUNT && value.every((p) => Number.isInteger(p) && p >= 0 && p < PARTITION_COUNT);
}
