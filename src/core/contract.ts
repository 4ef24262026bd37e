import type { PlantedBug } from './planted-bugs.ts';
import type { Replica } from './replica.ts';
import type { CausalMetadata, Clock, Epoch, EpochClocks, NodeAddress, ShardId, ShardMap, Version } from './types.ts';

// What goes into the core and what comes out of it: the requests it decides, the decisions, and
// the shapes of what it hands the runtime to persist or send. Everything the runtime and the
// simulator see of the core's answers is typed here.

/** Bytes of versions (approximate JSON) one anti-entropy exchange pushes; the rest is left for the next exchange. */
export const REPAIR_BYTES_MAX = 4 * 1024 * 1024;

export interface NodeCoreOptions {
  self: NodeAddress;
  /** Early replicated writes a replica buffers before dropping (sync repairs what is dropped). */
  pendingMax: number;
  /** Bytes of early replicated writes buffered per replica (default PENDING_BYTES_MAX). */
  pendingBytesMax?: number;
  failuresToRemove: number;
  holdDownMs: number;
  /** A probe unanswered this long (or answered later) is a failure of the link (default 500 ms). */
  probeLateMs?: number;
  /**
   * Without a cluster secret the store cannot tell its own metadata by a MAC: metadata may then
   * name only shards and nodes this store has (or had); anything else is 400 (default true).
   */
  checkMetadataOrigin?: boolean;
  /** Test-only (see planted-bugs.ts): never set outside the simulator. */
  plantedBugs?: ReadonlySet<PlantedBug>;
  /** How long a request waits for its causal dependencies (default CAUSAL_WAIT_MS). */
  causalWaitMs?: number;
  /** How long a write waits for a reshard to commit (default RESHARD_WAIT_MS). */
  reshardWaitMs?: number;
  /** How long a member may be unheard of before tombstones are collected without it (default TOMBSTONE_GRACE_MS_DEFAULT). */
  tombstoneGraceMs?: number;
  /** Collected tombstones each replica remembers (default GRAVEYARD_MAX). */
  graveyardMax?: number;
  /** How long a member never heard from may be out of the view before it is dropped from its shard (default MEMBER_JOIN_GRACE_MS_DEFAULT). */
  memberJoinGraceMs?: number;
}

export type KvMethod = 'GET' | 'PUT' | 'DELETE';

export interface Reply {
  status: number;
  body: Record<string, unknown>;
}

/**
 * Why a request cannot be served yet; the runtime waits (bounded) for the state to change, then asks
 * again. 'handover': the client depends on writes of an earlier epoch that have not reached this
 * replica yet (a node that missed the reshard still has to hand them over, or a peer has them).
 */
export type WaitReason = 'syncing' | 'epoch' | 'reshard' | 'causal' | 'handover';

export type KvWait = { kind: 'wait'; reason: WaitReason; detail?: Clock };

/**
 * What to do with a client's key-value request. A reply that carries `replicate` is a write applied
 * here: the runtime makes it durable, then sends it to `peers`, then replies (in that order).
 * `lateMs`: a forwarded write refused because it arrived after its deadline (worth a log line).
 */
export type KvDecision =
  | { kind: 'reply'; reply: Reply; replicate?: { epoch: Epoch; shard: ShardId; peers: NodeAddress[]; version: Version }; lateMs?: number }
  | { kind: 'forward'; shard: ShardId; targets: NodeAddress[] }
  | KvWait;

/** A key-value request as checked once on arrival (`parseKv`): what a parked request keeps. */
export interface KvRequest {
  method: KvMethod;
  key: string;
  /** A PUT's value, checked. */
  value: unknown;
  metadata: CausalMetadata | null;
  /** A forwarded write's deadline, ms since 1970 (null: not forwarded, or a read). */
  deadlineMs: number | null;
}

/** A request parked until a state change lets it go on; the runtime arms a timer for `deadlineMs`. */
export interface ParkedDecision {
  kind: 'parked';
  ticket: number;
  deadlineMs: number;
  wait: KvWait;
}

/** A parked request a state change let go on, with what to do now. */
export interface Released {
  ticket: number;
  decision: Exclude<KvDecision, KvWait>;
}

/** Default MEMBER_JOIN_GRACE_MS: how long a member never heard from may stay out of the view before it is dropped (10 minutes). */
export const MEMBER_JOIN_GRACE_MS_DEFAULT = 10 * 60 * 1000;

/** How long a request waits for its causal dependencies in all, by default (CAUSAL_WAIT_MS). */
export const CAUSAL_WAIT_MS = 1000;
/** How long a write waits for a reshard in progress to commit, by default (see src/node/limits.ts for why). */
export const RESHARD_WAIT_MS = 4000;


/** What a node answers to a peer's ping: enough for the peer to notice it is behind. */
export interface PingInfo {
  address: NodeAddress;
  epoch: Epoch;
  mapDigest: string;
  shard: ShardId | null;
  ready: boolean;
  applied: Clock;
  /** The pinged node's view: how nodes learn of others whose announcement they missed. */
  view: NodeAddress[];
  /**
   * Versions the pinged node is still pushing to the pinging one (absent: none, or not told). While
   * they flow, the pinging node does not pull what they will bring.
   */
  replicating?: number;
  /** The pinged process's incarnation: a new one means it restarted (see Links). */
  incarnation?: string;
  /** The pinged node's replica is stale (absent: it is not): it hands its writes over and is copied afresh. */
  stale?: boolean;
}

/**
 * The replica a node dropped because it missed a reshard: its versions (in base form) and what they
 * reflect of their epoch, for the keys' new owners.
 */
export interface Orphaned {
  versions: Version[];
  reflected: EpochClocks;
}

/** What a durable node keeps of its replica across restarts. */
export interface SavedReplica {
  epoch: Epoch;
  shard: ShardId;
  applied: Clock;
  lamport: number;
  versions: Version[];
  /** What the replica's base reflects of earlier epochs (absent in directories of older releases). */
  base?: EpochClocks;
  /** The replica's collection horizon (see Replica.collected; absent in directories of older releases). */
  collected?: Clock;
  /** Tombstones collected without a member, kept until it is back (see Graveyard; absent in older releases). */
  graveyard?: Version[];
}

/**
 * `orphaned`: the versions of a replica this node dropped because it missed a reshard (it was cut
 * off, or down). It may have acknowledged writes in the old epoch that no transfer carried; the
 * runtime sends them on to their new owners (lateTransfers), so nothing acknowledged is lost.
 */
export type MapChange = { changed: false } | { changed: true; needsFullSync: boolean; orphaned: Orphaned | null };


/**
 * A reshard's commit at this node: `committed` (or it already was), `not-prepared` (no reshard of
 * that epoch prepared here), or `missed`: prepared but not counted by the coordinator, so it takes
 * the new map as a node that missed the reshard (the runtime carries out `change`).
 */
export type CommitOutcome = { outcome: 'committed' | 'not-prepared' } | { outcome: 'missed'; change: MapChange };

/** What the disk must hold after a step (Step.persist), staged in this order. */
export interface Persist {
  /** The replica was replaced: the disk's copy starts over (null: this node is in no shard now). */
  reset?: { replica: { epoch: Epoch; shard: ShardId } | null };
  /** The replica's changes since the last call, with its clocks. */
  replica?: { changes: ReturnType<Replica['takeDirty']>; applied: Readonly<Clock>; lamport: number; base: Readonly<EpochClocks>; collected: Readonly<Clock> };
  /** The shard map changed. */
  map?: ShardMap;
}
