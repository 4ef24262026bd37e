import type { NodeContext } from './context.ts';
import { droppedMembers } from '../core/shard-map.ts';
import { readLoopDelay } from './loop-delay.ts';
import { VERSION } from './version.ts';

/** The parts of /status that other concerns keep. */
export interface StatusSources {
  /** Links held down, and the counts of holds and releases. */
  linkStatus(): Record<string, unknown>;
  /** Repair counters. */
  repairStatus(): Record<string, unknown>;
  /** Late transfers (after a missed reshard) still trying to reach the new owners. */
  lateTransfers(): number;
  /** Key-value requests answered since start. */
  requests(): Record<string, unknown>;
  /** The reshard this node coordinates, with its progress (null: none). */
  reshard(): object | null;
}

/**
 * Tombstones and their collection: how many the replica holds and how long ago this node applied
 * the oldest (`oldestAgeAtLeast`: it was applied before this node's oldest checkpoint, or came with
 * a reshard, so it may be older), the grace, the members not heard from that collection waits for
 * (`blockedBy`: within the grace, or without a majority) or goes on without (`collectingWithout`), the
 * horizon collected up to, whether this replica is stale (away longer than the grace), and the
 * tombstones the graveyard keeps for members collected without (`kept`, at most `keptMax`;
 * `graveyardFull`: collection without them waits, what it would collect does not fit).
 */
export function tombstoneStatus(ctx: NodeContext): Record<string, unknown> {
  const { core, timers } = ctx;
  const now = timers.now();
  const { held, oldestAgeMs, atLeast } = core.tombstoneStatus(now);
  const { blockedBy, collectingWithout, graveyardFull, kept, keptMax } = core.collectionStatus;
  const stale = core.stale;
  return {
    held,
    oldestAgeMs,
    oldestAgeAtLeast: atLeast,
    graceMs: core.tombstoneGraceMs,
    blockedBy,
    collectingWithout,
    collectedUpTo: { ...(core.replica?.collected ?? {}) },
    kept,
    keptMax,
    graveyardFull,
    stale: stale === null ? null : { forMs: now - stale.sinceMs, peer: stale.peer, handedOff: core.staleHandedOff() },
  };
}

/** The /status document: what this node is, holds and has done since it started. */
export function nodeStatus(ctx: NodeContext, sources: StatusSources): Record<string, unknown> {
  const { core, timers } = ctx;
  const replica = core.replica;
  return {
    address: ctx.config.address,
    ready: core.ready,
    version: VERSION,
    /** The node's process on its machine (kvs cluster tells its own nodes from another store's by it). */
    pid: process.pid,
    epoch: core.map.epoch,
    mode: core.map.mode,
    shard: core.shard,
    view: core.view(),
    onProbation: core.onProbation(),
    incarnation: ctx.incarnation,
    /** Links held down after a failure (no data crosses them), and how many holds and releases so far. */
    links: sources.linkStatus(),
    keys: replica?.liveKeyCount() ?? 0,
    versions: replica?.size ?? 0,
    applied: replica?.applied ?? {},
    /** What of `applied` is on disk (null without DATA_DIR). */
    durableApplied: ctx.storage.durableApplied(),
    pendingEarlyWrites: replica?.pendingCount ?? 0,
    replication: ctx.replicator.snapshot(),
    repair: sources.repairStatus(),
    tombstones: tombstoneStatus(ctx),
    /** Addresses dropped from a shard of this epoch as members that never joined (see MEMBER_JOIN_GRACE_MS). */
    droppedMembers: droppedMembers(core.map),
    reshardInProgress: core.reshardInProgress?.map.epoch ?? null,
    /** A reshard coordinated here: its phase, and the partitions and keys handed over of all that move. */
    reshard: sources.reshard(),
    requests: sources.requests(),
    lateTransfers: sources.lateTransfers(),
    uptimeMs: timers.now() - ctx.startedMs,
    backgroundFailures: ctx.background.snapshot(),
    memory: { rssBytes: process.memoryUsage.rss() },
    eventLoop: readLoopDelay(),
  };
}
