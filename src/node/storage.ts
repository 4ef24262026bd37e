import { assert } from '../core/assert.ts';
import type { SavedReplica } from '../core/node-core.ts';
import { digestOfVersions, type StoreDigest } from '../core/replica.ts';
import type { Clock, Epoch, EpochClocks, NodeAddress, ShardId, ShardMap, Version } from '../core/types.ts';
import type { Hint, HintLog } from './replicator.ts';

/** What the runtime stages: Replica.takeDirty(). */
export interface StagedChange {
  versions: Version[];
  removed: string[];
  /** Tombstones the graveyard keeps (collected without a member: see Graveyard), and keys it no longer keeps. */
  kept?: Version[];
  unkept?: string[];
  digest?: StoreDigest;
}

/** What a node finds on disk when it starts. */
export interface SavedState {
  map: ShardMap | null;
  replica: SavedReplica | null;
}

/**
 * Where a node keeps what it acknowledged. The runtime stages every change right after the core
 * makes it, and awaits `flush()` before it acknowledges: changes staged in one turn of the event
 * loop share one fsync'd commit (a grouped commit).
 */
export interface Storage {
  readonly durable: boolean;
  load(): SavedState;
  saveMap(map: ShardMap): void;
  /** The node's replica was replaced (a new epoch, a full copy from a peer): forget the old one. */
  resetReplica(replica: { epoch: Epoch; shard: ShardId } | null): void;
  /**
   * Changes of the replica (Replica.takeDirty), with its clocks after them. `digest`, the whole
   * store's digest after them, is committed with them where the disk is known to hold exactly that
   * replica, and checked when the replica is loaded again.
   */
  stage(change: StagedChange, applied: Clock, lamport: number, base: EpochClocks, collected: Clock): void;
  /** Resolves once everything staged before the call is on disk. */
  flush(): Promise<void>;
  /** The applied clock of the replica as last committed to disk; null when nothing is durable. */
  durableApplied(): Clock | null;
  /** Hints for peers that are down; on a durable node they commit with the next group commit. */
  readonly hints: HintLog;
  /** Hints that survived the last run, by peer. */
  loadHints(): Map<NodeAddress, Hint[]>;
  /** Group commits so far, for /metrics. */
  commitStats(): CommitStats;
  close(): void;
}

/** Group commits written, failed, the time they took (hand-over to landing), and a writer that stopped. */
export interface CommitStats {
  commits: number;
  failures: number;
  seconds: number;
  writerFailed: boolean;
}

/** Without DATA_DIR: nothing survives the process, and nothing waits for a disk. */
export class MemoryStorage implements Storage {
  readonly durable = false;
  load(): SavedState {
    return { map: null, replica: null };
  }
  saveMap(): void {}
  resetReplica(): void {}
  stage(): void {}
  flush(): Promise<void> {
    return Promise.resolve();
  }
  durableApplied(): Clock | null {
    return null;
  }
  readonly hints: HintLog = { add() {}, drop() {} };
  loadHints(): Map<NodeAddress, Hint[]> {
    return new Map();
  }
  commitStats(): CommitStats {
    return { commits: 0, failures: 0, seconds: 0, writerFailed: false };
  }
  close(): void {}
}

/** What the replica's metadata row holds. */
export interface ReplicaMeta {
  epoch: Epoch;
  shard: ShardId;
  applied: Clock;
  lamport: number;
  /** What the replica's base reflects of earlier epochs. */
  base?: EpochClocks;
  /** The replica's collection horizon (see Replica.collected; absent in directories of older releases). */
  collected?: Clock;
  /**
   * The digest of the versions committed with this row (see checkCommitted); absent when the disk
   * may hold more than the replica counted, and in directories of older releases.
   */
  digest?: StoreDigest;
}

/**
 * The paired check of what crosses the disk: the versions loaded are the ones committed with the
 * replica's row. Each commit writes, in the row of the applied clock, the digest of the whole store
 * the replica had (count, and sum of hashes of key, stamp and tombstone flag: see StoreDigest); the
 * replica keeps it up to date at O(1) per change, so a commit costs a few bytes more and nothing
 * else. A load, which reads every version anyway, recomputes it and compares. A row lost, left
 * behind, or replaced by another version of its key, or a clock row of another commit than the
 * versions (a torn or half-restored directory, a bug in staging), fails the check; a value altered
 * in place is SQLite's to catch (the digest does not hash values: that would cost the size of every
 * value on every write). Also checked: no version is stamped above the Lamport time committed with
 * it (the next write must win). Cheaper alternatives fall short: the dots of stored versions are not
 * all covered by the applied clock (anti-entropy stores versions ahead of it: see Replica), so that
 * is no check; a count alone misses a replaced row.
 */
export function checkCommitted(meta: ReplicaMeta, versions: readonly Version[]): void {
  const committed: unknown = meta.digest;
  if (committed === undefined) return;
  assert(isStoreDigest(committed), 'the digest committed with the replica is well-formed');
  const found = digestOfVersions(versions);
  assert(
    found.count === committed.count && found.sum === committed.sum,
    () =>
      `the replica on disk is not what was committed: ${found.count} versions with digest ${found.sum.toString(16)} loaded, ` +
      `${committed.count} with digest ${committed.sum.toString(16)} committed`,
  );
  const lamport = Number(meta.lamport) || 0;
  for (const version of versions) {
    assert(version.stamp.lamport <= lamport, () => `the stored version of ${version.key} is stamped above the Lamport time committed with it`);
  }
}

function isStoreDigest(value: unknown): value is StoreDigest {
  if (typeof value !== 'object' || value === null) return false;
  const { count, sum } = value as Record<string, unknown>;
  return Number.isSafeInteger(count) && (count as number) >= 0 && Number.isInteger(sum) && (sum as number) >= 0 && (sum as number) < 2 ** 32;
}

/** The digest of an empty replica. */
export const EMPTY_DIGEST: StoreDigest = { count: 0, sum: 0 };

/** Everything staged since the last group commit, written in one transaction. */
export interface CommitBatch {
  /** Key -> version to store, or null to delete the key. */
  versions: ReadonlyMap<string, Version | null>;
  meta: ReplicaMeta | null;
  hintAdds: readonly { peer: NodeAddress; hint: Hint }[];
  /** Per peer: every hint up to this seq is gone. Applied after the adds. */
  hintDrops: ReadonlyMap<NodeAddress, number>;
  /** Key -> tombstone the graveyard keeps, or null: no longer kept. */
  graveyard: ReadonlyMap<string, Version | null>;
}

/** A flush() waiting for its commit to land. */
type Waiter = { resolve: () => void; reject: (error: unknown) => void };

/**
 * The grouped commit shared by every durable storage (SQLite here, the simulator's disk in
 * harness/sim): changes are staged as the core makes them, and one commit, scheduled once per batch,
 * writes everything staged and then answers every `flush()` waiting for it. Subclasses say how a
 * batch and a reset are written and when a scheduled commit runs.
 */
export abstract class GroupCommitStorage {
  readonly durable = true;
  private stagedVersions = new Map<string, Version | null>();
  private stagedGraveyard = new Map<string, Version | null>();
  private stagedMeta: ReplicaMeta | null = null;
  private stagedHintAdds: { peer: NodeAddress; hint: Hint }[] = [];
  private stagedHintDrops = new Map<NodeAddress, number>();
  /** The next commit must reach the writer even with nothing staged (see commitBarrier). */
  private barrier = false;
  private waiters: Waiter[] = [];
  /** The waiters of the batch handed over last (while any is in flight: the writer answers in order). */
  private lastWaiters: Waiter[] = [];
  private scheduled = false;
  /** Batches handed to an asynchronous writer and not answered yet (at most maxInFlight, but for close). */
  private inFlight = 0;
  /** Bumped by each reset: a batch of an older replica that lands later sets no clock. */
  private generation = 0;
  /** Set once a commit failed: nothing more is written (see stop). */
  private stopped: Error | null = null;
  /** Batches an asynchronous writer may hold at once. */
  protected readonly maxInFlight: number = 1;
  private readonly stats = { commits: 0, failures: 0, seconds: 0 };
  /** The epoch and shard of the replica on disk (null: none). */
  protected replicaMeta: { epoch: Epoch; shard: ShardId } | null = null;
  protected committedApplied: Clock = {};
  /**
   * True while the disk holds exactly the replica whose changes are staged (emptied for it, or
   * loaded and restored from): only then is its digest committed. A full copy of the same shard
   * into a new replica keeps the old one's rows (see resetReplica), which its digest does not count.
   */
  private digestHolds = true;
  /** Rows of the replica on disk were written or staged since the disk was emptied. */
  private replicaRows = false;

  readonly hints: HintLog = {
    add: (peer, hints) => {
      for (const hint of hints) this.stagedHintAdds.push({ peer, hint });
      this.schedule();
    },
    drop: (peer, seq) => {
      this.stagedHintDrops.set(peer, Math.max(seq, this.stagedHintDrops.get(peer) ?? 0));
      this.schedule();
    },
  };

  /**
   * Writes one batch atomically: at once (returns; throws when it could not), or by a writer that
   * keeps the order of everything handed to it (the promise settles when the batch is on disk).
   * `idle`: that writer holds nothing, so a write at once cannot overtake anything.
   */
  protected abstract writeBatch(batch: CommitBatch, writer: { idle: boolean }): void | Promise<void>;
  /** Replaces the stored replica by an empty one (or none), before any batch written after it. */
  protected abstract writeReset(replica: { epoch: Epoch; shard: ShardId } | null): void;
  /** Runs `commit` later: after this turn of the event loop, or after a simulated fsync. */
  protected abstract scheduleCommit(commit: () => void): void;
  /** A commit failed or the writer stopped (said once; every write from then on is refused). */
  protected abstract commitFailed(error: Error): void;

  resetReplica(replica: { epoch: Epoch; shard: ShardId } | null): void {
    const current = this.replicaMeta;
    if (replica !== null && current !== null && replica.epoch === current.epoch && replica.shard === current.shard) {
      // The same shard copied afresh: the rows on disk stay until the copy replaces them. The
      // new replica's digest does not count them, so none is committed until the disk is emptied
      // or loaded again.
      if (this.replicaRows) this.digestHolds = false;
      return;
    }
    this.stagedVersions.clear();
    this.stagedGraveyard.clear();
    this.stagedMeta = null;
    this.generation++;
    this.writeReset(replica);
    this.replicaMeta = replica;
    this.committedApplied = {};
    this.digestHolds = true;
    this.replicaRows = false;
  }

  stage(change: StagedChange, applied: Clock, lamport: number, base: EpochClocks, collected: Clock): void {
    if (this.replicaMeta === null) return;
    for (const version of change.versions) this.stagedVersions.set(version.key, version);
    for (const key of change.removed) this.stagedVersions.set(key, null);
    for (const tombstone of change.kept ?? []) this.stagedGraveyard.set(tombstone.key, tombstone);
    for (const key of change.unkept ?? []) this.stagedGraveyard.set(key, null);
    if (change.versions.length > 0 || change.removed.length > 0) this.replicaRows = true;
    const digest = this.digestHolds && change.digest !== undefined ? { digest: { count: change.digest.count, sum: change.digest.sum } } : {};
    this.stagedMeta = { ...this.replicaMeta, applied: { ...applied }, lamport, base, collected: { ...collected }, ...digest };
    this.schedule();
  }

  /**
   * Takes the replica found on disk, checked against what was committed with it (checkCommitted:
   * throws when they differ). The node restores its replica from exactly these versions, so from
   * now on the disk holds what its replica counts.
   */
  protected loaded(meta: ReplicaMeta, versions: readonly Version[], graveyard: readonly Version[] = []): void {
    checkCommitted(meta, versions);
    const lamport = Number(meta.lamport) || 0;
    for (const tombstone of graveyard) {
      assert(tombstone.stamp.lamport <= lamport, () => `the kept tombstone of ${tombstone.key} is stamped above the Lamport time committed with it`);
    }
    this.replicaMeta = { epoch: meta.epoch, shard: meta.shard };
    this.committedApplied = meta.applied;
    this.digestHolds = true;
    this.replicaRows = versions.length > 0;
  }

  flush(): Promise<void> {
    if (!this.scheduled && !this.hasStaged() && this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.schedule();
    });
  }

  durableApplied(): Clock {
    return this.committedApplied;
  }

  commitStats(): CommitStats {
    return { ...this.stats, writerFailed: this.stopped !== null };
  }

  /** Something was handed to the writer outside a batch: the next flush waits until it is done. */
  protected commitBarrier(): void {
    this.barrier = true;
    this.schedule();
  }

  /**
   * The disk can no longer be trusted with writes (a commit failed, the writer stopped): every
   * flush from now on is refused, as is every batch in flight. The node must be restarted.
   */
  protected stop(error: Error): void {
    if (this.stopped !== null) return;
    this.stopped = error;
    this.stats.failures++;
    this.commitFailed(error);
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    this.scheduleCommit(() => this.commit());
  }

  /**
   * One write of everything staged since the last one; then every waiter is answered. A writer
   * that lands batches later takes up to `maxInFlight` of them; while that many are on their way,
   * what is staged meanwhile gathers into the next (`force`, for close: at once).
   */
  protected commit(force = false): void {
    this.scheduled = false;
    if (this.stopped !== null) {
      const waiters = this.waiters;
      this.waiters = [];
      for (const waiter of waiters) waiter.reject(this.stopped);
      return;
    }
    if (this.inFlight >= this.maxInFlight && !force) return;
    const waiters = this.waiters;
    this.waiters = [];
    if (!this.hasStaged()) {
      // What they wait for is on its way: they are answered with the last batch handed over.
      if (this.inFlight > 0) this.lastWaiters.push(...waiters);
      else for (const waiter of waiters) waiter.resolve();
      return;
    }
    const batch: CommitBatch = {
      versions: this.stagedVersions,
      meta: this.stagedMeta,
      hintAdds: this.stagedHintAdds,
      hintDrops: this.stagedHintDrops,
      graveyard: this.stagedGraveyard,
    };
    // Idle: no batch in flight, and nothing handed over outside a batch (a barrier) to wait behind.
    const idle = this.inFlight === 0 && !this.barrier;
    this.stagedVersions = new Map();
    this.stagedGraveyard = new Map();
    this.stagedMeta = null;
    this.stagedHintAdds = [];
    this.stagedHintDrops = new Map();
    this.barrier = false;
    const generation = this.generation;
    const startedAt = performance.now();
    let written: void | Promise<void>;
    try {
      written = this.writeBatch(batch, { idle });
    } catch (error) {
      this.failed(waiters, error);
      return;
    }
    if (written === undefined) {
      this.landed(batch, generation, waiters, startedAt);
      return;
    }
    this.inFlight++;
    this.lastWaiters = waiters;
    written.then(
      () => this.landed(batch, generation, waiters, startedAt),
      (error: unknown) => this.failed(waiters, error),
    ).finally(() => {
      this.inFlight--;
      if (this.hasStaged() || this.waiters.length > 0) this.schedule();
    });
  }

  private landed(batch: CommitBatch, generation: number, waiters: readonly Waiter[], startedAt: number): void {
    this.stats.commits++;
    this.stats.seconds += (performance.now() - startedAt) / 1000;
    if (batch.meta !== null && generation === this.generation) this.committedApplied = batch.meta.applied;
    for (const waiter of waiters) waiter.resolve();
  }

  private failed(waiters: readonly Waiter[], error: unknown): void {
    this.stop(error instanceof Error ? error : new Error(String(error)));
    for (const waiter of waiters) waiter.reject(error);
  }

  private hasStaged(): boolean {
    return this.barrier || this.stagedMeta !== null || this.stagedGraveyard.size > 0 || this.stagedHintAdds.length > 0 || this.stagedHintDrops.size > 0;
  }
}
