import { hash32 } from './hash.ts';
import { EMPTY_SHARD_CLOCKS, isEmptyRecord, type Interner } from './intern.ts';
import type { Epoch, EpochClocks, NodeAddress, Origin, ShardClocks, Stamp, Version } from './types.ts';

// A version as a replica keeps it in memory: one flat object instead of a version with a dot and a
// stamp object of its own. A node may hold millions of keys, and per key the three objects cost
// about 150 bytes besides the key and the value; this form costs 80 (7 fields), and a version is
// made whole again (`unpack`) only where it leaves the replica: a read, a sync, a digest repair, a
// reshard transfer, the disk. Nothing outside replica.ts sees this form.

/** What `value` holds for a tombstone (a delete has no value). */
const TOMBSTONE: unique symbol = Symbol('tombstone');

/** Fields a version rarely has: kept out of line, so most stored versions do without them. */
interface Rare {
  past?: EpochClocks;
  origin?: Origin;
  /** The dot's node, when it is not the stamp's (every write's dot and stamp name its coordinator). */
  dotNode?: NodeAddress;
}

export class StoredVersion {
  /** The JSON value; TOMBSTONE for a delete. */
  readonly value: unknown;
  /** The stamp's node, and the dot's unless `rare.dotNode` names another. */
  readonly node: NodeAddress;
  /** The dot's counter; null for a base version (no dot). */
  readonly counter: number | null;
  readonly lamport: number;
  /** The stamp's epoch; -1 when the stamp has none (absent means 0, but the form is kept as it came). */
  readonly epoch: number;
  readonly deps: ShardClocks;
  readonly rare: Rare | null;

  constructor(value: unknown, node: NodeAddress, counter: number | null, lamport: number, epoch: number, deps: ShardClocks, rare: Rare | null) {
    this.value = value;
    this.node = node;
    this.counter = counter;
    this.lamport = lamport;
    this.epoch = epoch;
    this.deps = deps;
    this.rare = rare;
  }

  get deleted(): boolean {
    return this.value === TOMBSTONE;
  }

  /** The dot's node; null for a base version. */
  get dotNode(): NodeAddress | null {
    return this.counter === null ? null : (this.rare?.dotNode ?? this.node);
  }
}

/**
 * `version` in the stored form. Node addresses point at the replica's one copy of each (`addresses`),
 * and an empty `deps` at EMPTY_SHARD_CLOCKS; no value changes.
 */
export function pack(version: Version, addresses: Interner): StoredVersion {
  const { dot, stamp } = version;
  const node = addresses.intern(stamp.node);
  let rare: Rare | null = null;
  if (version.past !== undefined) rare = { past: version.past };
  if (version.origin !== undefined) rare = { ...rare, origin: { ...version.origin, node: addresses.intern(version.origin.node) } };
  if (dot !== null && dot.node !== stamp.node) rare = { ...rare, dotNode: addresses.intern(dot.node) };
  const deps = version.deps === EMPTY_SHARD_CLOCKS || isEmptyRecord(version.deps) ? EMPTY_SHARD_CLOCKS : version.deps;
  return new StoredVersion(version.deleted ? TOMBSTONE : version.value, node, dot === null ? null : dot.counter, stamp.lamport, stamp.epoch ?? -1, deps, rare);
}

/**
 * The version `stored` holds for `key`, whole again: fields in the order a write's version has them
 * (`key, deleted, dot, stamp, deps`, then `past`, `value`, `origin` when present), so its JSON is
 * the same whichever path the version took into the replica.
 */
export function unpack(key: string, stored: StoredVersion): Version {
  const dotNode = stored.dotNode;
  const dot = dotNode === null ? null : { node: dotNode, counter: stored.counter as number };
  const stamp = stampOf(stored);
  const deleted = stored.value === TOMBSTONE;
  const rare = stored.rare;
  if (rare === null) return deleted ? { key, deleted, dot, stamp, deps: stored.deps } : { key, deleted, dot, stamp, deps: stored.deps, value: stored.value };
  const version: Version = { key, deleted, dot, stamp, deps: stored.deps };
  if (rare.past !== undefined) version.past = rare.past;
  if (!deleted) version.value = stored.value;
  if (rare.origin !== undefined) version.origin = { ...rare.origin };
  return version;
}

export function stampOf(stored: StoredVersion): Stamp {
  return stored.epoch === -1 ? { lamport: stored.lamport, node: stored.node } : { epoch: stored.epoch as Epoch, lamport: stored.lamport, node: stored.node };
}

/** compareStamps(stamp, stampOf(stored)), without making the stamp. */
export function compareToStored(stamp: Stamp, stored: StoredVersion): number {
  const epochA = stamp.epoch ?? 0;
  const epochB = stored.epoch === -1 ? 0 : stored.epoch;
  if (epochA !== epochB) return epochA - epochB;
  if (stamp.lamport !== stored.lamport) return stamp.lamport - stored.lamport;
  if (stamp.node === stored.node) return 0;
  return stamp.node < stored.node ? -1 : 1;
}

/** What a version contributes to its partition's digest (see versionHash): from its key, stamp and whether it is a tombstone. */
export function hashOfParts(key: string, lamport: number, node: string, deleted: boolean): number {
  return hash32(`${key}\u0000${lamport}\u0000${node}\u0000${deleted ? 1 : 0}`);
}

/** versionHash of the version `stored` holds for `key`. */
export function storedHash(key: string, stored: StoredVersion): number {
  return hashOfParts(key, stored.lamport, stored.node, stored.value === TOMBSTONE);
}
