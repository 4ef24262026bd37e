// Types shared by the pure core. Nothing here does I/O.

/**
 * A node's `host:port` (an IPv4 address or a host name), as in SOCKET_ADDRESS and VIEW. Branded: values enter through `isNodeAddress`
 * or `nodeAddress` (src/core/address.ts), so a shard id cannot stand in for an address.
 */
export type NodeAddress = string & { readonly __brand: 'NodeAddress' };
/**
 * A shard's id ("s0", "s1", ...); clients treat it as an opaque string. Branded: values enter
 * through `isShardId` or `shardIdFor` (src/core/shard-map.ts).
 */
export type ShardId = string & { readonly __brand: 'ShardId' };
/** A shard map's generation; it grows by one with every reshard. */
export type Epoch = number & { readonly __brand: 'Epoch' };

/**
 * A vector clock: for each origin node, the highest counter of its writes that is reflected.
 * Keys are node addresses, typed `string` (not `NodeAddress`): clocks are built from JSON and
 * object literals, and `Object.keys` yields strings anyway. Indexing with a `NodeAddress` works.
 */
export type Clock = Record<string, number>;
/** Clocks of several shards of one epoch, keyed by shard id (typed `string`, as in `Clock`). */
export type ShardClocks = Record<string, Clock>;
/**
 * Clocks of earlier epochs: epoch (as a decimal string) -> shard -> clock. What a client depends on
 * from before a reshard, and what a replica's base reflects of those epochs.
 */
export type EpochClocks = Record<string, ShardClocks>;

/** The identity of one write: the n-th write coordinated by `node` in this shard and epoch. */
export interface Dot {
  node: NodeAddress;
  counter: number;
}

/** Conflict order of versions of one key: later epoch wins, then higher lamport, then higher node address. */
export interface Stamp {
  /** The epoch the write was made in (absent: 0). */
  epoch?: Epoch;
  lamport: number;
  node: NodeAddress;
}

/** One stored version of a key; deletes are versions too (tombstones). */
export interface Version {
  key: string;
  /** The stored JSON value; undefined for a tombstone. */
  value?: unknown;
  deleted: boolean;
  /**
   * The write's dot in the current epoch; null for a base version carried over a reshard (its dot
   * and dependencies then live on in `past`).
   */
  dot: Dot | null;
  stamp: Stamp;
  /** What the writer had seen (same epoch as the dot), all shards: carried into readers' metadata. */
  deps: ShardClocks;
  /**
   * What the write depends on from earlier epochs (absent: nothing). A base version also names its
   * own dot and deps here, under the epoch it was written in. Carried into readers' metadata.
   */
  past?: EpochClocks;
  /** A base version's write: the epoch, shard and dot it was made with (absent on a write). */
  origin?: Origin;
}

export interface Origin {
  epoch: Epoch;
  shard: ShardId;
  node: NodeAddress;
  counter: number;
}

/** The metadata a client carries between requests (opaque to clients). */
export interface CausalMetadata {
  /** Format version of this encoding. */
  v: 1;
  /** Shard map epoch the clocks belong to. */
  e: Epoch;
  c: ShardClocks;
  /** What the client depends on from epochs before `e` (absent: nothing). */
  o?: EpochClocks;
}

export type ShardMapMode = 'replicated' | 'sharded';

/**
 * Which node holds which key. Within one epoch only members are ever added (so replicas merge
 * maps by union); a new epoch (a reshard) replaces the map.
 */
export interface ShardMap {
  epoch: Epoch;
  /** replicated: started without SHARD_COUNT; one shard, and nodes that join the view join it. */
  mode: ShardMapMode;
  /** Partition index -> shard id; length PARTITION_COUNT. */
  partitions: ShardId[];
  /** Shard id -> members, sorted by address (keys typed `string`, as in `Clock`). */
  shards: Record<string, NodeAddress[]>;
  /**
   * Shard id -> address -> how many times its membership of the shard changed in this epoch, plus
   * one: odd while it is a member (listed in `shards`), even once dropped (a member that never
   * joined, see dropNeverJoined). Only addresses dropped at least once appear (count 2 or more); an
   * address listed without a count has count 1. Absent: none was ever dropped. Maps merge by the
   * higher count, so a drop and a later re-join both reach every node whatever the order.
   */
  membershipCounts?: Record<string, Record<string, number>>;
}
