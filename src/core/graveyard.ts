import { assert } from './assert.ts';
import type { Stamp, Version } from './types.ts';

/**
 * Collected tombstones remembered per replica by default (GRAVEYARD_MAX), so an old version arriving
 * late cannot bring a deleted key back. Beyond this many, the oldest are forgotten (about 100 bytes
 * each). The graveyard is a help, not what safety rests on: it is bounded and kept in memory only.
 */
export const GRAVEYARD_MAX = 100_000;

/** A replica's last collected tombstones, by key: at most `max`, the oldest forgotten first. */
export class Graveyard {
  private readonly tombstones = new Map<string, Version>();
  readonly max: number;

  constructor(max: number = GRAVEYARD_MAX) {
    assert(Number.isSafeInteger(max) && max >= 0, 'the graveyard bound is a natural number');
    this.max = max;
  }

  /** The tombstone of `key` was just collected (a later one replaces an earlier one's place). */
  remember(key: string, tombstone: Version): void {
    this.tombstones.delete(key);
    this.tombstones.set(key, tombstone);
    if (this.tombstones.size > this.max) {
      const oldest = this.tombstones.keys().next();
      assert(oldest.done !== true, 'a graveyard over its bound is not empty');
      this.tombstones.delete(oldest.value);
    }
  }

  forget(key: string): void {
    this.tombstones.delete(key);
  }

  /** The stamp of `key`'s remembered tombstone, if any. */
  stampOf(key: string): Stamp | undefined {
    return this.tombstones.get(key)?.stamp;
  }

  entries(): IterableIterator<[string, Version]> {
    return this.tombstones.entries();
  }

  /**
   * Collected tombstones, within the bound, none stamped above `lamport` (a write after a
   * collection must still win over the tombstone at the replicas that keep it).
   */
  check(lamport: number): void {
    assert(this.tombstones.size <= this.max, 'the graveyard stays within its bound');
    for (const [key, tombstone] of this.tombstones) {
      assert(tombstone.key === key && tombstone.deleted && tombstone.dot !== null, () => `the graveyard entry of ${key} is a collected tombstone`);
      assert(tombstone.stamp.lamport <= lamport, () => `the tombstone of ${key} is stamped above the Lamport time`);
    }
  }
}
