import { assert } from './assert.ts';
import { FIRST_EPOCH, PARTITION_COUNT, partitionOfKey } from './shard-map.ts';
import { OLD_EPOCHS_MAX } from './causal-metadata.ts';
import type { Clock, Dot, Epoch, EpochClocks, NodeAddress, ShardClocks, ShardId, Version } from './types.ts';
import { clockCovers, counterOf, epochClocksCover, epochClocksWithin, mergeClocks, mergeEpochClocks, withoutNode } from './vector-clock.ts';
import { compareStamps } from './version-order.ts';
import { PendingBuffer } from './pending-buffer.ts';
import { Graveyard } from './graveyard.ts';
import { newVersion, versionHash, type StoreDigest } from './versions.ts';
import { compareToStored, pack, storedHash, unpack, type StoredVersion } from './stored-version.ts';
import { ADDRESSES_INTERNED_MAX, EMPTY_SHARD_CLOCKS, Interner, isEmptyRecord } from './intern.ts';

export { asBase, digestOfVersions, type StoreDigest } from './versions.ts';

export { GRAVEYARD_MAX } from './graveyard.ts';

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
  /** The collection horizon it had (a restart from disk): what its collected tombstones reflect. */
  collected?: Clock;
  /** Collected tombstones remembered at most (default GRAVEYARD_MAX). */
  graveyardMax?: number;
}


/** What changed since the runtime last took the changes (see takeDirty). */
export interface DirtyChanges {
  versions: Version[];
  removed: string[];
  /** Tombstones collected without a member (the graveyard keeps them: see Graveyard), and keys no longer kept. */
  kept: Version[];
  unkept: string[];
  /** The whole store's digest with these changes made. */
  digest: StoreDigest;
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
 * `applied`, but for one exception: a version anti-entropy `repair` took ahead of the clock (the
 * clock claims only what was applied in causal order or taken with a peer's whole state; that
 * version's write is applied at the replica it came from, and reaches this one later as a
 * duplicate). A state taken from a peer may hold such versions of the peer's, so neither a sync
 * nor a restore from disk can require every stored dot to be covered either. Writes from a peer
 * are applied in causal order: a write waits in `pending` until the writes it depended on in this
 * shard are applied.
 *
 * Checked as they happen, at O(1) per changed version (see `assert` calls): a write coordinated
 * here wins over what its key held and never reuses a dot of this node; `applied` moves by one
 * write at a time per origin; a stored version replaces only one it supersedes, never from a
 * later epoch than the replica's; each early arrival is buffered once and the buffer's count and
 * bytes stay exact (its bounds are guarded where a write is buffered). `checkInvariants` checks the
 * whole state at O(n), for tests and for a replica just rebuilt. The first half of the invariant
 * (every write at or below `applied` is reflected) needs the writes of other nodes to check: the
 * simulator's checker judges it.
 */
export class Replica {
  readonly self: NodeAddress;
  readonly shard: ShardId;
  readonly epoch: Epoch;
  /** Key -> its version, in the flat stored form (see stored-version.ts); made whole where it leaves. */
  private readonly store = new Map<string, StoredVersion>();
  private appliedClock: Clock = {};
  private lamportClock = 0;
  /** Writes that arrived before their causal past (see PendingBuffer). */
  private readonly buffer: PendingBuffer;
  /** Keys whose stored version changed since the runtime last took them (to persist them). */
  private readonly dirty = new Set<string>();
  /**
   * Per partition, the sum (mod 2^32) of a hash of each stored version's key and stamp. Replicas
   * holding the same winning versions have equal digests, whatever path the versions took;
   * anti-entropy compares these 1024 numbers and repairs only the partitions that differ.
   */
  private readonly digestSums = new Uint32Array(PARTITION_COUNT);
  /** The sum (mod 2^32) of digestSums: with the store's size, the StoreDigest. */
  private digestTotal = 0;
  /** The highest `everywhere` clock tombstones were collected under: every replica reflects it. */
  private collectedUpTo: Clock = {};
  /** The tombstones collected last (see Graveyard): kept ones are restored, and released, from outside. */
  readonly graveyard: Graveyard;
  /**
   * Which writes of earlier epochs the store reflects, for this shard's keys: epoch -> old shard ->
   * clock. It grows with reshard transfers (each sender's applied clock), late transfers from a node
   * that missed the reshard, and full copies from a peer. A client that depends on an old write
   * this does not reflect waits: the write is still on its way from a node that was cut off.
   */
  private baseClocks: EpochClocks = {};
  /** One copy of each node address the stored versions name (see pack). */
  private readonly addresses = new Interner(ADDRESSES_INTERNED_MAX);

  constructor(options: ReplicaOptions) {
    this.self = options.self;
    this.shard = options.shard;
    this.epoch = options.epoch ?? FIRST_EPOCH;
    this.buffer = new PendingBuffer(options.pendingMax, options.pendingBytesMax ?? PENDING_BYTES_MAX);
    this.lamportClock = options.lamport ?? 0;
    this.collectedUpTo = { ...(options.collected ?? {}) };
    this.graveyard = new Graveyard(options.graveyardMax);
    assert(Number.isSafeInteger(this.lamportClock) && this.lamportClock >= 0, 'a replica starts from a Lamport time that is a natural number');
  }

  get applied(): Readonly<Clock> {
    return this.appliedClock;
  }

  get lamport(): number {
    return this.lamportClock;
  }

  /**
   * The collection horizon: the highest clock tombstones were collected under. A replica whose
   * applied clock does not cover a peer's horizon may hold versions that tombstones collected there
   * deleted, and must not merge the peer's state into its own (see ReplicationCore.onSyncResponse).
   */
  get collected(): Readonly<Clock> {
    return this.collectedUpTo;
  }

  /** The dot of every stored tombstone (null: a base tombstone, which has none). */
  tombstones(): (Dot | null)[] {
    const out: (Dot | null)[] = [];
    for (const s of this.store.values()) if (s.deleted) out.push(s.dotNode === null ? null : { node: s.dotNode, counter: s.counter as number });
    return out;
  }

  get pendingCount(): number {
    return this.buffer.size;
  }

  get size(): number {
    return this.store.size;
  }

  /** Live keys, tombstones excluded. */
  liveKeyCount(): number {
    let live = 0;
    for (const stored of this.store.values()) if (!stored.deleted) live++;
    return live;
  }

  get(key: string): Version | undefined {
    const stored = this.store.get(key);
    return stored === undefined ? undefined : unpack(key, stored);
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
    const replaced = this.store.get(key);
    // Own dots are never reused: a peer that has the old write would take the new one for a
    // duplicate and drop it. (Can only break if this node lost writes it had sent: a restart with
    // no disk that found no peer to copy its shard from.)
    assert(replaced?.dotNode !== this.self || (replaced.counter as number) < counter, () => `write of ${key} reuses dot ${this.self}#${counter}, which the key already holds`);
    this.lamportClock += 1;
    const version = newVersion(
      key,
      change,
      { node: this.self, counter },
      { epoch: this.epoch, lamport: this.lamportClock, node: this.self },
      isEmptyRecord(deps) ? EMPTY_SHARD_CLOCKS : deps,
      past,
    );
    // Its stamp is above every stamp this replica ever saw (put raises the Lamport clock for each),
    // in the replica's own epoch, which no stored version is later than: it wins.
    const stored = this.put(version);
    assert(stored, () => `write of ${key} at lamport ${this.lamportClock} lost to a version it should supersede`);
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
      if ((this.appliedClock[dot.node] ?? 0) >= dot.counter || this.buffer.has(dot)) {
        result.duplicates++;
        continue;
      }
      if (this.deliverable(version, dot)) {
        this.apply(version, dot);
        result.applied++;
        result.applied += this.drainPending();
      } else if (this.buffer.add(version, dot, this.appliedClock)) {
        result.buffered++;
      } else {
        result.dropped++;
      }
    }
    return result;
  }

  /**
   * What a peer whose clock is `since` lacks: every stored version with a newer dot (and base
   * versions with `base`). With `collected`, also the tombstones collected here with a newer
   * dot: the peer takes our clock, and may hold an older version of such a key that the tombstone
   * must still replace there (it was a member we did not count yet when we collected).
   */
  versionsSince(since: Clock, { base, collected = false }: { base: boolean; collected?: boolean }): Version[] {
    const out: Version[] = [];
    for (const [key, stored] of this.store) {
      const dotNode = stored.dotNode;
      if (dotNode === null ? base : (stored.counter as number) > (since[dotNode] ?? 0)) out.push(unpack(key, stored));
    }
    if (collected) out.push(...this.graveyard.newerThan(since, (key) => this.store.has(key)));
    return out;
  }

  /**
   * Takes a peer's state: versions it had that we lacked, and its clock, both read at one instant.
   * Since the peer reflects every write up to its clock, after merging so do we. With `peerBase`,
   * the versions include the peer's whole base, so we reflect what its base does too. The peer's
   * Lamport clock comes along: the writes we now reflect include tombstones it collected, whose
   * stamps we never see, and our next write must still be stamped above them.
   */
  mergeState(versions: readonly Version[], peerApplied: Clock, peerBase?: EpochClocks, peerLamport = 0, peerCollected?: Clock): void {
    if (peerLamport > this.lamportClock) this.lamportClock = peerLamport;
    // What this replica collected stays collected: the peer has not collected it yet.
    for (const version of versions) if (!this.isCollected(version)) this.put(version);
    if (peerBase !== undefined) this.addBase(peerBase);
    this.appliedClock = mergeClocks(this.appliedClock, peerApplied);
    // What the peer collected, this replica now reflects too (it took the peer's clock): a stale
    // replica must learn it from here as well. The caller checked that it applied all of it
    // (ReplicationCore.onSyncResponse), or the replica was empty.
    if (peerCollected !== undefined) this.collectedUpTo = mergeClocks(this.collectedUpTo, peerCollected);
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

  *allVersions(): IterableIterator<Version> {
    for (const [key, stored] of this.store) yield unpack(key, stored);
  }

  /** Keys changed since the last takeDirty. */
  get dirtyCount(): number {
    return this.dirty.size + this.graveyard.keptChangeCount;
  }

  /** What changed since the last call: versions to store, keys no longer stored (collected tombstones). */
  takeDirty(): DirtyChanges {
    const versions: Version[] = [];
    const removed: string[] = [];
    for (const key of this.dirty) {
      const stored = this.store.get(key);
      if (stored) versions.push(unpack(key, stored));
      else removed.push(key);
    }
    this.dirty.clear();
    const kept: Version[] = [];
    const unkept: string[] = [];
    for (const [key, tombstone] of this.graveyard.takeKeptChanges()) {
      if (tombstone === null) unkept.push(key);
      else kept.push(tombstone);
    }
    return { versions, removed, kept, unkept, digest: this.storeDigest() };
  }

  /** The whole store's digest (see StoreDigest); O(1). */
  storeDigest(): StoreDigest {
    return { count: this.store.size, sum: this.digestTotal };
  }

  /**
   * Checks the whole state against the invariants, at O(n): for tests, and for a caller that has
   * just rebuilt a replica (a restore). Throws an InvariantError naming the first one broken.
   */
  checkInvariants(): void {
    assert(Number.isSafeInteger(this.lamportClock) && this.lamportClock >= 0, 'the Lamport time is a natural number');
    for (const [node, counter] of Object.entries(this.appliedClock)) {
      assert(Number.isSafeInteger(counter) && counter > 0, () => `applied names ${node} with counter ${counter}`);
    }
    // Every stored version: under its own key, not from a later epoch, not stamped above the
    // Lamport time; and the partition digests are the sums of what is stored.
    const sums = new Uint32Array(PARTITION_COUNT);
    let total = 0;
    for (const [key, stored] of this.store) {
      assert(stored.epoch <= this.epoch, () => `stored ${key} is of epoch ${stored.epoch}, the replica of ${this.epoch}`);
      assert(stored.lamport <= this.lamportClock, () => `stored ${key} is stamped ${stored.lamport}, above the Lamport time ${this.lamportClock}`);
      const hash = storedHash(key, stored);
      const partition = partitionOfKey(key);
      sums[partition] = ((sums[partition] ?? 0) + hash) >>> 0;
      total = (total + hash) >>> 0;
    }
    for (let p = 0; p < PARTITION_COUNT; p++) assert(sums[p] === this.digestSums[p], () => `the digest of partition ${p} is not the sum of its versions`);
    assert(total === this.digestTotal, 'the store digest is the sum of the partition digests');
    this.graveyard.check(this.lamportClock);
    assert(clockCovers(this.appliedClock, this.collectedUpTo), 'tombstones are collected only up to what this replica applied');
    // The pending buffer: writes not applied yet, filed under their dot, counted exactly, within bounds.
    this.buffer.check(this.appliedClock);
    for (const epoch of Object.keys(this.baseClocks)) {
      const e = Number(epoch);
      assert(e < this.epoch && e >= this.epoch - OLD_EPOCHS_MAX, () => `the base names epoch ${epoch}, outside the ${OLD_EPOCHS_MAX} before ${this.epoch}`);
    }
  }

  /** The partition digests (see digestSums). */
  digests(): number[] {
    return Array.from(this.digestSums);
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
    const stamp = this.graveyard.stampOf(version.key);
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

  /** How many stored tombstones `everywhere` covers (what collectTombstones would drop). */
  collectable(everywhere: Clock): number {
    let count = 0;
    for (const stored of this.store.values()) {
      if (stored.deleted && stored.dotNode !== null && (stored.counter as number) <= (everywhere[stored.dotNode] ?? 0)) count++;
    }
    return count;
  }

  /**
   * Drops tombstones that every replica of the shard already reflects (`everywhere` is the pointwise
   * minimum of all members' applied clocks): no replica holds an older version of the key that the
   * tombstone would still have to win over. Base tombstones (from a reshard) are kept. Returns how many.
   * `kept`: collected without a member (the graveyard keeps them; the caller checked they fit, see
   * `collectable`, and the graveyard asserts it);
   * `remember` false (only the planted bug forget-tombstones) keeps no trace of them.
   */
  collectTombstones(everywhere: Clock, { remember = true, kept = false }: { remember?: boolean; kept?: boolean } = {}): number {
    let collected = 0;
    if (remember) this.collectedUpTo = mergeClocks(this.collectedUpTo, everywhere);
    for (const [key, stored] of this.store) {
      const dotNode = stored.dotNode;
      if (!stored.deleted || dotNode === null) continue;
      if ((stored.counter as number) > (everywhere[dotNode] ?? 0)) continue;
      this.store.delete(key);
      if (remember) this.graveyard.remember(key, unpack(key, stored), kept);
      else this.graveyard.forget(key);
      this.addToDigest(key, -storedHash(key, stored));
      this.dirty.add(key);
      collected++;
    }
    // The horizon is a minimum of applied clocks this replica's is one of, and ours only grows.
    assert(clockCovers(this.appliedClock, this.collectedUpTo), 'tombstones are collected only up to what this replica applied');
    return collected;
  }

  private put(version: Version): boolean {
    // No replica stores a version of a later epoch than its own: its writes would all lose to it.
    assert((version.stamp.epoch ?? 0) <= this.epoch, 'no replica stores a version of a later epoch than its own');
    if (version.stamp.lamport > this.lamportClock) this.lamportClock = version.stamp.lamport;
    const current = this.store.get(version.key);
    // Version order: a stored version is only ever replaced by one that wins over it.
    if ((current !== undefined && compareToStored(version.stamp, current) <= 0) || this.isBuried(version) || this.reflectsOrigin(version)) return false;
    this.addToDigest(version.key, current === undefined ? versionHash(version) : versionHash(version) - storedHash(version.key, current));
    this.store.set(version.key, pack(version, this.addresses));
    this.dirty.add(version.key);
    return true;
  }

  /** Adds `delta` (mod 2^32) to the digest of `key`'s partition and to the total. */
  private addToDigest(key: string, delta: number): void {
    const partition = partitionOfKey(key);
    const sum = this.digestSums[partition];
    assert(sum !== undefined, 'a key hashes to one of the PARTITION_COUNT partitions');
    this.digestSums[partition] = (sum + delta) >>> 0;
    this.digestTotal = (this.digestTotal + delta) >>> 0;
  }

  private deliverable(version: Version, dot: Dot): boolean {
    if ((this.appliedClock[dot.node] ?? 0) !== dot.counter - 1) return false;
    const deps = version.deps[this.shard];
    return deps === undefined || clockCovers(this.appliedClock, withoutNode(deps, dot.node));
  }

  private apply(version: Version, dot: Dot): void {
    // Causal delivery: each origin's writes are applied one after the other, none skipped or twice.
    assert(counterOf(this.appliedClock, dot.node) === dot.counter - 1, "each origin's writes are applied in order, none skipped or twice");
    this.put(version);
    this.appliedClock = { ...this.appliedClock, [dot.node]: dot.counter };
  }

  /** Applies every buffered write whose causal past is now applied; returns how many. */
  private drainPending(): number {
    return this.buffer.drain(
      () => this.appliedClock,
      (version, dot) => this.deliverable(version, dot),
      (version, dot) => this.apply(version, dot),
    );
  }

  /** Drops buffered writes that a merged state already reflects. */
  private prunePending(): void {
    this.buffer.prune(this.appliedClock);
  }
}
