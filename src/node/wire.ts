// Shape checks for what peers send. A peer running other code, or a stray client on an internal
// path, gets a 400 instead of corrupting state.
import { isNodeAddress } from '../core/address.ts';
import { isEpochKey } from '../core/causal-metadata.ts';
import { valueFault } from '../core/json-value.ts';
import { isShardId, PARTITION_COUNT } from '../core/shard-map.ts';
import type { TransferClaim } from '../core/node-core.ts';
import type { Clock, EpochClocks, ShardClocks, ShardMap, Version } from '../core/types.ts';

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// Objects from peers become records of ours, keyed by node address, shard id or epoch: each key is
// checked for its shape, so no key can be a prototype name ("__proto__", "constructor", ...).

export function isClock(value: unknown): value is Clock {
  return isObject(value) && Object.entries(value).every(([node, c]) => isNodeAddress(node) && Number.isSafeInteger(c) && (c as number) >= 0);
}

export function isShardClocks(value: unknown): value is ShardClocks {
  return isObject(value) && Object.entries(value).every(([shard, clock]) => isShardId(shard) && isClock(clock));
}

/** Epoch (a decimal string) -> shard clocks. */
export function isEpochClocks(value: unknown): value is EpochClocks {
  return isObject(value) && Object.entries(value).every(([epoch, clocks]) => isEpochKey(epoch) && isShardClocks(clocks));
}

export function isTransferClaim(value: unknown): value is TransferClaim {
  return isObject(value) && isShardId(value.shard) && isClock(value.applied) && isEpochClocks(value.base);
}

export function isShardMap(value: unknown): value is ShardMap {
  if (!isObject(value)) return false;
  const { epoch, mode, partitions, shards } = value;
  return (
    Number.isSafeInteger(epoch) &&
    (mode === 'replicated' || mode === 'sharded') &&
    Array.isArray(partitions) &&
    partitions.length === PARTITION_COUNT &&
    isObject(shards) &&
    Object.entries(shards).every(([id, members]) => isShardId(id) && Array.isArray(members) && members.every(isNodeAddress)) &&
    partitions.every((p) => isShardId(p) && Object.hasOwn(shards, p))
  );
}

export function isVersion(value: unknown): value is Version {
  if (!isObject(value)) return false;
  const { key, deleted, dot, stamp, deps, past, origin } = value;
  return (
    typeof key === 'string' &&
    typeof deleted === 'boolean' &&
    (deleted || valueFault(value.value) === null) &&
    (dot === null || (isObject(dot) && isNodeAddress(dot.node) && Number.isSafeInteger(dot.counter))) &&
    isObject(stamp) &&
    (stamp.epoch === undefined || (Number.isSafeInteger(stamp.epoch) && (stamp.epoch as number) >= 0)) &&
    Number.isSafeInteger(stamp.lamport) &&
    typeof stamp.node === 'string' &&
    isShardClocks(deps) &&
    (past === undefined || isEpochClocks(past)) &&
    (origin === undefined ||
      (isObject(origin) &&
        Number.isSafeInteger(origin.epoch) &&
        isShardId(origin.shard) &&
        isNodeAddress(origin.node) &&
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
