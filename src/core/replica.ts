import { hash32 } from './hash.ts';
import { versionBytes } from './json-value.ts';
import { PARTITION_COUNT, partitionOfKey } from './shard-map.ts';
import { OLD_EPOCHS_MAX } from './causal-metadata.ts';
import type { Clock, Dot, Epoch, EpochClocks, NodeAddress, ShardClocks, ShardId, Version } from './types.ts';
import { clockCovers, counterOf, epochClocksCover, epochClocksWithin, mergeEpochClocks, withDot } from './vector-clock.ts';
import { compareStamps, supersedes } from './version-order.ts';

/**
 * Collected tombstones remembered per replica, so an old version arriving late cannot bring a deleted
 * key back. Beyond this many, the oldest are forgotten (about 100 bytes each).
 */
export const GRAVEYARD_MAX = 100_000;

/** Bytes of early replicated writes buffered per replica by default; beyond, dropped (pull sync repairs). */
export const PENDING_BYTES_MAX = 64 * 1024 * 1024;

export interface ReplicaOptions {
  self: NodeAddress;
  shard: ShardId;
  /** The epoch of the shard map this replica belongs to; it stamps its writes with it. */
  epoch?: Epoch;
  /** Early arrivals kept until their causal past is applied; beyond it they are dropped and later pulled by sync. */
  pendingMax: number;
  /** Bytes (JSON) of early writes buffered at most; default PENDING_BYTES_MAX. */
  pendingBytesMax?: number;
  /** Lamport clock to start from, so timestamps never go back when a node rebuilds its replica. */
  lamport?: number;
}

export interface DeliverResult {
  applied: number;
  duplicates: number;
  buffered: number;
  dropped: number;
}

/**
 * One node's copy of one shard in one epoch: the versions it stores and the vector clock of the
 * writes they reflect. Invariant: every write with a dot at or below `applied` is reflected in the
 * store (stored, or replaced by a version that wins over it), and every stored dot is at or below
 * `applied`. Writes from a peer are applied in causal order: a write waits in `pending` until the
 * writes it depended on in this shard are applied.
 */
export class Replica {
  readonly self: NodeAddress;
  readonly shard: ShardId;
  readonly epoch: Epoch;
  readonly pendingMax: number;
  readonly pendingBytesMax: number;
  private readonly store = new Map<string, Version>();
  private appliedClock: Clock = {};
  private lamportClock = 0;
  /** origin -> counter -> version waiting for its causal past. */
  private readonly pending = new Map<NodeAddress, Map<number, Version>>();
  private pendingSize = 0;
  private pendingBytes = 0;
  /** Keys whose stored version changed since the runtime last took them (to persist them). */
  private readonly dirty = new Set<string>();
  /**
   * Per partition, the sum (mod 2^32) of a hash of each stored version's key and stamp. Replicas
   * holding the same winning versions have equal digests, whatever path the versions took;
   * anti-entropy compares these 1024 numbers and repairs only the partitions that differ.
   */
  private readonly digestSums = new Uint32Array(PARTITION_COUNT);
  /** The highest `everywhere` clock tombstones were collected under: every replica reflects it. */
  private collectedUpTo: Clock = {};
  /** The tombstones collected last (at most GRAVEYARD_MAX, oldest dropped first), by key. */
  private readonly graveyard = new Map<string, Version>();
  /**
   * Which writes of earlier epochs the store reflects, for this shard's keys: epoch -> old shard ->
   * clock. It grows with reshard transfers (each sender's applied clock), late transfers from a node
   * that missed the reshard, and full copies from a peer. A client that depends on an old write
   * this does not reflect waits: the write is still on its way from a node that was cut off.
   */
  private baseClocks: EpochClocks = {};

  constructor(options: ReplicaOptions) {
    this.self = options.self;
    this.shard = options.shard;
    this.epoch = options.epoch ?? 0;
    this.pendingMax = options.pendingMax;
    this.pendingBytesMax = options.pendingBytesMax ?? PENDING_BYTES_MAX;
    this.lamportClock = options.lamport ?? 0;
  }

  get applied(): Readonly<Clock> {
    return this.appliedClock;
  }

  get lamport(): number {
    return this.lamportClock;
  }

  get pendingCount(): number {
    return this.pendingSize;
  }

  get size(): number {
    return this.store.size;
  }

  /** Live keys, tombstones excluded. */
  liveKeyCount(): number {
    let live = 0;
    for (const version of this.store.values()) if (!version.deleted) live++;
    return live;
  }

  get(key: string): Version | undefined {
    return this.store.get(key);
  }

  /** True when this replica reflects every write of this shard that `need` names. */
  covers(need: Clock): boolean {
    return clockCovers(this.appliedClock, need);
  }

  /** What the base reflects of earlier epochs. */
  get base(): Readonly<EpochClocks> {
    return this.baseClocks;
  }

  /** True when the base reflects every write of earlier epochs that `need` names. */
  coversOld(need: EpochClocks): boolean {
    return epochClocksCover(this.baseClocks, need);
  }

  /** The store now reflects these writes of earlier epochs (their versions were merged). */
  addBase(reflected: EpochClocks): void {
    this.baseClocks = epochClocksWithin(mergeEpochClocks(this.baseClocks, reflected), this.epoch - OLD_EPOCHS_MAX, this.epoch - 1);
  }

  /**
   * A write coordinated here. `deps` is what the client had seen in this epoch; the caller has
   * already checked that this replica covers deps[shard].
   */
  write(key: string, change: { deleted: false; value: unknown } | { deleted: true }, deps: ShardClocks, past: EpochClocks = {}): Version {
    const counter = (this.appliedClock[this.self] ?? 0) + 1;
    this.lamportClock += 1;
    const version: Version = {
      key,
      deleted: change.deleted,
      dot: { node: this.self, counter },
      stamp: { epoch: this.epoch, lamport: this.lamportClock, node: this.self },
      deps,
    };
    if (Object.keys(past).length > 0) version.past = past;
    if (!change.deleted) version.value = change.value;
    this.put(version);
    this.appliedClock = { ...this.appliedClock, [this.self]: counter };
    return version;
  }

  /** Writes pushed by peers, in any order, possibly duplicated. */
  deliver(versions: readonly Version[]): DeliverResult {
    const result: DeliverResult = { applied: 0, duplicates: 0, buffered: 0, dropped: 0 };
    for (const version of versions) {
      const dot = version.dot;
      if (dot === null) {
        // Base versions only travel in reshard transfers and full syncs, never in pushes.
        result.dropped++;
        continue;
      }
      if ((this.appliedClock[dot.node] ?? 0) >= dot.counter || this.isPending(dot)) {
        result.duplicates++;
        continue;
      }
      if (this.deliverable(version, dot)) {
        this.apply(version, dot);
        result.applied++;
        result.applied += this.drainPending();
      } else if (this.addPending(version, dot)) {
        result.buffered++;
      } else {
        result.dropped++;
      }
    }
    return result;
  }

  /**
   * What a peer whose clock is `since` lacks: every stored version with a newer dot (and base
   * versions with `includeBase`). With `collected`, also the tombstones collected here with a newer
   * dot: the peer takes our clock, and may hold an older version of such a key that the tombstone
   * must still replace there (it was a member we did not count yet when we collected).
   */
  versionsSince(since: Clock, includeBase: boolean, collected = false): Version[] {
    const out: Version[] = [];
    for (const version of this.store.values()) {
      if (version.dot === null ? includeBase : version.dot.counter > (since[version.dot.node] ?? 0)) out.push(version);
    }
    if (collected) {
      for (const [key, tombstone] of this.graveyard) {
        const dot = tombstone.dot;
        if (dot !== null && !this.store.has(key) && dot.counter > (since[dot.node] ?? 0)) out.push(tombstone);
      }
    }
    return out;
  }

  /**
   * Takes a peer's state: versions it had that we lacked, and its clock, both read at one instant.
   * Since the peer reflects every write up to its clock, after merging so do we. With `peerBase`,
   * the versions include the peer's whole base, so we reflect what its base does too. The peer's
   * Lamport clock comes along: the writes we now reflect include tombstones it collected, whose
   * stamps we never see, and our next write must still be stamped above them.
   */
  mergeState(versions: readonly Version[], peerApplied: Clock, peerBase?: EpochClocks, peerLamport = 0): void {
    if (peerLamport > this.lamportClock) this.lamportClock = peerLamport;
    // What this replica collected stays collected: the peer has not collected it yet.
    for (const version of versions) if (!this.isCollected(version)) this.put(version);
    if (peerBase !== undefined) this.addBase(peerBase);
    const merged: Clock = { ...this.appliedClock };
    for (const [node, counter] of Object.entries(peerApplied)) {
      if (counter > counterOf(merged, node)) merged[node] = counter;
    }
    this.appliedClock = merged;
    this.prunePending();
    this.drainPending();
  }

  /**
   * Base data of a new epoch (from a reshard transfer, already in base form: see asBase), merged by
   * version order, and what of earlier epochs it reflects.
   */
  mergeBase(versions: Iterable<Version>, reflected: EpochClocks): void {
    for (const version of versions) this.put(version);
    this.addBase(reflected);
  }

  allVersions(): IterableIterator<Version> {
    return this.store.values();
  }

  /**
   * What changed since the last call: versions to store, and keys no longer stored (collected
   * tombstones). The runtime persists them with `applied` and `lamport`.
   */
  takeDirty(): { versions: Version[]; removed: string[] } {
    const versions: Version[] = [];
    const removed: string[] = [];
    for (const key of this.dirty) {
      const version = this.store.get(key);
      if (version) versions.push(version);
      else removed.push(key);
    }
    this.dirty.clear();
    return { versions, removed };
  }

  /** The partition digests (see digestSums). */
  digests(): number[] {
    return Array.from(this.digestSums);
  }

  /** Partitions whose digest differs from a peer's. */
  differingPartitions(peerDigests: readonly number[]): number[] {
    const out: number[] = [];
    for (let p = 0; p < PARTITION_COUNT; p++) if ((peerDigests[p] ?? 0) >>> 0 !== this.digestSums[p]) out.push(p);
    return out;
  }

  /** Every stored version (tombstones included) of the given partitions, by partition. */
  versionsByPartition(partitions: readonly number[]): Map<number, Version[]> {
    const out = new Map<number, Version[]>(partitions.map((p) => [p, []]));
    for (const version of this.store.values()) out.get(partitionOfKey(version.key))?.push(version);
    return out;
  }

  /** Every stored version (tombstones included) of the given partitions. */
  versionsInPartitions(partitions: readonly number[]): Version[] {
    return [...this.versionsByPartition(partitions).values()].flat();
  }

  /**
   * Versions from anti-entropy, merged by version order. The clock is left alone: it only ever
   * claims what was applied in causal order or taken with a peer's whole state. A repaired value
   * whose dependencies this replica lacks is still safe to serve, because the reader's metadata then
   * names those dependencies and every replica checks them.
   */
  repair(versions: readonly Version[]): number {
    let changed = 0;
    for (const version of versions) {
      if (this.isCollected(version)) continue;
      if (this.put(version)) changed++;
    }
    return changed;
  }

  /**
   * A version of a key whose tombstone this replica collected, no newer than that tombstone: it lost
   * to the tombstone, so it is not stored (put). Such a version still arrives after the collection:
   * a write concurrent with the delete that reaches this replica late (collection waits for the
   * tombstone to be everywhere, not for every concurrent write to be here), or an old version from a
   * node that missed a reshard. Stored, it would bring the deleted key back. (Both found by the
   * simulator.)
   */
  private isBuried(version: Version): boolean {
    const stamp = this.graveyard.get(version.key)?.stamp;
    return stamp !== undefined && !this.store.has(version.key) && compareStamps(version.stamp, stamp) <= 0;
  }

  /**
   * A base version whose write the base already reflects (see `base`): this replica stores it or
   * something that won over it, perhaps a tombstone since collected. A late copy of it (a node that
   * missed a reshard hands its old replica over) is old news; stored, it could bring a deleted key
   * back, and unlike the graveyard this survives a restart and a reshard. (Found by the simulator.)
   */
  private reflectsOrigin(version: Version): boolean {
    const origin = version.origin;
    // A tombstone is taken all the same: it brings nothing back, and a replica that reflects it by
    // having collected it would otherwise differ for ever from peers that still hold it.
    if (version.dot !== null || version.deleted || origin === undefined) return false;
    return (this.baseClocks[String(origin.epoch)]?.[origin.shard]?.[origin.node] ?? 0) >= origin.counter;
  }

  /**
   * A tombstone this replica no longer stores and that every replica reflected when it last
   * collected (so it collected it, or would have). Taking it back from a peer that has not collected it yet would only start
   * it over; left alone, the peer collects it too. (Without this, tombstones bounced between
   * replicas in anti-entropy for ever, and their digests never agreed.)
   */
  private isCollected(version: Version): boolean {
    const dot = version.dot;
    return version.deleted && dot !== null && !this.store.has(version.key) && (this.collectedUpTo[dot.node] ?? 0) >= dot.counter;
  }

  /**
   * Drops tombstones that every replica of the shard already reflects (`everywhere` is the pointwise
   * minimum of all members' applied clocks): no replica holds an older version of the key that the
   * tombstone would still have to win over. Base tombstones (from a reshard) are kept. Returns how many.
   * `remember` false (only the planted bug forget-tombstones) keeps no trace of them.
   */
  collectTombstones(everywhere: Clock, remember = true): number {
    let collected = 0;
    const horizon: Clock = { ...this.collectedUpTo };
    for (const [node, counter] of Object.entries(everywhere)) if (counter > counterOf(horizon, node)) horizon[node] = counter;
    if (remember) this.collectedUpTo = horizon;
    for (const [key, version] of this.store) {
      if (!version.deleted || version.dot === null) continue;
      if (version.dot.counter > (everywhere[version.dot.node] ?? 0)) continue;
      this.store.delete(key);
      this.graveyard.delete(key);
      if (remember) this.graveyard.set(key, version);
      if (this.graveyard.size > GRAVEYARD_MAX) this.graveyard.delete(this.graveyard.keys().next().value as string);
      this.digestSums[partitionOfKey(key)] = ((this.digestSums[partitionOfKey(key)] as number) - versionHash(version)) >>> 0;
      this.dirty.add(key);
      collected++;
    }
    return collected;
  }

  private put(version: Version): boolean {
    if (version.stamp.lamport > this.lamportClock) this.lamportClock = version.stamp.lamport;
    const current = this.store.get(version.key);
    if (!supersedes(version, current) || this.isBuried(version) || this.reflectsOrigin(version)) return false;
    const partition = partitionOfKey(version.key);
    let sum = this.digestSums[partition] as number;
    if (current) sum -= versionHash(current);
    this.digestSums[partition] = (sum + versionHash(version)) >>> 0;
    this.store.set(version.key, version);
    this.dirty.add(version.key);
    return true;
  }

  private deliverable(version: Version, dot: Dot): boolean {
    if ((this.appliedClock[dot.node] ?? 0) !== dot.counter - 1) return false;
    const deps = version.deps[this.shard];
    return deps === undefined || clockCovers(this.appliedClock, withoutNode(deps, dot.node));
  }

  private apply(version: Version, dot: Dot): void {
    this.put(version);
    this.appliedClock = { ...this.appliedClock, [dot.node]: dot.counter };
  }

  private isPending(dot: Dot): boolean {
    return this.pending.get(dot.node)?.has(dot.counter) ?? false;
  }

  /** Buffers an early arrival within the count and byte bounds; false when it does not fit. */
  private addPending(version: Version, dot: Dot): boolean {
    if (this.pendingSize >= this.pendingMax) return false;
    const bytes = versionBytes(version);
    if (this.pendingBytes + bytes > this.pendingBytesMax) return false;
    let byCounter = this.pending.get(dot.node);
    if (!byCounter) {
      byCounter = new Map();
      this.pending.set(dot.node, byCounter);
    }
    byCounter.set(dot.counter, version);
    this.pendingSize++;
    this.pendingBytes += bytes;
    return true;
  }

  private removePending(byCounter: Map<number, Version>, counter: number, version: Version): void {
    byCounter.delete(counter);
    this.pendingSize--;
    this.pendingBytes -= versionBytes(version);
  }

  /** Applies every buffered write whose causal past is now applied; returns how many. */
  private drainPending(): number {
    let applied = 0;
    let progress = true;
    // Each round applies at least one write or stops, so rounds are bounded by the buffer's size.
    while (progress && this.pendingSize > 0) {
      progress = false;
      for (const [origin, byCounter] of this.pending) {
        const next = (this.appliedClock[origin] ?? 0) + 1;
        const head = byCounter.get(next);
        if (!head || !head.dot || !this.deliverable(head, head.dot)) continue;
        this.removePending(byCounter, next, head);
        if (byCounter.size === 0) this.pending.delete(origin);
        this.apply(head, head.dot);
        applied++;
        progress = true;
      }
    }
    return applied;
  }

  /** Drops buffered writes that a merged state already reflects. */
  private prunePending(): void {
    for (const [origin, byCounter] of this.pending) {
      const reflected = this.appliedClock[origin] ?? 0;
      for (const [counter, version] of byCounter) {
        if (counter <= reflected) this.removePending(byCounter, counter, version);
      }
      if (byCounter.size === 0) this.pending.delete(origin);
    }
  }
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
    deps: {},
    past: mergeEpochClocks(version.past ?? {}, { [epoch]: own }),
    origin: { epoch: version.stamp.epoch ?? 0, shard, node: version.dot.node, counter: version.dot.counter },
  };
}

/** What a version contributes to its partition's digest: the same for a version wherever it is stored. */
function versionHash(version: Version): number {
  return hash32(`${version.key}\u0000${version.stamp.lamport}\u0000${version.stamp.node}\u0000${version.deleted ? 1 : 0}`);
}

function withoutNode(clock: Clock, node: NodeAddress): Clock {
  if (!(node in clock)) return clock;
  const { [node]: _omit, ...rest } = clock;
  return rest;
}
