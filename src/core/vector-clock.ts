import type { Clock, EpochClocks, ShardClocks } from './types.ts';

// Clocks are plain objects keyed by node address, shard id or epoch, all checked at the edges
// (none can be a prototype name); reads still take own entries only, so an inherited name can
// never pass for a counter.

/** The counter of `node` in `clock` (0: none). */
export function counterOf(clock: Clock, node: string): number {
  return Object.hasOwn(clock, node) ? (clock[node] as number) : 0;
}

/** An own entry of a record, or undefined. */
function own<T>(record: Record<string, T>, key: string): T | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}

/** Pointwise maximum; inputs are not changed. */
export function mergeClocks(a: Clock, b: Clock): Clock {
  const out: Clock = { ...a };
  for (const [node, counter] of Object.entries(b)) {
    if (counter > counterOf(out, node)) out[node] = counter;
  }
  return out;
}

/** True when `have` reflects everything `need` names. */
export function clockCovers(have: Clock, need: Clock): boolean {
  for (const [node, counter] of Object.entries(need)) {
    if (counterOf(have, node) < counter) return false;
  }
  return true;
}

/** The entries of `need` that `have` lacks, as node -> needed counter. */
export function clockLacks(have: Clock, need: Clock): Clock {
  const out: Clock = {};
  for (const [node, counter] of Object.entries(need)) {
    if (counterOf(have, node) < counter) out[node] = counter;
  }
  return out;
}

export function clocksEqual(a: Clock, b: Clock): boolean {
  return clockCovers(a, b) && clockCovers(b, a);
}

export function mergeShardClocks(a: ShardClocks, b: ShardClocks): ShardClocks {
  const out: ShardClocks = { ...a };
  for (const [shard, clock] of Object.entries(b)) {
    const mine = own(out, shard);
    out[shard] = mine ? mergeClocks(mine, clock) : { ...clock };
  }
  return out;
}

/** Adds one write's dot to shard clocks. */
export function withDot(clocks: ShardClocks, shard: string, node: string, counter: number): ShardClocks {
  const clock = own(clocks, shard) ?? {};
  if (counterOf(clock, node) >= counter) return clocks;
  return { ...clocks, [shard]: { ...clock, [node]: counter } };
}

/** Pointwise minimum of shard clocks: an entry absent from either is absent. */
export function minShardClocks(a: ShardClocks, b: ShardClocks): ShardClocks {
  const out: ShardClocks = {};
  for (const [shard, clockA] of Object.entries(a)) {
    const clockB = own(b, shard);
    if (clockB === undefined) continue;
    const min: Clock = {};
    for (const [node, counter] of Object.entries(clockA)) {
      const other = own(clockB, node);
      if (other !== undefined) min[node] = Math.min(counter, other);
    }
    out[shard] = min;
  }
  return out;
}

export function mergeEpochClocks(a: EpochClocks, b: EpochClocks): EpochClocks {
  const out: EpochClocks = { ...a };
  for (const [epoch, clocks] of Object.entries(b)) {
    const mine = own(out, epoch);
    out[epoch] = mine ? mergeShardClocks(mine, clocks) : { ...clocks };
  }
  return out;
}

/** Pointwise minimum: an epoch, shard or node absent from either is absent. */
export function minEpochClocks(a: EpochClocks, b: EpochClocks): EpochClocks {
  const out: EpochClocks = {};
  for (const [epoch, clocks] of Object.entries(a)) {
    const other = own(b, epoch);
    if (other !== undefined) out[epoch] = minShardClocks(clocks, other);
  }
  return out;
}

/** True when `have` reflects everything `need` names, in every epoch and shard. */
export function epochClocksCover(have: EpochClocks, need: EpochClocks): boolean {
  for (const [epoch, clocks] of Object.entries(need)) {
    for (const [shard, clock] of Object.entries(clocks)) {
      const haveShards = own(have, epoch);
      if (!clockCovers((haveShards && own(haveShards, shard)) ?? {}, clock)) return false;
    }
  }
  return true;
}

/** Only the epochs from `first` up to `last` (inclusive); empty clocks dropped. */
export function epochClocksWithin(clocks: EpochClocks, first: number, last: number): EpochClocks {
  const out: EpochClocks = {};
  for (const [epoch, shards] of Object.entries(clocks)) {
    const e = Number(epoch);
    if (e < first || e > last) continue;
    const kept: ShardClocks = {};
    for (const [shard, clock] of Object.entries(shards)) if (Object.keys(clock).length > 0) kept[shard] = clock;
    if (Object.keys(kept).length > 0) out[epoch] = kept;
  }
  return out;
}

/** `clock` without `node`'s entry (the same object when it has none). */
export function withoutNode(clock: Clock, node: string): Clock {
  if (!(node in clock)) return clock;
  const { [node]: _omit, ...rest } = clock;
  return rest;
}
