import { assert } from './assert.ts';
import { REPAIR_BYTES_MAX } from './contract.ts';
import { versionBytes } from './json-value.ts';
import type { Replica } from './replica.ts';
import { PARTITION_COUNT, partitionOfKey } from './shard-map.ts';
import type { Clock, Epoch, NodeAddress, Stamp, Version } from './types.ts';
import { compareStamps } from './version-order.ts';
import { counterOf } from './vector-clock.ts';

// Anti-entropy between replicas of one shard: what a round exchanges, and when tombstones may go.
// The runtime runs the rounds (src/node/sync.ts); what they exchange is decided here.
//
// A round, asked by one replica of another (the peer), is a series of exchanges. Each exchange:
// we send our 1024 partition digests; the peer names the partitions whose digests differ (and sends
// no versions); we push the peer our versions of those partitions that it is not known to hold
// (repairPlan, PeerHoldings), about REPAIR_BYTES_MAX at most, and the peer merges them by version
// order (Replica.repair: never over a newer version, never a version of a collected or reflected
// delete). While an exchange pushed something, the next one follows at once; what differs after
// that is the peer's to push, in its own rounds. So a version crosses once, from a replica that
// holds it to one that lacks it: never back to the peer that pushed it to us, never twice to one peer.

/**
 * The answering side of a digest exchange: the partitions whose digests differ from the asker's,
 * in order (at most PARTITION_COUNT numbers). The answer carries no versions: the asker pushes its
 * own (repairPlan), and we push ours in our own rounds.
 */
export function digestAnswer(replica: Replica, digests: readonly number[]): { differing: number[] } {
  return { differing: differingPartitions(replica.digests(), digests) };
}

/** Partitions whose digest differs between two replicas' digests. */
export function differingPartitions(ours: readonly number[], theirs: readonly number[]): number[] {
  const out: number[] = [];
  for (let p = 0; p < PARTITION_COUNT; p++) if ((theirs[p] ?? 0) >>> 0 !== (ours[p] ?? 0) >>> 0) out.push(p);
  return out;
}

/** Every stored version (tombstones included) of the given partitions, by partition. */
export function versionsByPartition(replica: Replica, partitions: readonly number[]): Map<number, Version[]> {
  const out = new Map<number, Version[]>(partitions.map((p) => [p, []]));
  for (const version of replica.allVersions()) out.get(partitionOfKey(version.key))?.push(version);
  return out;
}

/** What one exchange pushes: whole partitions, about REPAIR_BYTES_MAX of versions at most. */
export interface RepairBatch {
  /** The partitions whose versions it pushes, in order. */
  partitions: number[];
  /** Our versions of them that the peer is not known to hold. */
  versions: Version[];
}

/** What to push the peer after one digest answer (see repairPlan). */
export interface RepairPlan {
  /** One exchange each, in order; none when there is nothing to push. */
  batches: RepairBatch[];
  /** Partitions with versions to push were left out (`exchangesMax`): the next round goes on with them. */
  more: boolean;
  /** Where the next plan starts: after the last partition taken when some were left out, else 0. */
  next: number;
}

/**
 * The asking side, after the peer named the partitions that differ: of those, starting at `cursor`
 * (where the last plan stopped, so a bound that is always hit still reaches every partition in
 * turn), our versions that the peer is not known to hold (`held`, see PeerHoldings), in batches of
 * at most about `bytesMax` of versions as pushed (pushedBytes; whole partitions, at least one), at
 * most `exchangesMax` batches. A partition with nothing to push is passed over. No batch: nothing to push.
 */
export function repairPlan(
  replica: Replica,
  differing: readonly number[],
  held: HeldBy,
  cursor: number,
  exchangesMax: number,
  bytesMax = REPAIR_BYTES_MAX,
): RepairPlan {
  assert(Number.isInteger(cursor) && cursor >= 0 && cursor < PARTITION_COUNT, 'a repair cursor names a partition');
  assert(Number.isInteger(exchangesMax) && exchangesMax >= 1, 'a repair plan may take at least one exchange');
  const start = differing.findIndex((p) => p >= cursor);
  const order = start <= 0 ? differing : [...differing.slice(start), ...differing.slice(0, start)];
  const byPartition = versionsByPartition(replica, order);
  const batches: RepairBatch[] = [];
  let batch: RepairBatch | null = null;
  let bytes = 0;
  let more = false;
  let last = -1;
  for (const partition of order) {
    const fresh = (byPartition.get(partition) ?? []).filter((version) => !held.has(version));
    if (fresh.length === 0) continue;
    let size = 0;
    for (const version of fresh) size += pushedBytes(version);
    if (batch === null || bytes + size > bytesMax) {
      if (batches.length === exchangesMax) {
        more = true;
        break;
      }
      batch = { partitions: [], versions: [] };
      batches.push(batch);
      bytes = 0;
    }
    batch.partitions.push(partition);
    for (const version of fresh) batch.versions.push(version);
    bytes += size;
    last = partition;
  }
  assert(!more || last >= 0, 'a plan with more to come took at least one partition');
  return { batches, more, next: more ? (last + 1) % PARTITION_COUNT : 0 };
}

/**
 * About the bytes a version takes in a push, which names it by key, value, stamp and what it has
 * besides (src/node/repair-wire.ts): without field names, so a small version costs about its key
 * and value. The value is walked only when it is not a string.
 */
export function pushedBytes(version: Version): number {
  const { value, dot, deps, past, origin } = version;
  let bytes = version.key.length + 24 + (typeof value === 'string' ? value.length + 2 : value === undefined ? 0 : versionBytes(value));
  if (dot !== null) bytes += 16;
  for (const shard in deps) {
    bytes += versionBytes(deps[shard]) + shard.length;
  }
  if (past !== undefined) bytes += versionBytes(past);
  if (origin !== undefined) bytes += versionBytes(origin);
  return bytes;
}

/** Whether a peer is known to hold a version (see PeerHoldings.of). */
export interface HeldBy {
  has(version: Version): boolean;
}

const NOTHING_HELD: HeldBy = { has: () => false };

/**
 * Keys known per peer at most; past it, what that peer is known to hold is forgotten and learned
 * again (a repair larger than this pushes some versions twice, no more). About 50 bytes a key,
 * held until forgotten: a few MB a peer, not a second copy of a large store's keys.
 */
export const HELD_KEYS_MAX = 1 << 17;
/**
 * What a peer is known to hold is forgotten this long after it was first learned, and learned
 * again: should a peer have lost versions without a restart, they reach it again after this long.
 */
export const HELD_FOR_MS = 60_000;

/**
 * What each shard peer is known to hold, learned from anti-entropy both ways: the versions it
 * pushed us, and those we pushed it that it acknowledged. Such a version (or an older one of its
 * key) is not pushed to that peer again. Per key, the stamp of the version it holds (a stamp names
 * one version of a key): a key whose version here changed since is pushed again. Known per peer
 * incarnation and epoch: a restarted peer (it may have lost what it held), or another epoch,
 * starts from nothing; and all of it is forgotten HELD_FOR_MS after it was first learned. A peer
 * only ever replaces a version by one that wins over it, so what it held it holds, or better; a
 * tombstone it collected is refused if pushed again anyway. Bounded: HELD_KEYS_MAX keys a peer.
 */
export class PeerHoldings {
  private readonly peers = new Map<NodeAddress, { epoch: Epoch; incarnation: string | null; sinceMs: number; stamps: Map<string, Stamp> }>();

  /** `peer` (of `incarnation`, at `epoch`) holds these versions, or ones that win over them. */
  learn(peer: NodeAddress, epoch: Epoch, incarnation: string | null, versions: readonly Version[], nowMs: number): void {
    let held = this.current(peer, epoch, incarnation, nowMs);
    if (held === null) {
      // Peers known at earlier epochs are of no use any more.
      for (const [other, known] of this.peers) if (known.epoch < epoch) this.peers.delete(other);
      held = { epoch, incarnation, sinceMs: nowMs, stamps: new Map() };
      this.peers.set(peer, held);
    }
    if (held.stamps.size + versions.length > HELD_KEYS_MAX) held.stamps.clear();
    for (const version of versions.length > HELD_KEYS_MAX ? versions.slice(0, HELD_KEYS_MAX) : versions) {
      const known = held.stamps.get(version.key);
      if (known === undefined || compareStamps(version.stamp, known) > 0) held.stamps.set(version.key, version.stamp);
    }
  }

  /** What `peer` (of `incarnation`, at `epoch`) is known to hold. */
  of(peer: NodeAddress, epoch: Epoch, incarnation: string | null, nowMs: number): HeldBy {
    const held = this.current(peer, epoch, incarnation, nowMs);
    if (held === null) return NOTHING_HELD;
    const stamps = held.stamps;
    return {
      has: (version) => {
        const known = stamps.get(version.key);
        return known !== undefined && compareStamps(known, version.stamp) >= 0;
      },
    };
  }

  /** Keys known of `peer` (tests). */
  size(peer: NodeAddress): number {
    return this.peers.get(peer)?.stamps.size ?? 0;
  }

  private current(peer: NodeAddress, epoch: Epoch, incarnation: string | null, nowMs: number) {
    const held = this.peers.get(peer);
    if (held === undefined) return null;
    if (nowMs - held.sinceMs >= HELD_FOR_MS) {
      // Forgotten: its memory goes at the next round's look, not at the next push.
      this.peers.delete(peer);
      return null;
    }
    return held.epoch === epoch && held.incarnation === incarnation ? held : null;
  }
}
