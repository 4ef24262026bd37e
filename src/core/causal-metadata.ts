import type { CausalMetadata, Clock, Epoch, ShardClocks } from './types.ts';
import { mergeShardClocks } from './vector-clock.ts';

/** Bounds on what a client may send back, so a forged blob cannot make a node do unbounded work. */
export const METADATA_SHARDS_MAX = 256;
export const METADATA_NODES_PER_SHARD_MAX = 1024;
const SHARD_ID_LENGTH_MAX = 64;
const NODE_LENGTH_MAX = 300;

export type ParsedMetadata =
  | { ok: true; metadata: CausalMetadata | null }
  | { ok: false; reason: string };

/**
 * Accepts null/undefined (a client's first request) or metadata this store minted. Anything else is
 * rejected with a reason, never trusted.
 */
export function parseCausalMetadata(raw: unknown): ParsedMetadata {
  if (raw === null || raw === undefined) return { ok: true, metadata: null };
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    return { ok: false, reason: 'causal-metadata must be null or an object this store returned' };
  }
  const candidate = raw as Record<string, unknown>;
  if (candidate.v !== 1 || !isEpoch(candidate.e) || !isPlainObject(candidate.c)) {
    return { ok: false, reason: 'causal-metadata was not issued by this store' };
  }
  const shards = Object.entries(candidate.c);
  if (shards.length > METADATA_SHARDS_MAX) return { ok: false, reason: 'causal-metadata names too many shards' };
  const clocks: ShardClocks = {};
  for (const [shard, clock] of shards) {
    if (shard.length > SHARD_ID_LENGTH_MAX || shard === '__proto__' || !isPlainObject(clock)) {
      return { ok: false, reason: 'causal-metadata was not issued by this store' };
    }
    const entries = Object.entries(clock);
    if (entries.length > METADATA_NODES_PER_SHARD_MAX) {
      return { ok: false, reason: 'causal-metadata names too many nodes' };
    }
    const parsed: Clock = {};
    for (const [node, counter] of entries) {
      if (node.length > NODE_LENGTH_MAX || node === '__proto__' || !Number.isSafeInteger(counter) || (counter as number) < 1) {
        return { ok: false, reason: 'causal-metadata was not issued by this store' };
      }
      parsed[node] = counter as number;
    }
    clocks[shard] = parsed;
  }
  return { ok: true, metadata: { v: 1, e: candidate.e, c: clocks } };
}

/** The clocks of `metadata` that still count at `epoch`: older epochs are satisfied by the reshard. */
export function clocksAtEpoch(metadata: CausalMetadata | null, epoch: Epoch): ShardClocks {
  if (metadata === null || metadata.e !== epoch) return {};
  return metadata.c;
}

export function makeMetadata(epoch: Epoch, clocks: ShardClocks): CausalMetadata {
  return { v: 1, e: epoch, c: clocks };
}

export function mergeIntoMetadata(epoch: Epoch, base: ShardClocks, extra: ShardClocks): CausalMetadata {
  return makeMetadata(epoch, mergeShardClocks(base, extra));
}

function isEpoch(value: unknown): value is Epoch {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
