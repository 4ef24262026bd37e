// Copying and repairing this node's replica from its shard peers: the catch-up of a restarted
// durable node, the full copy of a node that starts, joins a shard or missed a reshard, the pulls
// of what a waiting request or a peer ahead of us has, and the anti-entropy rounds (with the
// collection of tombstones every member reflects).

import { assert } from '../core/assert.ts';
import type { PingInfo, ReplicaView } from '../core/node-core.ts';
import { versionBytes } from '../core/json-value.ts';
import { membersOf } from '../core/shard-map.ts';
import { counterOf } from '../core/vector-clock.ts';
import type { Clock, Epoch, NodeAddress, ShardId } from '../core/types.ts';
import type { NodeContext } from './context.ts';
import type { TimerHandle } from './env.ts';
import { REPAIR_EXCHANGES_MAX, SYNC_INTERVAL_MS_MIN } from './limits.ts';
import { PeerUnreachableError } from './peer-client.ts';
import { PeerRefusedError, sendVersions } from './send-versions.ts';
import { isClock, isEpochClocks, isPartitionList, isVersionList } from './wire.ts';

/** What sync asks of the failure detector. */
export interface SyncDeps {
  /** Whether data may cross the link to `peer` now. */
  linkUp(peer: NodeAddress): boolean;
  /** A request to `peer` failed. */
  suspect(peer: NodeAddress): void;
}

export class Sync {
  private readonly ctx: NodeContext;
  private readonly deps: SyncDeps;
  private antiEntropyTimer: TimerHandle | null = null;
  private antiEntropyRunning = false;
  private antiEntropyNext = 0;
  /** Repair counters, shown in /status. */
  private readonly repairStats = { rounds: 0, keysRepaired: 0, bytes: 0, tombstonesCollected: 0, lastInSyncMs: 0, syncBytesReceived: 0 };
  private readonly lastSyncMs = new Map<NodeAddress, number>();
  private syncing = false;
  private fullSyncRunning: Promise<void> | null = null;

  constructor(ctx: NodeContext, deps: SyncDeps) {
    this.ctx = ctx;
    this.deps = deps;
  }

  /** Starts the anti-entropy rounds (none with ANTI_ENTROPY_INTERVAL_MS 0). */
  startAntiEntropy(): void {
    if (this.ctx.config.antiEntropyIntervalMs > 0) {
      this.antiEntropyTimer = this.ctx.timers.setInterval(
        () => this.ctx.background.run('anti-entropy', () => this.antiEntropyRound()),
        this.ctx.config.antiEntropyIntervalMs,
      );
    }
  }

  stop(): void {
    if (this.antiEntropyTimer) this.ctx.timers.clearInterval(this.antiEntropyTimer);
  }

  /** Keys a peer's repair changed here. */
  countRepaired(keys: number): void {
    this.repairStats.keysRepaired += keys;
  }

  /** The repair part of /status. */
  repairStatus(): Record<string, unknown> {
    return {
      ...this.repairStats,
      msSinceFullSync: this.repairStats.lastInSyncMs === 0 ? null : this.ctx.timers.now() - this.repairStats.lastInSyncMs,
    };
  }

  /** A restarted durable node has all it acknowledged; it pulls only what its shard peers got meanwhile. */
  async catchUp(): Promise<void> {
    const { core, config } = this.ctx;
    const replica = core.replica;
    assert(replica !== null, 'a node restored from disk has a replica');
    const peers = (membersOf(core.map, replica.shard) ?? []).filter((n) => n !== config.address);
    for (const peer of peers) {
      if (await this.pullFrom(peer, { reason: 'restart', full: false })) break;
    }
    this.ctx.step({ kind: 'ready' });
    await this.ctx.storage.flush();
    this.ctx.log.info({ shard: replica.shard, keys: replica.liveKeyCount(), applied: replica.applied }, 'restored from disk and caught up');
  }

  /** Rebuild this node's shard copy from a shard peer: on start, on joining a shard, after a missed reshard. */
  fullSync(reason: string): Promise<void> {
    if (this.fullSyncRunning) return this.fullSyncRunning;
    this.fullSyncRunning = this.runFullSync(reason).finally(() => {
      this.fullSyncRunning = null;
    });
    return this.fullSyncRunning;
  }

  private async runFullSync(reason: string): Promise<void> {
    const { core, config, timers, log } = this.ctx;
    const started = timers.now();
    this.ctx.step({ kind: 'full-sync-begin' });
    const replica = core.replica;
    if (replica === null) {
      this.ctx.step({ kind: 'ready' });
      return;
    }
    const shard = replica.shard;
    for (const peer of core.copySources()) {
      if (this.ctx.isClosed()) return;
      if (!(await this.pullFrom(peer, { reason, full: true }))) continue;
      this.ctx.step({ kind: 'ready' });
      await this.ctx.storage.flush();
      log.info({ reason, peer, shard, keys: replica.size, ms: timers.now() - started }, 'shard copied from peer');
      return;
    }
    // Nobody could serve us (a fresh store, or all peers down): serve what we have. Clients whose
    // metadata names writes we lack still get 503, never stale data.
    this.ctx.step({ kind: 'ready' });
    log.info({ reason, shard, ms: timers.now() - started }, 'no shard peer could send its data; serving as is');
  }

  /** A request waits for old-epoch writes handed over late: ask a shard peer whose base may be ahead. */
  syncBase(): void {
    for (const peer of this.ctx.core.replicationPeers()) {
      if (this.ctx.timers.now() - (this.lastSyncMs.get(peer) ?? 0) < SYNC_INTERVAL_MS_MIN || !this.deps.linkUp(peer)) continue;
      this.startPull(peer, 'request waiting for old-epoch writes');
      return;
    }
  }

  /** Ask the peers that have what a waiting request needs. */
  syncFromAhead(lacking: Clock): void {
    const peer = this.ctx.core.peerWithAny(lacking, (candidate) => this.deps.linkUp(candidate));
    if (peer !== null) this.startPull(peer, 'request waiting');
  }

  startPull(peer: NodeAddress, reason: string): void {
    this.ctx.background.run('pull sync', () => this.pullSync(peer, reason));
  }

  private async pullSync(peer: NodeAddress, reason: string): Promise<void> {
    const now = this.ctx.timers.now();
    if (this.syncing || this.ctx.core.replica === null || !this.ctx.core.ready) return;
    if (now - (this.lastSyncMs.get(peer) ?? 0) < SYNC_INTERVAL_MS_MIN) return;
    this.syncing = true;
    this.lastSyncMs.set(peer, now);
    try {
      await this.pullFrom(peer, { reason, full: false });
    } finally {
      this.syncing = false;
    }
  }

  /**
   * Asks a shard peer for what this replica lacks (everything, with `full`) and merges it. True when
   * the peer answered with its state; false when it could not (unreachable, not ready, other epoch).
   */
  private async pullFrom(peer: NodeAddress, { reason, full }: { reason: string; full: boolean }): Promise<boolean> {
    const core = this.ctx.core;
    const replica = core.replica;
    if (replica === null) return false;
    const epoch = core.map.epoch;
    const shard = replica.shard;
    try {
      const reply = await this.ctx.peers.call(
        peer,
        'POST',
        '/internal/sync',
        { epoch, shard, since: full ? {} : replica.applied, full, base: replica.base },
        { timeoutMs: this.ctx.config.requestTimeoutMs },
      );
      const answer = reply.body as { versions?: unknown; applied?: unknown; base?: unknown; lamport?: unknown };
      if (reply.status !== 200 || !isVersionList(answer.versions) || !isClock(answer.applied)) return false;
      const base = isEpochClocks(answer.base) ? answer.base : undefined;
      const lamport = Number.isSafeInteger(answer.lamport) ? (answer.lamport as number) : 0;
      if (!this.ctx.step({ kind: 'sync-response', epoch, shard, versions: answer.versions, applied: answer.applied, base, lamport })) return false;
      this.repairStats.syncBytesReceived += versionBytes(answer.versions);
      this.ctx.log.debug({ peer, reason, versions: answer.versions.length }, 'pulled missing writes');
      return true;
    } catch (error) {
      if (!(error instanceof PeerUnreachableError)) throw error;
      this.deps.suspect(peer);
      return false;
    }
  }

  /**
   * One anti-entropy round with the next shard peer in the view (so a node on probation is left
   * alone until its hold-down is over): send our partition digests, merge the peer's versions of the
   * partitions that differ, send ours of them back; the peer answers with a bounded number of bytes,
   * so while it says there is more, exchange again (at most REPAIR_EXCHANGES_MAX times). Then collect
   * tombstones every member reflects. A peer we are still pushing writes to is left for the next
   * round: its digests differ by what is in flight, and repairing that would send it all twice.
   */
  private async antiEntropyRound(): Promise<void> {
    const core = this.ctx.core;
    const replica = core.replica;
    if (this.antiEntropyRunning || this.ctx.isClosed() || replica === null || !core.ready || core.reshardInProgress) return;
    const peers = core.replicationPeers();
    if (peers.length === 0) return;
    const peer = peers[this.antiEntropyNext++ % peers.length] as NodeAddress;
    if (this.ctx.replicator.liveQueued(peer) > 0 || !this.deps.linkUp(peer)) return;
    const epoch = core.map.epoch;
    const shard = replica.shard;
    this.antiEntropyRunning = true;
    try {
      for (let exchange = 0; exchange < REPAIR_EXCHANGES_MAX && !this.ctx.isClosed(); exchange++) {
        if (!(await this.repairExchange(peer, epoch, shard, replica))) break;
      }
      // Of the replica as it is now, by the members' pings of its epoch (see appliedEverywhere).
      this.repairStats.tombstonesCollected += this.ctx.step({ kind: 'collect-tombstones' });
    } catch (error) {
      // Unreachable: suspect it. Refused (its epoch or shard changed meanwhile): the next round.
      if (error instanceof PeerUnreachableError) this.deps.suspect(peer);
      else if (error instanceof PeerRefusedError) this.ctx.log.debug({ peer, err: error }, 'anti-entropy round ended early');
      else throw error;
    } finally {
      this.antiEntropyRunning = false;
    }
  }

  /** One digest exchange of an anti-entropy round; true when the peer has more differing partitions. */
  private async repairExchange(peer: NodeAddress, epoch: Epoch, shard: ShardId, replica: ReplicaView): Promise<boolean> {
    const { core, config, peers } = this.ctx;
    const digests = core.repairDigests(epoch, shard);
    if (digests === null) return false;
    const reply = await peers.call(peer, 'POST', '/internal/digest', { epoch, shard, digests, from: config.address }, {
      timeoutMs: config.requestTimeoutMs,
    });
    const answer = reply.body as { differing?: unknown; versions?: unknown; more?: unknown };
    if (reply.status !== 200 || !isPartitionList(answer.differing) || !isVersionList(answer.versions)) return false;
    this.repairStats.rounds++;
    this.repairStats.bytes += versionBytes(answer.versions);
    if (answer.differing.length === 0) {
      this.repairStats.lastInSyncMs = this.ctx.timers.now();
      return false;
    }
    const changedHere = this.ctx.step({ kind: 'repair', epoch, shard, versions: answer.versions }) ?? 0;
    const ours = core.repairVersions(epoch, shard, answer.differing);
    // The replica changed meanwhile (a new epoch, a copy): the round ends.
    if (ours === null) return false;
    const pushed = await sendVersions(peers, peer, ours, { path: '/internal/repair', fields: { epoch, shard }, timeoutMs: config.requestTimeoutMs });
    this.repairStats.bytes += pushed.bytes;
    const changedThere = pushed.answers.reduce<number>((sum, a) => sum + (Number((a as { changed?: unknown } | undefined)?.changed) || 0), 0);
    // Keys repaired here; the peer counts those it took from us.
    this.repairStats.keysRepaired += changedHere;
    if (changedHere + changedThere > 0) {
      this.ctx.log.info({ peer, partitions: answer.differing.length, changedHere, changedThere }, 'anti-entropy repaired keys');
    }
    return answer.more === true && core.replica === replica;
  }
}
