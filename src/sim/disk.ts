// A simulated disk for durable nodes: what survives a crash is what the last group commit wrote.
// SimStorage keeps the contract of SqliteStorage (src/node/storage.ts): changes staged in the same
// moment share one commit, which lands after a simulated fsync; `flush()` resolves once it has.
// A crash before that loses what was staged, and nothing else. Everything is copied in and out, so
// no object is shared between a node and its disk.

import type { Clock, Epoch, NodeAddress, ShardId, ShardMap, Version } from '../core/types.ts';
import type { Timers } from '../node/env.ts';
import type { Hint, HintLog } from '../node/replicator.ts';
import type { SavedState, Storage } from '../node/storage.ts';

interface ReplicaMeta {
  epoch: Epoch;
  shard: ShardId;
  applied: Clock;
  lamport: number;
}

/** What is on one node's disk. It outlives the node's processes. */
export class SimDisk {
  map: ShardMap | null = null;
  replica: ReplicaMeta | null = null;
  versions = new Map<string, Version>();
  hints = new Map<NodeAddress, Map<number, Hint>>();
  commits = 0;
}

const copy = <T>(value: T): T => structuredClone(value);

export class SimStorage implements Storage {
  readonly durable = true;
  readonly #disk: SimDisk;
  readonly #timers: Timers;
  readonly #fsyncMs: () => number;
  #replicaMeta: { epoch: Epoch; shard: ShardId } | null = null;
  #stagedVersions = new Map<string, Version | null>();
  #stagedMeta: ReplicaMeta | null = null;
  #stagedHintAdds: { peer: NodeAddress; hint: Hint }[] = [];
  #stagedHintDrops = new Map<NodeAddress, number>();
  #waiters: (() => void)[] = [];
  #scheduled = false;
  #committedApplied: Clock = {};

  readonly hints: HintLog = {
    add: (peer, hints) => {
      for (const hint of hints) this.#stagedHintAdds.push({ peer, hint: copy(hint) });
      this.#schedule();
    },
    drop: (peer, seq) => {
      this.#stagedHintDrops.set(peer, Math.max(seq, this.#stagedHintDrops.get(peer) ?? 0));
      this.#schedule();
    },
  };

  constructor(disk: SimDisk, timers: Timers, fsyncMs: () => number) {
    this.#disk = disk;
    this.#timers = timers;
    this.#fsyncMs = fsyncMs;
  }

  load(): SavedState {
    const disk = this.#disk;
    const map = disk.map === null ? null : copy(disk.map);
    if (disk.replica === null) return { map, replica: null };
    this.#replicaMeta = { epoch: disk.replica.epoch, shard: disk.replica.shard };
    this.#committedApplied = copy(disk.replica.applied);
    return { map, replica: { ...copy(disk.replica), versions: [...disk.versions.values()].map(copy) } };
  }

  saveMap(map: ShardMap): void {
    this.#disk.map = copy(map);
  }

  resetReplica(replica: { epoch: Epoch; shard: ShardId } | null): void {
    const current = this.#replicaMeta;
    if (replica !== null && current !== null && replica.epoch === current.epoch && replica.shard === current.shard) return;
    this.#stagedVersions.clear();
    this.#stagedMeta = null;
    this.#disk.versions.clear();
    this.#disk.replica = replica === null ? null : { epoch: replica.epoch, shard: replica.shard, applied: {}, lamport: 0 };
    this.#replicaMeta = replica;
    this.#committedApplied = {};
  }

  stage(change: { versions: Version[]; removed: string[] }, applied: Clock, lamport: number): void {
    if (this.#replicaMeta === null) return;
    for (const version of change.versions) this.#stagedVersions.set(version.key, copy(version));
    for (const key of change.removed) this.#stagedVersions.set(key, null);
    this.#stagedMeta = { ...this.#replicaMeta, applied: { ...applied }, lamport };
    this.#schedule();
  }

  flush(): Promise<void> {
    if (!this.#scheduled && !this.#hasStaged()) return Promise.resolve();
    return new Promise((resolve) => {
      this.#waiters.push(resolve);
      this.#schedule();
    });
  }

  durableApplied(): Clock {
    return this.#committedApplied;
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
    this.#commit();
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    this.#timers.setTimeout(() => this.#commit(), this.#fsyncMs());
  }

  #commit(): void {
    this.#scheduled = false;
    const waiters = this.#waiters;
    this.#waiters = [];
    if (this.#hasStaged()) {
      const disk = this.#disk;
      for (const [key, version] of this.#stagedVersions) {
        if (version === null) disk.versions.delete(key);
        else disk.versions.set(key, version);
      }
      const meta = this.#stagedMeta;
      if (meta !== null) disk.replica = meta;
      for (const { peer, hint } of this.#stagedHintAdds) {
        let bySeq = disk.hints.get(peer);
        if (!bySeq) disk.hints.set(peer, (bySeq = new Map()));
        bySeq.set(hint.seq, hint);
      }
      for (const [peer, seq] of this.#stagedHintDrops) {
        const bySeq = disk.hints.get(peer);
        if (bySeq) for (const s of [...bySeq.keys()]) if (s <= seq) bySeq.delete(s);
      }
      if (meta !== null) this.#committedApplied = meta.applied;
      this.#stagedVersions = new Map();
      this.#stagedMeta = null;
      this.#stagedHintAdds = [];
      this.#stagedHintDrops = new Map();
      disk.commits++;
    }
    for (const resolve of waiters) resolve();
  }

  #hasStaged(): boolean {
    return this.#stagedMeta !== null || this.#stagedHintAdds.length > 0 || this.#stagedHintDrops.size > 0;
  }
}
