// The storage writer: a worker thread with its own SQLite connection that does every write of a
// durable node, in the order the messages were posted. The node's event loop goes on serving while
// a group commit is on its way to the disk (see SqliteStorage). Every message waiting when the
// writer wakes goes into one transaction (one fsync), so batches posted while it was busy or not
// yet scheduled share a commit. It is handed rows already serialised: it decides nothing, and only
// answers the messages of each transaction with their seqs, or the error that rolled them back.

import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';

/** One transaction of a group commit: rows already serialised by the node. */
export interface WriterBatch {
  kind: 'batch';
  seq: number;
  upserts: [key: string, data: string][];
  deletes: string[];
  /** The replica's metadata row, or null when it did not change. */
  meta: string | null;
  hintAdds: [peer: string, seq: number, data: string][];
  hintDrops: [peer: string, seq: number][];
  /** Tombstones the graveyard keeps (see Graveyard), and keys it no longer keeps. */
  kept: [key: string, data: string][];
  unkept: string[];
}

/** Replaces the stored replica by an empty one (`meta`), or none (null). */
export interface WriterReset {
  kind: 'reset';
  seq: number;
  meta: string | null;
}

export interface WriterMap {
  kind: 'map';
  seq: number;
  map: string;
}

export type WriterMessage = WriterBatch | WriterReset | WriterMap | { kind: 'close' };

/** The answer to the messages of one transaction: done, or the error that rolled them all back. */
export interface WriterAnswer {
  seqs: number[];
  error?: string;
}

/** What the writer is started with: the database file, and a word set to 1 once it has closed. */
export interface WriterData {
  file: string;
  closed: SharedArrayBuffer;
}

/**
 * The SQL of every write, on one connection: a group of messages in one transaction (one fsync).
 * The writer thread uses it, and the node's own thread too for a lone small group while the writer
 * is idle (see SqliteStorage.writeBatch).
 */
export class SqlWriter {
  private readonly db: DatabaseSync;
  private readonly upsertVersion: StatementSync;
  private readonly deleteVersion: StatementSync;
  private readonly insertHint: StatementSync;
  private readonly deleteHints: StatementSync;
  private readonly upsertMeta: StatementSync;
  private readonly upsertKept: StatementSync;
  private readonly deleteKept: StatementSync;
  private readonly deleteMeta: StatementSync;

  constructor(db: DatabaseSync) {
    this.db = db;
    this.upsertVersion = db.prepare('INSERT INTO versions (key, data) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET data = excluded.data');
    this.deleteVersion = db.prepare('DELETE FROM versions WHERE key = ?');
    this.insertHint = db.prepare('INSERT OR REPLACE INTO hints (peer, seq, data) VALUES (?, ?, ?)');
    this.deleteHints = db.prepare('DELETE FROM hints WHERE peer = ? AND seq <= ?');
    this.upsertMeta = db.prepare('INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value');
    this.deleteMeta = db.prepare('DELETE FROM meta WHERE name = ?');
    this.upsertKept = db.prepare('INSERT INTO graveyard (key, data) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET data = excluded.data');
    this.deleteKept = db.prepare('DELETE FROM graveyard WHERE key = ?');
  }

  /** The group in one transaction; throws (rolled back) when it could not be written. */
  write(group: readonly (WriterBatch | WriterReset | WriterMap)[]): void {
    this.db.exec('BEGIN');
    try {
      for (const message of group) this.apply(message);
      this.db.exec('COMMIT');
    } catch (error) {
      try {
        this.db.exec('ROLLBACK');
      } catch {
        // The transaction may already be rolled back (SQLite does so on some errors).
      }
      throw error;
    }
  }

  /** One message, inside the transaction of its group. */
  private apply(message: WriterBatch | WriterReset | WriterMap): void {
    switch (message.kind) {
      case 'batch':
        for (const key of message.deletes) this.deleteVersion.run(key);
        for (const [key, row] of message.upserts) this.upsertVersion.run(key, row);
        for (const key of message.unkept) this.deleteKept.run(key);
        for (const [key, row] of message.kept) this.upsertKept.run(key, row);
        if (message.meta !== null) this.upsertMeta.run('replica', message.meta);
        // Adds first: a drop covers every seq up to its own, staged before or with it.
        for (const [peer, seq, row] of message.hintAdds) this.insertHint.run(peer, seq, row);
        for (const [peer, seq] of message.hintDrops) this.deleteHints.run(peer, seq);
        return;
      case 'reset':
        this.db.exec('DELETE FROM versions; DELETE FROM graveyard;');
        if (message.meta === null) this.deleteMeta.run('replica');
        else this.upsertMeta.run('replica', message.meta);
        return;
      case 'map':
        this.upsertMeta.run('map', message.map);
        return;
    }
  }
}

function run(port: NonNullable<typeof parentPort>, data: WriterData): void {
  const closed = new Int32Array(data.closed);
  const db = new DatabaseSync(data.file);
  db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;');
  const sql = new SqlWriter(db);

  // After a failed transaction nothing more is written: what follows it may depend on it (and after a
  // failed fsync the disk cannot be trusted), so the node stops acknowledging writes.
  let failed: string | null = null;
  const write = (group: (WriterBatch | WriterReset | WriterMap)[]): void => {
    const answer: WriterAnswer = { seqs: group.map((message) => message.seq) };
    if (failed !== null) {
      port.postMessage({ ...answer, error: `an earlier commit failed: ${failed}` });
      return;
    }
    try {
      sql.write(group);
    } catch (error) {
      answer.error = error instanceof Error ? error.message : String(error);
      failed = answer.error;
    }
    port.postMessage(answer);
  };

  port.on('message', (first: WriterMessage) => {
    // Everything posted meanwhile, in order, up to a close.
    const group: (WriterBatch | WriterReset | WriterMap)[] = [];
    let closing = false;
    for (let message: WriterMessage | undefined = first; message !== undefined; message = (receiveMessageOnPort(port)?.message as WriterMessage | undefined)) {
      if (message.kind === 'close') {
        closing = true;
        break;
      }
      group.push(message);
    }
    if (group.length > 0) write(group);
    if (closing) {
      db.close();
      Atomics.store(closed, 0, 1);
      Atomics.notify(closed, 0);
      port.close();
    }
  });
}

if (parentPort !== null && (workerData as { storageWriter?: WriterData } | null)?.storageWriter !== undefined) {
  run(parentPort, (workerData as { storageWriter: WriterData }).storageWriter);
}
