// The durable storage of a node with DATA_DIR: SQLite, opened, checked and loaded on the node's
// thread, and written by the storage writer (storage-writer.ts) through GroupCommitStorage's
// grouped commits (storage.ts).

import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Worker } from 'node:worker_threads';
import { asNodeAddress } from '../core/address.ts';
import type { Epoch, NodeAddress, ShardId, ShardMap, Version } from '../core/types.ts';
import type { Logger } from './logger.ts';
import type { Hint } from './replicator.ts';
import { EMPTY_DIGEST, GroupCommitStorage, type CommitBatch, type ReplicaMeta, type SavedState, type Storage } from './storage.ts';
import { SqlWriter, type WriterAnswer, type WriterBatch, type WriterData, type WriterMessage } from './storage-writer.ts';
import { isClock, isEpochClocks, isShardMap, isVersion } from './wire.ts';

/** Bump when the layout changes; a directory of another format is set aside and rebuilt from peers. */
const FORMAT = 'kvs-sqlite-1';

/** How long closing waits for the writer to finish what it was handed. */
const WRITER_CLOSE_WAIT_MS = 10_000;
/**
 * Batches handed to the writer and not yet answered, at most. Each is what one turn of the event
 * loop staged; the writer puts every batch waiting for it into one transaction.
 */
const WRITER_BATCHES_IN_FLIGHT = 8;
/** A group of at most this many versions, while the writer is idle, is written on the node's thread. */
const SYNC_WRITE_VERSIONS_MAX = 1;

/**
 * SQLite in WAL mode with synchronous=FULL: a commit lands only once it is on disk. One table of
 * versions (the winning version of each key of this node's shard, tombstones included) and one of
 * metadata (format, owner address, shard map, the replica's epoch, shard, applied clock and Lamport
 * time). Versions and the clock that covers them are written in one transaction, so a crash leaves
 * them consistent.
 *
 * The node's thread opens, checks and loads the directory; every write after that goes, as rows
 * already serialised, to the storage writer (storage-writer.ts), a worker thread with its own
 * connection that writes them in order, every group waiting when it wakes in one transaction. So
 * the event loop serves requests while a group commit waits for its fsync, and the next group
 * gathers meanwhile. A lone one-version group while the writer is idle is written here at once.
 */
export class SqliteStorage extends GroupCommitStorage implements Storage {
  private readonly db: DatabaseSync;
  private readonly file: string;
  private readonly log: Logger;
  private writer: Worker | null = null;
  private readonly writerClosed = new SharedArrayBuffer(4);
  private nextSeq = 1;
  /** Batches handed to the writer, by seq, until it answers. */
  private readonly pending = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
  /** The writer stopped, failed, or was closed: nothing more is posted to it. */
  private done = false;
  /** This thread's own statements, for a lone small group while the writer is idle. */
  private sql: SqlWriter | null = null;
  protected override readonly maxInFlight = WRITER_BATCHES_IN_FLIGHT;

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
    this.file = join(directory, 'kvs.sqlite');
    this.db = new DatabaseSync(this.file);
    try {
      this.db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;');
      const check = this.db.prepare('PRAGMA quick_check').get() as Record<string, unknown> | undefined;
      const verdict = check ? Object.values(check)[0] : 'no answer';
      if (verdict !== 'ok') throw new Error(`integrity check failed: ${String(verdict)}`);
      this.db.exec(
        'CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);' +
          'CREATE TABLE IF NOT EXISTS versions (key TEXT PRIMARY KEY, data TEXT NOT NULL);' +
          'CREATE TABLE IF NOT EXISTS hints (peer TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (peer, seq));' +
          'CREATE TABLE IF NOT EXISTS graveyard (key TEXT PRIMARY KEY, data TEXT NOT NULL);',
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
  }

  load(): SavedState {
    const rawMap = this.parse(this.readMeta('map'));
    const map = isShardMap(rawMap) ? rawMap : null;
    const meta = this.parse(this.readMeta('replica')) as ReplicaMeta | null;
    if (meta === null || typeof meta.shard !== 'string' || !Number.isSafeInteger(meta.epoch) || !isClock(meta.applied)) {
      return { map, replica: null };
    }
    const versions = this.readVersions('versions', () => true, 'a stored version is malformed');
    // Tombstones kept for members collected without (see Graveyard).
    const graveyard = this.readVersions('graveyard', (v) => v.deleted && v.dot !== null, 'a kept tombstone is malformed');
    // A mismatch throws: open() then sets the directory aside and the shard is copied from peers.
    this.loaded(meta, versions, graveyard);
    this.log.info({ epoch: meta.epoch, shard: meta.shard, versions: versions.length, keptTombstones: graveyard.length, checked: meta.digest !== undefined }, 'loaded replica from disk');
    const base = isEpochClocks(meta.base) ? meta.base : {};
    const collected = isClock(meta.collected) ? meta.collected : {};
    return { map, replica: { epoch: meta.epoch, shard: meta.shard, applied: meta.applied, lamport: Number(meta.lamport) || 0, base, collected, versions, graveyard } };
  }

  saveMap(map: ShardMap): void {
    this.post({ kind: 'map', seq: this.nextSeq++, map: JSON.stringify(map) });
    this.commitBarrier();
  }

  protected writeReset(replica: { epoch: Epoch; shard: ShardId } | null): void {
    const meta = replica === null ? null : JSON.stringify({ epoch: replica.epoch, shard: replica.shard, applied: {}, lamport: 0, digest: EMPTY_DIGEST });
    this.post({ kind: 'reset', seq: this.nextSeq++, meta });
    this.commitBarrier();
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

  /** Hands what is staged to the writer, waits (bounded) until it has written it and closed, then closes. */
  close(): void {
    try {
      this.commit(true);
      if (this.writer !== null && !this.done) {
        this.writer.postMessage({ kind: 'close' } satisfies WriterMessage);
        const waited = Atomics.wait(new Int32Array(this.writerClosed), 0, 0, WRITER_CLOSE_WAIT_MS);
        if (waited === 'timed-out') this.log.error({ waitedMs: WRITER_CLOSE_WAIT_MS }, 'storage writer did not close in time: what it still held may not be on disk');
      }
    } finally {
      this.done = true;
      this.writer?.terminate().catch(() => undefined);
      this.db.close();
    }
  }

  protected scheduleCommit(commit: () => void): void {
    setImmediate(commit);
  }

  protected writeBatch(batch: CommitBatch, writer: { idle: boolean }): void | Promise<void> {
    const message: WriterBatch = { kind: 'batch', seq: this.nextSeq++, upserts: [], deletes: [], meta: null, hintAdds: [], hintDrops: [], kept: [], unkept: [] };
    asRows(batch.versions, message.upserts, message.deletes);
    asRows(batch.graveyard, message.kept, message.unkept);
    if (batch.meta !== null) message.meta = JSON.stringify(batch.meta);
    for (const { peer, hint } of batch.hintAdds) message.hintAdds.push([peer, hint.seq, JSON.stringify(hint)]);
    for (const [peer, seq] of batch.hintDrops) message.hintDrops.push([peer, seq]);
    // A lone small group while the writer is idle (light load): written here, at once. Two thread
    // hops would cost it more than its fsync blocks this loop, and there is nothing else to serve.
    if (writer.idle && !this.done && batch.versions.size <= SYNC_WRITE_VERSIONS_MAX) {
      this.sql ??= new SqlWriter(this.db);
      this.sql.write([message]);
      return;
    }
    return new Promise((resolve, reject) => {
      this.pending.set(message.seq, { resolve, reject });
      this.post(message);
    });
  }

  protected commitFailed(error: Error): void {
    this.log.error({ err: error }, 'storage commit failed: this node acknowledges no more writes; restart it (its data directory is checked at the start)');
  }

  /** Hands a message to the writer (started on first use); a stopped writer refuses every batch. */
  private post(message: WriterMessage & { seq: number }): void {
    if (this.done) {
      this.pending.get(message.seq)?.reject(new Error('storage writer stopped'));
      this.pending.delete(message.seq);
      return;
    }
    this.writer ??= this.startWriter();
    this.writer.postMessage(message);
  }

  private startWriter(): Worker {
    const data: WriterData = { file: this.file, closed: this.writerClosed };
    // Beside this module: storage-writer.ts from the source, storage-writer.js in the built package.
    const file = import.meta.url.endsWith('.ts') ? './storage-writer.ts' : './storage-writer.js';
    const writer = new Worker(new URL(file, import.meta.url), { workerData: { storageWriter: data } });
    // The node exits through close(); a writer left open must not keep a process alive by itself.
    writer.unref();
    writer.on('message', (answer: WriterAnswer) => this.answered(answer));
    writer.on('error', (error) => this.fail(error));
    writer.on('exit', (code) => {
      if (!this.done) this.fail(new Error(`storage writer exited (code ${code})`));
    });
    return writer;
  }

  private answered(answer: WriterAnswer): void {
    const error = answer.error === undefined ? null : new Error(answer.error);
    // The reset and map messages have no waiter: their failure stops the storage below.
    for (const seq of answer.seqs) {
      const batch = this.pending.get(seq);
      this.pending.delete(seq);
      if (error === null) batch?.resolve();
      else batch?.reject(error);
    }
    if (error !== null) this.fail(error);
  }

  /** The writer is gone or a commit failed: every write from now on is refused. */
  private fail(error: Error): void {
    if (this.done) return;
    this.done = true;
    for (const { reject } of this.pending.values()) reject(error);
    this.pending.clear();
    this.stop(error);
  }

  /** Every row of `table` (versions or graveyard), parsed; a row that is no version, or fails `ok`, throws `malformed`. */
  private readVersions(table: 'versions' | 'graveyard', ok: (version: Version) => boolean, malformed: string): Version[] {
    const out: Version[] = [];
    for (const row of this.db.prepare(`SELECT data FROM ${table}`).iterate() as Iterable<{ data: string }>) {
      const version = this.parse(row.data);
      if (!isVersion(version) || !ok(version)) throw new Error(malformed);
      out.push(version);
    }
    return out;
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

/** Key -> version (or null: gone) as rows: [key, JSON] to upsert, and keys to delete. */
function asRows(changes: ReadonlyMap<string, Version | null>, upserts: [string, string][], deletes: string[]): void {
  for (const [key, version] of changes) {
    if (version === null) deletes.push(key);
    else upserts.push([key, JSON.stringify(version)]);
  }
}
