// Shape checks for what peers send. A peer running other code, or a stray client on an internal
// path, gets a 400 instead of corrupting state.
import { isNodeAddress } from '../core/address.ts';
import { isEpochKey } from '../core/causal-metadata.ts';
import { valueFault } from '../core/json-value.ts';
import { isShardId, PARTITION_COUNT } from '../core/shard-map.ts';
import type { TransferClaim } from '../core/node-core.ts';
import type { Clock, Epoch, EpochClocks, NodeAddress, ShardClocks, ShardId, ShardMap, Version } from '../core/types.ts';
import { BadRequest } from './replies.ts';
import { unpackVersions } from './repair-wire.ts';

/** A JSON object (not an array, not null). */
export function isObject(value: unknown): value is Record<string, unknown> {
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
  const { epoch, mode, partitions, shards, membershipCounts } = value;
  return (
    Number.isSafeInteger(epoch) &&
    (mode === 'replicated' || mode === 'sharded') &&
    Array.isArray(partitions) &&
    partitions.length === PARTITION_COUNT &&
    isObject(shards) &&
    Object.entries(shards).every(([id, members]) => isShardId(id) && Array.isArray(members) && members.every(isNodeAddress)) &&
    partitions.every((p) => isShardId(p) && Object.hasOwn(shards, p)) &&
    (membershipCounts === undefined || areMembershipCounts(membershipCounts, shards as Record<string, unknown[]>))
  );
}

/**
 * A map's membership counts (see ShardMap.membershipCounts): for shards of the map, addresses with a
 * count of 2 or more that is odd exactly when the address is listed as a member.
 */
function areMembershipCounts(value: unknown, shards: Record<string, unknown[]>): boolean {
  if (!isObject(value)) return false;
  return Object.entries(value).every(
    ([id, counts]) =>
      Object.hasOwn(shards, id) &&
      isObject(counts) &&
      Object.entries(counts).every(
        ([node, count]) =>
          isNodeAddress(node) && Number.isSafeInteger(count) && (count as number) >= 2 && (shards[id] as unknown[]).includes(node) === ((count as number) % 2 === 1),
      ),
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

export function isEpochValue(value: unknown): value is Epoch {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

// ---------------------------------------------------------------- messages between nodes
// One decoder per message of a POST under /internal/: the message, or BadRequest (400).

/** The fields of a request body (none when it is not an object). */
function fieldsOf(body: unknown): Record<string, unknown> {
  return (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
}

/** POST /internal/map: a peer's shard map, pushed. */
export interface MapPush {
  map: ShardMap;
}

export function decodeMapPush(body: unknown): MapPush {
  const fields = fieldsOf(body);
  if (!isShardMap(fields.map)) throw new BadRequest('map is not a shard map');
  return { map: fields.map };
}

/** POST /internal/replicate: a batch of writes from a shard peer. */
export interface ReplicateBatch {
  epoch: Epoch;
  shard: ShardId;
  versions: Version[];
}

// The shard of a peer message is any string, as it always was: it is looked up (in the replicas, the
// shard map) before use, and an unknown one finds nothing. So it is branded without a shape check.

export function decodeReplicate(body: unknown): ReplicateBatch {
  const fields = fieldsOf(body);
  if (!isEpochValue(fields.epoch) || !isShardId(fields.shard) || !isVersionList(fields.versions)) {
    throw new BadRequest('malformed replication batch');
  }
  return { epoch: fields.epoch, shard: fields.shard, versions: fields.versions };
}

/** POST /internal/digest: a shard peer's partition digests (anti-entropy), and who asks. */
export interface DigestRequest {
  epoch: Epoch;
  shard: ShardId;
  digests: number[];
  from: NodeAddress | null;
}

export function decodeDigestRequest(body: unknown): DigestRequest {
  const fields = fieldsOf(body);
  if (!isEpochValue(fields.epoch) || !isShardId(fields.shard) || !isPartitionDigests(fields.digests)) {
    throw new BadRequest('malformed digest request');
  }
  return { epoch: fields.epoch, shard: fields.shard, digests: fields.digests, from: isNodeAddress(fields.from) ? fields.from : null };
}

/**
 * POST /internal/repair: versions to merge (anti-entropy, or a late transfer with what it reflects),
 * as `versions` or, from an anti-entropy push, `packed` (repair-wire.ts) with the pusher (`from`).
 */
export interface RepairMessage {
  epoch: Epoch;
  shard: ShardId;
  versions: Version[];
  reflected: EpochClocks | undefined;
  from: NodeAddress | null;
}

export function decodeRepair(body: unknown): RepairMessage {
  const fields = fieldsOf(body);
  const versions = fields.packed !== undefined && fields.versions === undefined ? unpackVersions(fields.packed) : fields.versions;
  if (!isEpochValue(fields.epoch) || !isShardId(fields.shard) || !isVersionList(versions)) {
    throw new BadRequest('malformed repair');
  }
  if (fields.reflected !== undefined && !isEpochClocks(fields.reflected)) throw new BadRequest('malformed repair');
  return { epoch: fields.epoch, shard: fields.shard, versions, reflected: fields.reflected, from: isNodeAddress(fields.from) ? fields.from : null };
}

/** POST /internal/sync: what a shard peer lacks (`since` its applied clock; everything with `full`). */
export interface SyncRequest {
  epoch: Epoch;
  shard: ShardId;
  since: Clock;
  full: boolean;
  base: EpochClocks | undefined;
}

export function decodeSyncRequest(body: unknown): SyncRequest {
  const fields = fieldsOf(body);
  if (!isEpochValue(fields.epoch) || !isShardId(fields.shard) || !isClock(fields.since)) {
    throw new BadRequest('malformed sync request');
  }
  const base = isEpochClocks(fields.base) ? fields.base : undefined;
  return { epoch: fields.epoch, shard: fields.shard, since: fields.since, full: fields.full === true, base };
}

/** POST /internal/reshard/prepare: phase 1 of a reshard (freeze), with the new map. */
export interface ReshardPrepare {
  map: ShardMap;
  coordinator: NodeAddress;
}

export function decodeReshardPrepare(body: unknown): ReshardPrepare {
  const fields = fieldsOf(body);
  if (!isShardMap(fields.map) || !isNodeAddress(fields.coordinator)) throw new BadRequest('malformed prepare');
  return { map: fields.map, coordinator: fields.coordinator };
}

/** POST /internal/reshard/send: phase 2 of a reshard (send data to the new owners among `targets`). */
export interface ReshardSend {
  epoch: Epoch;
  targets: NodeAddress[];
  /** The prepared nodes' prepare answers (absent: a coordinator that sends none; nothing is left out). */
  holdings: Map<NodeAddress, TransferClaim>;
}

export function decodeReshardSend(body: unknown): ReshardSend {
  const fields = fieldsOf(body);
  const holdings = fields.holdings ?? {};
  if (
    !isEpochValue(fields.epoch) ||
    !Array.isArray(fields.targets) ||
    !fields.targets.every(isNodeAddress) ||
    !isObject(holdings) ||
    !Object.entries(holdings).every(([node, holding]) => isNodeAddress(node) && isTransferClaim(holding))
  ) {
    throw new BadRequest('malformed send');
  }
  return { epoch: fields.epoch, targets: fields.targets, holdings: new Map(Object.entries(holdings) as [NodeAddress, TransferClaim][]) };
}

/** POST /internal/reshard/transfer: versions of a reshard for this node, the last part with the sender's claim. */
export interface ReshardTransfer {
  epoch: Epoch;
  versions: Version[];
  claim: TransferClaim | undefined;
}

export function decodeReshardTransfer(body: unknown): ReshardTransfer {
  const fields = fieldsOf(body);
  if (!isEpochValue(fields.epoch) || !isVersionList(fields.versions) || (fields.claim !== undefined && !isTransferClaim(fields.claim))) {
    throw new BadRequest('malformed transfer');
  }
  return { epoch: fields.epoch, versions: fields.versions, claim: fields.claim };
}

/** POST /internal/reshard/commit and /internal/reshard/abort: phase 3 of a reshard, or its end. */
export interface ReshardEpoch {
  epoch: Epoch;
}

export function decodeReshardCommit(body: unknown): ReshardEpoch {
  const fields = fieldsOf(body);
  if (!isEpochValue(fields.epoch)) throw new BadRequest('malformed commit');
  return { epoch: fields.epoch };
}

export function decodeReshardAbort(body: unknown): ReshardEpoch {
  const fields = fieldsOf(body);
  if (!isEpochValue(fields.epoch)) throw new BadRequest('malformed abort');
  return { epoch: fields.epoch };
}
