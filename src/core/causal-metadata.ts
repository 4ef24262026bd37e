import { isNodeAddress } from './address.ts';
import { isShardId } from './shard-map.ts';
import type { CausalMetadata, Clock, Epoch, EpochClocks, ShardClocks } from './types.ts';
import { epochClocksWithin, mergeEpochClocks, mergeShardClocks } from './vector-clock.ts';

/**
 * How many reshards back a client's dependencies are still checked. A dependency from before
 * that counts as satisfied: its write had that many reshards to reach the new owners.
 */
export const OLD_EPOCHS_MAX = 8;

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
  if (candidate.v !== 1 || !isEpoch(candidate.e)) {
    return { ok: false, reason: 'causal-metadata was not issued by this store' };
  }
  const clocks = parseShardClocks(candidate.c);
  if (typeof clocks === 'string') return { ok: false, reason: clocks };
  const metadata: CausalMetadata = { v: 1, e: candidate.e, c: clocks };
  if (candidate.o !== undefined) {
    if (!isPlainObject(candidate.o)) return { ok: false, reason: 'causal-metadata was not issued by this store' };
    const epochs = Object.entries(candidate.o);
    if (epochs.length > OLD_EPOCHS_MAX) return { ok: false, reason: 'causal-metadata names too many epochs' };
    const old: EpochClocks = {};
    for (const [epoch, shardClocks] of epochs) {
      if (!isEpochKey(epoch) || Number(epoch) >= candidate.e) {
        return { ok: false, reason: 'causal-metadata was not issued by this store' };
      }
      const parsed = parseShardClocks(shardClocks);
      if (typeof parsed === 'string') return { ok: false, reason: parsed };
      old[epoch] = parsed;
    }
    metadata.o = old;
  }
  return { ok: true, metadata };
}

/** An epoch as a key of EpochClocks: a decimal safe integer, no leading zeros. */
export function isEpochKey(key: string): boolean {
  return /^(0|[1-9][0-9]{0,14})$/.test(key);
}

/** Shard clocks as this store mints them, or why not. */
function parseShardClocks(raw: unknown): ShardClocks | string {
  if (!isPlainObject(raw)) return 'causal-metadata was not issued by this store';
  const shards = Object.entries(raw);
  if (shards.length > METADATA_SHARDS_MAX) return 'causal-metadata names too many shards';
  const clocks: ShardClocks = {};
  for (const [shard, clock] of shards) {
    if (shard.length > SHARD_ID_LENGTH_MAX || !isShardId(shard) || !isPlainObject(clock)) {
      return 'causal-metadata was not issued by this store';
    }
    const entries = Object.entries(clock);
    if (entries.length > METADATA_NODES_PER_SHARD_MAX) return 'causal-metadata names too many nodes';
    const parsed: Clock = {};
    for (const [node, counter] of entries) {
      if (node.length > NODE_LENGTH_MAX || !isNodeAddress(node) || !Number.isSafeInteger(counter) || (counter as number) < 1) {
        return 'causal-metadata was not issued by this store';
      }
      parsed[node] = counter as number;
    }
    clocks[shard] = parsed;
  }
  return clocks;
}

/** What a client depends on, seen from a node at `epoch`. */
export interface Dependencies {
  /** Writes of `epoch` itself, by shard: a replica checks its applied clock. */
  clocks: ShardClocks;
  /**
   * Writes of the OLD_EPOCHS_MAX epochs before, by epoch and shard: they reach a new epoch as base
   * data (a reshard's transfers, or a late transfer from a node that missed it); a replica checks
   * what its base reflects.
   */
  old: EpochClocks;
}

/** The dependencies of `metadata` at `epoch` (not older than it: the caller waits for that epoch first). */
export function dependenciesAt(metadata: CausalMetadata | null, epoch: Epoch): Dependencies {
  if (metadata === null) return { clocks: {}, old: {} };
  let old = metadata.o ?? {};
  if (metadata.e < epoch) old = mergeEpochClocks(old, { [String(metadata.e)]: metadata.c });
  return {
    clocks: metadata.e === epoch ? metadata.c : {},
    old: epochClocksWithin(old, epoch - OLD_EPOCHS_MAX, epoch - 1),
  };
}

export function makeMetadata(epoch: Epoch, clocks: ShardClocks, old: EpochClocks = {}): CausalMetadata {
  const kept = epochClocksWithin(old, epoch - OLD_EPOCHS_MAX, epoch - 1);
  return Object.keys(kept).length === 0 ? { v: 1, e: epoch, c: clocks } : { v: 1, e: epoch, c: clocks, o: kept };
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
