import { assert } from './assert.ts';
import type { Clock, Stamp, Version } from './types.ts';

/**
 * Collected tombstones remembered per replica by default (GRAVEYARD_MAX), so an old version arriving
 * late cannot bring a deleted key back. About 100 bytes each in memory.
 */
export const GRAVEYARD_MAX = 100_000;

/**
 * A replica's collected tombstones, by key: at most `max`.
 *
 * Most are a help: collected when every member had applied the delete and this replica had every
 * member's own writes (see appliedByKnownMembers), so no write the tombstone must win over is still
 * on its way here. Those are forgotten oldest first when the graveyard is full, and not kept on disk.
 *
 * A tombstone collected *without* a member (past the tombstone grace, see tombstone-grace.ts) is
 * different: that member's own writes, concurrent with the delete, arrive when it comes back, and
 * only the remembered tombstone says they lost. Such entries are *kept*: never forgotten for room,
 * written to disk with the replica (so a restart in between does not take them back: the replicas
 * that remember would differ for ever from one that does not), and a collection without a member
 * that would not fit in the room left does not happen. They become ordinary entries once a
 * collection round hears from every member again, has their own writes, and finds none stale (the
 * member is back and has copied its shard afresh). What changed among the kept ones since the
 * runtime last took it is `takeKeptChanges`.
 */
export class Graveyard {
  /** Entries that may be forgotten for room, oldest first. */
  private readonly forgettable = new Map<string, Version>();
  /** Entries collected without a member: never forgotten for room, kept on disk. */
  private readonly keptEntries = new Map<string, Version>();
  /** Keys whose kept entry was added (the tombstone) or dropped (null) since the last take. */
  private keptChanges = new Map<string, Version | null>();
  readonly max: number;

  constructor(max: number = GRAVEYARD_MAX) {
    assert(Number.isSafeInteger(max) && max >= 0, 'the graveyard bound is a natural number');
    this.max = max;
  }

  /** Kept entries that may still be added: a collection without a member of more tombstones waits. */
  get room(): number {
    return this.max - this.keptEntries.size;
  }

  get kept(): number {
    return this.keptEntries.size;
  }

  /**
   * The tombstone of `key` was just collected, `kept` when without a member. A later tombstone
   * replaces an earlier one's place; it stays kept if the earlier one was (it buries all that one did).
   */
  remember(key: string, tombstone: Version, kept: boolean): void {
    const wasKept = this.keptEntries.delete(key);
    this.forgettable.delete(key);
    if (kept || wasKept) {
      assert(this.keptEntries.size < this.max, 'a tombstone collected without a member fits in the graveyard');
      this.keptEntries.set(key, tombstone);
      this.keptChanges.set(key, tombstone);
    } else {
      this.forgettable.set(key, tombstone);
    }
    while (this.forgettable.size + this.keptEntries.size > this.max) {
      const oldest = this.forgettable.keys().next();
      assert(oldest.done !== true, 'a graveyard over its bound holds an entry that is not kept');
      this.forgettable.delete(oldest.value);
    }
  }

  /** Kept entries found on disk at a restart (at most the bound: the disk held no more). */
  restore(tombstones: readonly Version[]): void {
    for (const tombstone of tombstones) {
      if (this.keptEntries.size >= this.max) break;
      this.forgettable.delete(tombstone.key);
      this.keptEntries.set(tombstone.key, tombstone);
    }
  }

  forget(key: string): void {
    this.forgettable.delete(key);
    if (this.keptEntries.delete(key)) this.keptChanges.set(key, null);
  }

  /** Every member is heard from again and this replica has their writes: no entry is load-bearing any more. */
  release(): void {
    for (const [key, tombstone] of this.keptEntries) {
      this.forgettable.set(key, tombstone);
      this.keptChanges.set(key, null);
    }
    this.keptEntries.clear();
  }

  /** The stamp of `key`'s remembered tombstone, if any. */
  stampOf(key: string): Stamp | undefined {
    return (this.keptEntries.get(key) ?? this.forgettable.get(key))?.stamp;
  }

  /** Remembered tombstones of keys `stored` says are not stored, with a dot newer than `since`. */
  newerThan(since: Clock, stored: (key: string) => boolean): Version[] {
    const out: Version[] = [];
    for (const entries of [this.forgettable, this.keptEntries]) {
      for (const [key, tombstone] of entries) {
        const dot = tombstone.dot;
        if (dot !== null && !stored(key) && dot.counter > (since[dot.node] ?? 0)) out.push(tombstone);
      }
    }
    return out;
  }

  /** Kept entries added (the tombstone) or dropped (null) since the last call, by key. */
  takeKeptChanges(): Map<string, Version | null> {
    const changes = this.keptChanges;
    this.keptChanges = new Map();
    return changes;
  }

  get keptChangeCount(): number {
    return this.keptChanges.size;
  }

  /**
   * Collected tombstones, within the bound, none stamped above `lamport` (a write after a
   * collection must still win over the tombstone at the replicas that keep it), no key in both parts.
   */
  check(lamport: number): void {
    assert(this.forgettable.size + this.keptEntries.size <= this.max, 'the graveyard stays within its bound');
    for (const entries of [this.forgettable, this.keptEntries]) {
      for (const [key, tombstone] of entries) {
        assert(tombstone.key === key && tombstone.deleted && tombstone.dot !== null, () => `the graveyard entry of ${key} is a collected tombstone`);
        assert(tombstone.stamp.lamport <= lamport, () => `the tombstone of ${key} is stamped above the Lamport time`);
      }
    }
    for (const key of this.keptEntries.keys()) assert(!this.forgettable.has(key), () => `the graveyard holds ${key} once`);
  }
}
