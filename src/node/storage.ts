import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { asNodeAddress } from '../core/address.ts';
import { assert } from '../core/assert.ts';
import type { SavedReplica } from '../core/node-core.ts';
import { digestOfVersions, type StoreDigest } from '../core/replica.ts';
import type { Clock, Epoch, EpochClocks, NodeAddress, ShardId, ShardMap, Version } from '../core/types.ts';
import type { Logger } from './logger.ts';
import type { Hint, HintLog } from './replicator.ts';
import { isClock, isEpochClocks, isShardMap, isVersion } from './wire.ts';

/** What the runtime stages: Replica.takeDirty(). */
export interface StagedChange {
  versions: Version[];
  removed: string[];
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
  close(): void;
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
  close(): void {}
}

/** Bump when the layout changes; a directory of another format is set aside and rebuilt from peers. */
const FORMAT = 'kvs-sqlite-1';

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

const EMPTY_DIGEST: StoreDigest = { count: 0, sum: 0 };

/** Everything staged since the last group commit, written in one transaction. */
export interface CommitBatch {
  /** Key -> version to store, or null to delete the key. */
  versions: ReadonlyMap<string, Version | null>;
  meta: ReplicaMeta | null;
  hintAdds: readonly { peer: NodeAddress; hint: Hint }[];
  /** Per peer: every hint up to this seq is gone. Applied after the adds. */
  hintDrops: ReadonlyMap<NodeAddress, number>;
}

/**
 * The grouped commit shared by every durable storage (SQLite here, the simulator's disk in
 * harness/sim): changes are staged as the core makes them, and one commit, scheduled once per batch,
 * writes everything staged and then answers every `flush()` waiting for it. Subclasses say how a
 * batch and a reset are written and when a scheduled commit runs.
 */
export abstract class GroupCommitStorage {
  readonly durable = true;
  private stagedVersions = new Map<string, Version | null>();
  private stagedMeta: ReplicaMeta | null = null;
  private stagedHintAdds: { peer: NodeAddress; hint: Hint }[] = [];
  private stagedHintDrops = new Map<NodeAddress, number>();
  private waiters: { resolve: () => void; reject: (error: unknown) => void }[] = [];
  private scheduled = false;
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

  /** Writes one batch atomically; throws when it could not. */
  protected abstract writeBatch(batch: CommitBatch): void;
  /** Replaces the stored replica by an empty one (or none), at once. */
  protected abstract writeReset(replica: { epoch: Epoch; shard: ShardId } | null): void;
  /** Runs `commit` later: after this turn of the event loop, or after a simulated fsync. */
  protected abstract scheduleCommit(commit: () => void): void;
  /** A batch could not be written (its waiters are rejected). */
  protected abstract commitFailed(error: unknown): void;

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
    this.stagedMeta = null;
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
  protected loaded(meta: ReplicaMeta, versions: readonly Version[]): void {
    checkCommitted(meta, versions);
    this.replicaMeta = { epoch: meta.epoch, shard: meta.shard };
    this.committedApplied = meta.applied;
    this.digestHolds = true;
    this.replicaRows = versions.length > 0;
  }

  flush(): Promise<void> {
    if (!this.scheduled && !this.hasStaged()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.schedule();
    });
  }

  durableApplied(): Clock {
    return this.committedApplied;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    this.scheduleCommit(() => this.commit());
  }

  /** One write of everything staged since the last one; then every waiter is answered. */
  protected commit(): void {
    this.scheduled = false;
    const waiters = this.waiters;
    this.waiters = [];
    try {
      if (this.hasStaged()) {
        const meta = this.stagedMeta;
        this.writeBatch({ versions: this.stagedVersions, meta, hintAdds: this.stagedHintAdds, hintDrops: this.stagedHintDrops });
        if (meta !== null) this.committedApplied = meta.applied;
        this.stagedVersions = new Map();
        this.stagedMeta = null;
        this.stagedHintAdds = [];
        this.stagedHintDrops = new Map();
      }
      for (const waiter of waiters) waiter.resolve();
    } catch (error) {
      this.commitFailed(error);
      for (const waiter of waiters) waiter.reject(error);
    }
  }

  private hasStaged(): boolean {
    return this.stagedMeta !== null || this.stagedHintAdds.length > 0 || this.stagedHintDrops.size > 0;
  }
}

/**
 * SQLite in WAL mode with synchronous=FULL: a commit returns only when it is on disk. One table of
 * versions (the winning version of each key of this node's shard, tombstones included) and one of
 * metadata (format, owner address, shard map, the replica's epoch, shard, applied clock and Lamport
 * time). Versions and the clock that covers them are written in one transaction, so a crash leaves
 * them consistent.
 */
export class SqliteStorage extends GroupCommitStorage implements Storage {
  private readonly db: DatabaseSync;
  private readonly log: Logger;
  private readonly upsertVersion: StatementSync;
  private readonly upsertMeta: StatementSync;
  private readonly deleteVersion: StatementSync;
  private readonly insertHint: StatementSync;
  private readonly deleteHints: StatementSync;

  /**
   * Opens (or creates) the node's data directory. A directory that cannot be read, fails SQLite's
   * integrity check, has another format, or belongs to another address is moved aside (kept for a
   * person to look at) and replaced by an empty one; the node then copies its shard from peers.
   */
  static open(directory: string, address: NodeAddress, log: Logger): { storage: SqliteStorage; saved: SavedState } {
    if (!existsSync(directory)) {
      log.info({ directory }, 'data directory missing: starting empty, the shard will be copied from peers');
      mkdirSync(directory, { recursive: true });
    }
    let storage: SqliteStorage | null = null;
    try {
      storage = new SqliteStorage(directory, address, log);
      return { storage, saved: storage.load() };
    } catch (error) {
      storage?.db.close();
      const aside = `${directory.replace(/\/+$/, '')}.corrupt-${Date.now()}`;
      log.error(
        { directory, movedTo: aside, reason: error instanceof Error ? error.message : String(error) },
        'data directory unusable: moved aside; starting empty, the shard will be copied from peers',
      );
      renameSync(directory, aside);
      mkdirSync(directory, { recursive: true });
      const fresh = new SqliteStorage(directory, address, log);
      return { storage: fresh, saved: fresh.load() };
    }
  }

  private constructor(directory: string, address: NodeAddress, log: Logger) {
    super();
    this.log = log;
    this.db = new DatabaseSync(join(directory, 'kvs.sqlite'));
    try {
      this.db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;');
      const check = this.db.prepare('PRAGMA quick_check').get() as Record<string, unknown> | undefined;
      const verdict = check ? Object.values(check)[0] : 'no answer';
      if (verdict !== 'ok') throw new Error(`integrity check failed: ${String(verdict)}`);
      this.db.exec(
        'CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);' +
          'CREATE TABLE IF NOT EXISTS versions (key TEXT PRIMARY KEY, data TEXT NOT NULL);' +
          'CREATE TABLE IF NOT EXISTS hints (peer TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (peer, seq));',
      );
      const format = this.readMeta('format');
      const owner = this.readMeta('address');
      if (format === undefined && owner === undefined) {
        this.db.prepare('INSERT INTO meta (name, value) VALUES (?, ?), (?, ?)').run('format', FORMAT, 'address', address);
      } else if (format !== FORMAT) {
        throw new Error(`data format ${String(format)} is not ${FORMAT}`);
      } else if (owner !== address) {
        throw new Error(`data belongs to ${String(owner)}, not ${address}`);
      }
    } catch (error) {
      this.db.close();
      throw error;
    }
    this.upsertVersion = this.db.prepare('INSERT INTO versions (key, data) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET data = excluded.data');
    this.deleteVersion = this.db.prepare('DELETE FROM versions WHERE key = ?');
    this.insertHint = this.db.prepare('INSERT OR REPLACE INTO hints (peer, seq, data) VALUES (?, ?, ?)');
    this.deleteHints = this.db.prepare('DELETE FROM hints WHERE peer = ? AND seq <= ?');
    this.upsertMeta = this.db.prepare('INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value');
  }

  load(): SavedState {
    const rawMap = this.parse(this.readMeta('map'));
    const map = isShardMap(rawMap) ? rawMap : null;
    const meta = this.parse(this.readMeta('replica')) as ReplicaMeta | null;
    if (meta === null || typeof meta.shard !== 'string' || !Number.isSafeInteger(meta.epoch) || !isClock(meta.applied)) {
      return { map, replica: null };
    }
    const versions: Version[] = [];
    for (const row of this.db.prepare('SELECT data FROM versions').iterate() as Iterable<{ data: string }>) {
      const version = this.parse(row.data);
      if (!isVersion(version)) throw new Error('a stored version is malformed');
      versions.push(version);
    }
    // A mismatch throws: open() then sets the directory aside and the shard is copied from peers.
    this.loaded(meta, versions);
    this.log.info({ epoch: meta.epoch, shard: meta.shard, versions: versions.length, checked: meta.digest !== undefined }, 'loaded replica from disk');
    const base = isEpochClocks(meta.base) ? meta.base : {};
    const collected = isClock(meta.collected) ? meta.collected : {};
    return { map, replica: { epoch: meta.epoch, shard: meta.shard, applied: meta.applied, lamport: Number(meta.lamport) || 0, base, collected, versions } };
  }

  saveMap(map: ShardMap): void {
    this.upsertMeta.run('map', JSON.stringify(map));
  }

  protected writeReset(replica: { epoch: Epoch; shard: ShardId } | null): void {
    this.db.exec('BEGIN');
    try {
      this.db.exec('DELETE FROM versions');
      if (replica === null) this.db.prepare('DELETE FROM meta WHERE name = ?').run('replica');
      else this.upsertMeta.run('replica', JSON.stringify({ epoch: replica.epoch, shard: replica.shard, applied: {}, lamport: 0, digest: EMPTY_DIGEST }));
      this.db.exec('COMMIT');
    } catch (error) {
      this.db.exec('ROLLBACK');
      throw error;
    }
  }

  loadHints(): Map<NodeAddress, Hint[]> {
    const out = new Map<NodeAddress, Hint[]>();
    const rows = this.db.prepare('SELECT peer, seq, data FROM hints ORDER BY peer, seq').iterate() as Iterable<{ peer: string; seq: number; data: string }>;
    for (const row of rows) {
      const hint = this.parse(row.data) as Hint | null;
      if (hint === null || !isVersion(hint.version) || typeof hint.shard !== 'string' || !Number.isSafeInteger(hint.epoch)) continue;
      // This node wrote the row, with a peer's address.
      const peer = asNodeAddress(row.peer);
      const list = out.get(peer) ?? [];
      list.push({ ...hint, seq: Number(row.seq) });
      out.set(peer, list);
    }
    return out;
  }

  close(): void {
    try {
      this.commit();
    } finally {
      this.db.close();
    }
  }

  protected scheduleCommit(commit: () => void): void {
    setImmediate(commit);
  }

  protected writeBatch(batch: CommitBatch): void {
    this.db.exec('BEGIN');
    try {
      for (const [key, version] of batch.versions) {
        if (version === null) this.deleteVersion.run(key);
        else this.upsertVersion.run(key, JSON.stringify(version));
      }
      if (batch.meta !== null) this.upsertMeta.run('replica', JSON.stringify(batch.meta));
      // Adds first: a drop covers every seq up to its own, staged before or with it.
      for (const { peer, hint } of batch.hintAdds) this.insertHint.run(peer, hint.seq, JSON.stringify(hint));
      for (const [peer, seq] of batch.hintDrops) this.deleteHints.run(peer, seq);
      this.db.exec('COMMIT');
    } catch (error) {
      this.db.exec('ROLLBACK');
      throw error;
    }
  }

  protected commitFailed(error: unknown): void {
    this.log.error({ err: error }, 'storage commit failed');
  }

  private readMeta(name: string): string | undefined {
    const row = this.db.prepare('SELECT value FROM meta WHERE name = ?').get(name) as { value: string } | undefined;
    return row?.value;
  }

  private parse(text: string | undefined): unknown {
    if (text === undefined) return null;
    try {
      return JSON.parse(text);
    } catch {
      return null;
    }
  }
}
