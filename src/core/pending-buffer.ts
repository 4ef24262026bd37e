import { assert } from './assert.ts';
import { versionBytes } from './json-value.ts';
import type { Clock, Dot, NodeAddress, Version } from './types.ts';
import { counterOf } from './vector-clock.ts';

/**
 * Replicated writes that arrived before their causal past, filed under their dot, bounded in count
 * and bytes (beyond, they are dropped: a pull sync repairs them). The replica drains it after every
 * apply, in each origin's order.
 */
export class PendingBuffer {
  readonly max: number;
  readonly bytesMax: number;
  /** origin -> counter -> version waiting for its causal past. */
  private readonly byOrigin = new Map<NodeAddress, Map<number, Version>>();
  private count = 0;
  private bytes = 0;

  constructor(max: number, bytesMax: number) {
    this.max = max;
    this.bytesMax = bytesMax;
  }

  get size(): number {
    return this.count;
  }

  has(dot: Dot): boolean {
    return this.byOrigin.get(dot.node)?.has(dot.counter) ?? false;
  }

  /** Buffers an early arrival within the count and byte bounds; false when it does not fit. */
  add(version: Version, dot: Dot, applied: Readonly<Clock>): boolean {
    if (this.count >= this.max) return false;
    const bytes = versionBytes(version);
    if (this.bytes + bytes > this.bytesMax) return false;
    let byCounter = this.byOrigin.get(dot.node);
    if (!byCounter) {
      byCounter = new Map();
      this.byOrigin.set(dot.node, byCounter);
    }
    // Only a write not applied and not buffered yet (the replica sorted out duplicates): counted once.
    assert(!byCounter.has(dot.counter) && dot.counter > counterOf(applied, dot.node), 'an early arrival is buffered once, and only while not applied');
    byCounter.set(dot.counter, version);
    this.count++;
    this.bytes += bytes;
    return true;
  }

  /**
   * Takes out every buffered write whose turn has come (the next of its origin after `applied()`)
   * and that `deliverable` accepts, handing each to `apply`, until none is left; returns how many.
   */
  drain(applied: () => Readonly<Clock>, deliverable: (version: Version, dot: Dot) => boolean, apply: (version: Version, dot: Dot) => void): number {
    let taken = 0;
    let progress = true;
    // Each round takes at least one write or stops, so rounds are bounded by the buffer's size.
    while (progress && this.count > 0) {
      progress = false;
      for (const [origin, byCounter] of this.byOrigin) {
        const next = counterOf(applied(), origin) + 1;
        const head = byCounter.get(next);
        if (!head || !head.dot || !deliverable(head, head.dot)) continue;
        this.remove(byCounter, next, head);
        if (byCounter.size === 0) this.byOrigin.delete(origin);
        apply(head, head.dot);
        taken++;
        progress = true;
      }
    }
    return taken;
  }

  /** Drops buffered writes that `applied` already reflects (a merged state brought them). */
  prune(applied: Readonly<Clock>): void {
    for (const [origin, byCounter] of this.byOrigin) {
      const reflected = counterOf(applied, origin);
      for (const [counter, version] of byCounter) {
        if (counter <= reflected) this.remove(byCounter, counter, version);
      }
      if (byCounter.size === 0) this.byOrigin.delete(origin);
    }
  }

  /** The buffer's invariants at O(n): filed under their dots, not applied, counted exactly, within bounds. */
  check(applied: Readonly<Clock>): void {
    let size = 0;
    let bytes = 0;
    for (const [origin, byCounter] of this.byOrigin) {
      assert(byCounter.size > 0, () => `the pending buffer keeps an empty entry for ${origin}`);
      for (const [counter, version] of byCounter) {
        assert(version.dot?.node === origin && version.dot.counter === counter, () => `a pending write is filed under ${origin}#${counter}, not its dot`);
        assert(counter > counterOf(applied, origin), () => `${origin}#${counter} is pending though applied`);
        size++;
        bytes += versionBytes(version);
      }
    }
    assert(size === this.count && bytes === this.bytes, 'the pending count and bytes match what is buffered');
    assert(size <= this.max && bytes <= this.bytesMax, 'the pending buffer stays within its count and byte bounds');
  }

  private remove(byCounter: Map<number, Version>, counter: number, version: Version): void {
    const removed = byCounter.delete(counter);
    this.count--;
    this.bytes -= versionBytes(version);
    // The count and the bytes are kept exact: an empty buffer holds no bytes.
    assert(removed && this.count >= 0 && this.bytes >= 0 && (this.count > 0 || this.bytes === 0), 'the pending count and bytes match what is buffered');
  }
}
