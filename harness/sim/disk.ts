// A simulated disk for durable nodes: what survives a crash is what the last group commit wrote.
// SimStorage is the runtime's own GroupCommitStorage (src/node/storage.ts), the staging and grouped
// commits SqliteStorage uses, over an in-memory "disk" instead of SQLite: a commit lands after a
// simulated fsync, and a crash before that loses what was staged, and nothing else. Everything is
// copied in and out, so no object is shared between a node and its disk.

import type { Epoch, NodeAddress, ShardId, ShardMap, Version } from '../../src/core/types.ts';
import type { Timers } from '../../src/node/env.ts';
import type { Hint } from '../../src/node/replicator.ts';
import { GroupCommitStorage, type CommitBatch, type ReplicaMeta, type SavedState, type Storage } from '../../src/node/storage.ts';

/** What is on one node's disk. It outlives the node's processes. */
export class SimDisk {
  map: ShardMap | null = null;
  replica: ReplicaMeta | null = null;
  versions = new Map<string, Version>();
  /** Tombstones the graveyard keeps (see Graveyard). */
  graveyard = new Map<string, Version>();
  hints = new Map<NodeAddress, Map<number, Hint>>();
}

const copy = <T>(value: T): T => structuredClone(value);

/** Key -> version (or null: gone) onto a table of the disk. */
function applyRows(table: Map<string, Version>, changes: ReadonlyMap<string, Version | null>): void {
  for (const [key, version] of changes) {
    if (version === null) table.delete(key);
    else table.set(key, copy(version));
  }
}

export class SimStorage extends GroupCommitStorage implements Storage {
  readonly #disk: SimDisk;
  readonly #timers: Timers;
  readonly #fsyncMs: () => number;

  constructor(disk: SimDisk, timers: Timers, fsyncMs: () => number) {
    super();
    this.#disk = disk;
    this.#timers = timers;
    this.#fsyncMs = fsyncMs;
  }

  load(): SavedState {
    const disk = this.#disk;
    const map = disk.map === null ? null : copy(disk.map);
    if (disk.replica === null) return { map, replica: null };
    const replica = copy(disk.replica);
    const versions = [...disk.versions.values()].map(copy);
    const graveyard = [...disk.graveyard.values()].map(copy);
    // Checked against the digest committed with it, as SqliteStorage does (throws on a mismatch).
    this.loaded(replica, versions, graveyard);
    return { map, replica: { ...replica, versions, graveyard } };
  }

  saveMap(map: ShardMap): void {
    this.#disk.map = copy(map);
  }

  loadHints(): Map<NodeAddress, Hint[]> {
    const out = new Map<NodeAddress, Hint[]>();
    for (const [peer, bySeq] of this.#disk.hints) {
      const list = [...bySeq.values()].sort((a, b) => a.seq - b.seq).map(copy);
      if (list.length > 0) out.set(peer, list);
    }
    return out;
  }

  close(): void {
    this.commit();
  }

  protected writeReset(replica: { epoch: Epoch; shard: ShardId } | null): void {
    this.#disk.versions.clear();
    this.#disk.graveyard.clear();
    this.#disk.replica = replica === null ? null : { epoch: replica.epoch, shard: replica.shard, applied: {}, lamport: 0 };
  }

  protected scheduleCommit(commit: () => void): void {
    this.#timers.setTimeout(commit, this.#fsyncMs());
  }

  protected writeBatch(batch: CommitBatch): void {
    const disk = this.#disk;
    applyRows(disk.versions, batch.versions);
    applyRows(disk.graveyard, batch.graveyard);
    if (batch.meta !== null) disk.replica = copy(batch.meta);
    for (const { peer, hint } of batch.hintAdds) {
      let bySeq = disk.hints.get(peer);
      if (!bySeq) disk.hints.set(peer, (bySeq = new Map()));
      bySeq.set(hint.seq, copy(hint));
    }
    for (const [peer, seq] of batch.hintDrops) {
      const bySeq = disk.hints.get(peer);
      if (bySeq) for (const s of [...bySeq.keys()]) if (s <= seq) bySeq.delete(s);
    }
  }

  protected commitFailed(): void {
    // The in-memory disk does not fail.
  }
}
