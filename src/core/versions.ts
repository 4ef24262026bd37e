import { hashOfParts } from './stored-version.ts';
import { FIRST_EPOCH } from './shard-map.ts';
import { EMPTY_SHARD_CLOCKS, isEmptyRecord } from './intern.ts';
import type { Dot, EpochClocks, ShardClocks, ShardId, Stamp, Version } from './types.ts';
import { mergeEpochClocks, withDot } from './vector-clock.ts';

// Versions as the replica and the disk see them: the form a version takes in a later epoch, and
// the hash and digest that tell two stores apart.

/**
 * A checksum of a replica's whole store: how many versions it holds, and the sum (mod 2^32) of
 * their hashes (key, stamp, tombstone or not; see versionHash). Kept up to date with every change,
 * so it costs nothing to read; durable storage keeps it with each commit and checks it on load.
 */
export interface StoreDigest {
  count: number;
  sum: number;
}

/**
 * A version of `shard` as it enters a later epoch: no dot or deps (those belong to its own epoch),
 * and its dot and deps kept in `past` under that epoch, so a reader still depends on them.
 */
export function asBase(version: Version, shard: ShardId): Version {
  if (version.dot === null) return version;
  const epoch = String(version.stamp.epoch ?? 0);
  const own = withDot(version.deps, shard, version.dot.node, version.dot.counter);
  return {
    ...version,
    dot: null,
    deps: EMPTY_SHARD_CLOCKS,
    // Most versions have no past of their own: their past is just this epoch's (a copy of it).
    past: version.past === undefined ? { [epoch]: own === version.deps ? { ...own } : own } : mergeEpochClocks(version.past, { [epoch]: own }),
    origin: { epoch: version.stamp.epoch ?? FIRST_EPOCH, shard, node: version.dot.node, counter: version.dot.counter },
  };
}

/**
 * The digest a replica storing exactly these versions (one per key) has: what a durable store
 * recomputes from what it loaded, to compare with the digest committed with it. O(n).
 */
export function digestOfVersions(versions: Iterable<Version>): StoreDigest {
  let count = 0;
  let sum = 0;
  for (const version of versions) {
    count++;
    sum = (sum + versionHash(version)) >>> 0;
  }
  return { count, sum };
}

/** What a version contributes to its partition's digest: the same for a version wherever it is stored. */
export function versionHash(version: Version): number {
  return hashOfParts(version.key, version.stamp.lamport, version.stamp.node, version.deleted);
}


/**
 * A write's version, made whole in one object literal: fields added one by one after a literal
 * land in a separate property array (about 40 bytes more per version). The fields are in the order
 * they always were (`key, deleted, dot, stamp, deps`, then `past` if any, then `value` unless a
 * tombstone), so the version's JSON, on the wire and on disk, is byte for byte what it was.
 */
export function newVersion(
  key: string,
  change: { deleted: false; value: unknown } | { deleted: true },
  dot: Dot,
  stamp: Stamp,
  deps: ShardClocks,
  past: EpochClocks,
): Version {
  const deleted = change.deleted;
  if (isEmptyRecord(past)) return change.deleted ? { key, deleted, dot, stamp, deps } : { key, deleted, dot, stamp, deps, value: change.value };
  return change.deleted ? { key, deleted, dot, stamp, deps, past } : { key, deleted, dot, stamp, deps, past, value: change.value };
}

