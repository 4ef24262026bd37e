import type { ShardClocks } from './types.ts';

// What a stored version shares with other versions instead of holding its own copy. A replica
// holds one version per key, and a node may hold millions of keys: a few dozen bytes per version
// are most of the memory once the value itself is counted (see bench/memory.ts).

/**
 * The one empty `deps` every version without dependencies points to (most writes: a client with no
 * metadata). Frozen, so a mutation throws (the core is strict mode) instead of changing every
 * version at once; nothing mutates a version's deps (clocks are merged into new objects).
 */
export const EMPTY_SHARD_CLOCKS: ShardClocks = Object.freeze({}) as ShardClocks;

/** True when `record` has no own enumerable key (a clock or deps with no entry). */
export function isEmptyRecord(record: object): boolean {
  for (const key in record) if (Object.hasOwn(record, key)) return false;
  return true;
}

/** Node addresses a replica keeps one copy of: far more than a store has nodes (LINKS_MAX is 1024). */
export const ADDRESSES_INTERNED_MAX = 4096;

/**
 * One copy of each of a few strings (node addresses): versions decoded from JSON each carry their
 * own copy of the same address in `dot.node`, `stamp.node` and `origin.node`, and this gives them
 * one shared string instead. Bounded by count: once `max` strings are held, a new one is returned
 * as it is (no eviction, so what is held never changes under a caller). Interning changes no value,
 * only which equal string a field points to.
 */
export class Interner {
  private readonly table = new Map<string, string>();
  readonly max: number;

  constructor(max: number) {
    this.max = max;
  }

  get size(): number {
    return this.table.size;
  }

  intern<T extends string>(text: T): T {
    const held = this.table.get(text);
    if (held !== undefined) return held as T;
    if (this.table.size < this.max) this.table.set(text, text);
    return text;
  }
}
