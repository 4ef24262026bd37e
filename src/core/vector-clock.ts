import type { Clock, ShardClocks } from './types.ts';

/** Pointwise maximum; inputs are not changed. */
export function mergeClocks(a: Clock, b: Clock): Clock {
  const out: Clock = { ...a };
  for (const [node, counter] of Object.entries(b)) {
    if (counter > (out[node] ?? 0)) out[node] = counter;
  }
  return out;
}

/** True when `have` reflects everything `need` names. */
export function clockCovers(have: Clock, need: Clock): boolean {
  for (const [node, counter] of Object.entries(need)) {
    if ((have[node] ?? 0) < counter) return false;
  }
  return true;
}

/** The entries of `need` that `have` lacks, as node -> needed counter. */
export function clockLacks(have: Clock, need: Clock): Clock {
  const out: Clock = {};
  for (const [node, counter] of Object.entries(need)) {
    if ((have[node] ?? 0) < counter) out[node] = counter;
  }
  return out;
}

export function clocksEqual(a: Clock, b: Clock): boolean {
  return clockCovers(a, b) && clockCovers(b, a);
}

export function mergeShardClocks(a: ShardClocks, b: ShardClocks): ShardClocks {
  const out: ShardClocks = { ...a };
  for (const [shard, clock] of Object.entries(b)) {
    const mine = out[shard];
    out[shard] = mine ? mergeClocks(mine, clock) : { ...clock };
  }
  return out;
}

/** Adds one write's dot to shard clocks. */
export function withDot(clocks: ShardClocks, shard: string, node: string, counter: number): ShardClocks {
  const clock = clocks[shard] ?? {};
  if ((clock[node] ?? 0) >= counter) return clocks;
  return { ...clocks, [shard]: { ...clock, [node]: counter } };
}
