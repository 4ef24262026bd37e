// Copying and repairing this node's replica from its shard peers: the catch-up of a restarted
// durable node, the full copy of a node that starts, joins a shard or missed a reshard, the pulls
// of what a waiting request or a peer ahead of us has, and the anti-entropy rounds (with the
// collection of tombstones every member reflects).

import { Buffer } from 'node:buffer';
import { assert } from '../core/assert.ts';
import type { PingInfo, ReplicaView } from '../core/node-core.ts';
import { versionBytes } from '../core/json-value.ts';
import { membersOf } from '../core/shard-map.ts';
import { counterOf } from '../core/vector-clock.ts';
import type { Clock, Epoch, NodeAddress, ShardId, Version } from '../core/types.ts';
import type { NodeContext } from './context.ts';
import { JsonText, type TimerHandle } from './env.ts';
import { REPAIR_EXCHANGES_MAX, SYNC_INTERVAL_MS_MIN, TRANSFER_BYTES_MAX } from './limits.ts';
import { PeerUnreachableError, causeOf } from './peer-client.ts';
import { packedBodies } from './repair-wire.ts';
import { PeerRefusedError } from './send-versions.ts';
import { isClock, isEpochClocks, isPartitionList, isVersionList } from './wire.ts';

/** How often a stale replica's wait for its hand-off is logged. */
const STALE_LOG_EVERY_MS = 10_000;

/** What sync asks of the failure detector. */
export interface SyncDeps {
  /** Whether data may cross the link to `peer` now. */
  linkUp(peer: NodeAddress): boolean;
  /** A request to `peer` failed. */
  suspect(peer: NodeAddress, what: string): void;
}

export class Sync {
  private readonly ctx: NodeContext;
  private readonly deps: SyncDeps;
  private antiEntropyTimer: TimerHandle | null = null;
  private antiEntropyRunning = false;
  private antiEntropyNext = 0;
  /** Where the next anti-entropy exchange starts pushing, when the last one stopped at its bound. */
  private repairCursor = 0;
  /** Repair counters, shown in /status. */
  private readonly repairStats = { rounds: 0, keysRepaired: 0, bytes: 0, tombstonesCollected: 0, lastInSyncMs: 0, syncBytesReceived: 0 };
  private readonly lastSyncMs = new Map<NodeAddress, number>();
  private syncing = false;
  /** A stale replica's hand-off and copy is under way (see recopyWhenHandedOff). */
  private recopying = false;
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

  /**
   * This node's replica is stale (a peer collected tombstones it has not applied: it was away longer
   * than TOMBSTONE_GRACE_MS): once every live member of its shard holds its writes (they pull them,
   * as from any member that is ahead), it is dropped and the shard copied afresh. Checked every
   * ping interval for as long as the replica is stale; /status shows the wait.
   */
  private recopyWhenHandedOff(peer: NodeAddress): void {
    if (this.recopying) return;
    const { core, timers, log, config } = this.ctx;
    const replica = core.replica;
    if (replica === null) return;
    this.recopying = true;
    log.warn(
      { peer, applied: replica.applied, graceMs: core.tombstoneGraceMs },
      'replica is stale: a peer collected tombstones it has not applied; handing its writes to the live members, then copying the shard afresh',
    );
    const started = timers.now();
    let loggedAt = started;
    const check = (): void => {
      if (this.ctx.isClosed() || core.replica !== replica || core.stale === null) {
        this.recopying = false;
        return;
      }
      if (core.staleHandedOff()) {
        log.info({ waitedMs: timers.now() - started }, 'stale replica: the live members hold its writes; copying the shard afresh');
        this.ctx.background.run('full sync', () => this.fullSync('stale replica').finally(() => (this.recopying = false)));
        return;
      }
      if (timers.now() - loggedAt >= STALE_LOG_EVERY_MS) {
        loggedAt = timers.now();
        log.warn({ waitedMs: loggedAt - started }, 'stale replica: still waiting for the live members to hold its writes');
      }
      timers.setTimeout(check, config.pingIntervalMs);
    };
    check();
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

  /** Collects tombstones of the replica as it is now, by the members' pings of its epoch (see ReplicationCore.collectTombstones). */
  private collectTombstones(): void {
    this.repairStats.tombstonesCollected += this.ctx.step({ kind: 'collect-tombstones' });
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
      const answer = reply.body as { versions?: unknown; applied?: unknown; base?: unknown; lamport?: unknown; collected?: unknown };
      // The answer is to what the replica of then lacked: a replica started since (a copy) takes nothing of it.
      if (core.replica !== replica) return false;
      if (reply.status !== 200 || !isVersionList(answer.versions) || !isClock(answer.applied)) return false;
      const base = isEpochClocks(answer.base) ? answer.base : undefined;
      const lamport = Number.isSafeInteger(answer.lamport) ? (answer.lamport as number) : 0;
      // A peer of an earlier release sends no horizon: it collects only what every member applied.
      const collected = isClock(answer.collected) ? answer.collected : undefined;
      const outcome = this.ctx.step({ kind: 'sync-response', epoch, shard, versions: answer.versions, applied: answer.applied, base, lamport, collected, full, peer });
      if (outcome === 'stale') this.recopyWhenHandedOff(peer);
      if (outcome !== 'merged') return false;
      this.repairStats.syncBytesReceived += versionBytes(answer.versions);
      this.ctx.log.debug({ peer, reason, versions: answer.versions.length }, 'pulled missing writes');
      return true;
    } catch (error) {
      if (!(error instanceof PeerUnreachableError)) throw error;
      this.deps.suspect(peer, `pull: ${causeOf(error)}`);
      return false;
    }
  }

  /**
   * One anti-entropy round with the next shard peer in the view (so a node on probation is left
   * alone until its hold-down is over), as src/core/anti-entropy.ts describes: send our partition
   * digests; push the peer our versions of the partitions that differ that it is not known to hold,
   * one exchange per batch of about REPAIR_BYTES_MAX (in requests of about TRANSFER_BYTES_MAX);
   * while that pushed something, send the digests again at once; at most REPAIR_EXCHANGES_MAX
   * exchanges a round. Then collect tombstones every member reflects. A peer we are still pushing
   * writes to is left for the next round: its digests differ by what is in flight, and repairing
   * that would send it all twice.
   */
  private async antiEntropyRound(): Promise<void> {
    const core = this.ctx.core;
    const replica = core.replica;
    if (this.antiEntropyRunning || this.ctx.isClosed() || replica === null || !core.ready || core.reshardInProgress) return;
    const peers = core.replicationPeers();
    if (peers.length === 0) {
      // No peer to compare with (the others are down): collection still runs, by the grace.
      this.collectTombstones();
      return;
    }
    const peer = peers[this.antiEntropyNext++ % peers.length] as NodeAddress;
    const epoch = core.map.epoch;
    const shard = replica.shard;
    this.antiEntropyRunning = true;
    try {
      let exchanges = 0;
      while (exchanges < REPAIR_EXCHANGES_MAX && !this.ctx.isClosed() && core.replica === replica) {
        if (this.ctx.replicator.liveQueued(peer) > 0 || !this.deps.linkUp(peer)) break;
        const pushed = await this.repairExchange(peer, epoch, shard, REPAIR_EXCHANGES_MAX - exchanges);
        if (pushed === 0) break;
        exchanges += pushed;
      }
      this.collectTombstones();
    } catch (error) {
      // Unreachable: suspect it. Refused (its epoch or shard changed meanwhile): the next round.
      if (error instanceof PeerUnreachableError) this.deps.suspect(peer, `anti-entropy: ${causeOf(error)}`);
      else if (error instanceof PeerRefusedError) this.ctx.log.debug({ peer, err: error }, 'anti-entropy round ended early');
      else throw error;
    } finally {
      this.antiEntropyRunning = false;
    }
  }

  /**
   * Sends our digests, and pushes what the answer calls for, in at most `exchangesMax` batches.
   * Returns how many batches it pushed (0: nothing to push, the round is over).
   */
  private async repairExchange(peer: NodeAddress, epoch: Epoch, shard: ShardId, exchangesMax: number): Promise<number> {
    const { core, config, peers } = this.ctx;
    const digests = core.repairDigests(epoch, shard);
    if (digests === null) return 0;
    const request = JSON.stringify({ epoch, shard, digests, from: config.address });
    const reply = await peers.call(peer, 'POST', '/internal/digest', new JsonText(request), { timeoutMs: config.requestTimeoutMs });
    const answer = reply.body as { differing?: unknown; versions?: unknown; collected?: unknown };
    const theirs = answer.versions ?? [];
    if (reply.status !== 200 || !isPartitionList(answer.differing) || !isVersionList(theirs)) return 0;
    // The peer collected tombstones this replica has not applied: it pushes nothing (see onPeerHorizon).
    if (isClock(answer.collected) && this.ctx.step({ kind: 'peer-horizon', peer, epoch, shard, collected: answer.collected })) {
      this.recopyWhenHandedOff(peer);
      return 0;
    }
    this.repairStats.rounds++;
    this.repairStats.bytes += Buffer.byteLength(request) + versionBytes(answer.differing) + versionBytes(theirs);
    if (answer.differing.length === 0) {
      this.repairStats.lastInSyncMs = this.ctx.timers.now();
      return 0;
    }
    // A peer of an earlier release answers with its versions of those partitions: merged all the
    // same (and, as it holds them, not pushed back).
    const changedHere = theirs.length === 0 ? 0 : (this.ctx.step({ kind: 'repair', epoch, shard, versions: theirs, from: peer }) ?? 0);
    this.repairStats.keysRepaired += changedHere;
    const plan = core.repairPlan(epoch, shard, peer, answer.differing, { cursor: this.repairCursor, exchangesMax, nowMs: this.ctx.timers.now() });
    // The replica changed meanwhile (a new epoch, a copy): the round ends.
    if (plan === null) return 0;
    this.repairCursor = plan.next;
    // The batches go out as one run of requests: a batch bounds an exchange, not a request.
    const versions = plan.batches.flatMap((batch) => batch.versions);
    const changedThere = await this.pushRepair(peer, epoch, shard, versions);
    // Keys repaired here are counted above; the peer counts those it took from us.
    if (changedHere + changedThere > 0) {
      this.ctx.log.info({ peer, partitions: answer.differing.length, pushed: versions.length, changedHere, changedThere }, 'anti-entropy repaired keys');
    }
    return plan.batches.length;
  }

  /**
   * Pushes versions to the peer's /internal/repair, packed (repair-wire.ts), in requests of about
   * TRANSFER_BYTES_MAX, in order, one at a time (the next one is packed while one is on its way),
   * and tells the core what the peer took. Returns how many keys the peer changed; throws at the
   * first request that fails or is refused.
   */
  private async pushRepair(peer: NodeAddress, epoch: Epoch, shard: ShardId, versions: readonly Version[]): Promise<number> {
    const { config, peers } = this.ctx;
    let changed = 0;
    let inFlight: Promise<void> | null = null;
    // The generator packs the next body while the last one is on its way.
    for (const body of packedBodies(versions, { epoch, shard, from: config.address }, TRANSFER_BYTES_MAX)) {
      if (inFlight !== null) await inFlight;
      inFlight = peers.call(peer, 'POST', '/internal/repair', new JsonText(body.text), { timeoutMs: config.requestTimeoutMs }).then((reply) => {
        if (reply.status !== 200) throw new PeerRefusedError(`/internal/repair refused by ${peer}: ${JSON.stringify(reply.body)}`);
        this.ctx.step({ kind: 'repair-pushed', epoch, shard, peer, versions: body.versions });
        this.repairStats.bytes += Buffer.byteLength(body.text);
        changed += Number((reply.body as { changed?: unknown } | undefined)?.changed) || 0;
      });
    }
    if (inFlight !== null) await inFlight;
    return changed;
  }
}
