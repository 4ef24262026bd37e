import { isNodeAddress } from './address.ts';

import { membersOf } from './shard-map.ts';

import type { Clock, Epoch, EpochClocks, NodeAddress, ShardId, Version } from './types.ts';

import { clockLacks, epochClocksCover } from './vector-clock.ts';

import { appliedEverywhere, digestAnswer, PeerHoldings, repairPlan, type RepairPlan } from './anti-entropy.ts';

import { type PingInfo } from './contract.ts';

import { CoreState } from './core-state.ts';


/** What replicas of a shard exchange: pushed writes, pulls, anti-entropy, tombstone collection, pings. */
export class ReplicationCore extends CoreState {
  /** What each shard peer is known to hold, from anti-entropy both ways (see PeerHoldings). */
  private readonly peerHoldings = new PeerHoldings();

  /** Writes pushed by a shard peer. A push for another epoch or shard is refused (the peer's map differs). */
  protected onReplicate(epoch: Epoch, shard: ShardId, versions: Version[]): { ok: true; applied: Clock } | { ok: false; reason: string } {
    const replica = this.currentReplica;
    if (epoch !== this.currentMap.epoch || replica === null || replica.shard !== shard) {
      return { ok: false, reason: `not a replica of ${shard} at epoch ${epoch}` };
    }
    replica.deliver(versions);
    return { ok: true, applied: { ...replica.applied } };
  }

  /**
   * A peer asks what it lacks: writes past its clock `since` (everything, with `full`). When our base
   * reflects old writes that its base (`base`) does not, the answer also carries every base version
   * and what our base reflects. Only a ready replica of the same shard and epoch answers.
   */
  protected onSyncRequest(
    epoch: Epoch,
    shard: ShardId,
    since: Clock,
    full: boolean,
    base?: EpochClocks,
  ): { ok: true; versions: Version[]; applied: Clock; lamport: number; base?: EpochClocks } | { ok: false; reason: string } {
    const replica = this.currentReplica;
    if (epoch !== this.currentMap.epoch || replica === null || replica.shard !== shard || !this.isReady) {
      return { ok: false, reason: `not a ready replica of ${shard} at epoch ${epoch}` };
    }
    const withBase = full || (base !== undefined && !epochClocksCover(base, replica.base));
    // A full copy starts from nothing; a pull also carries the tombstones collected here with dots
    // the puller lacks (it takes our clock, and must not keep what they deleted).
    const from = full ? {} : since;
    const includeBase = withBase;
    const includeCollected = !full;
    const versions = replica.versionsSince(from, { base: includeBase, collected: includeCollected });
    const answer = { ok: true as const, versions, applied: { ...replica.applied }, lamport: replica.lamport };
    return withBase ? { ...answer, base: { ...replica.base } } : answer;
  }

  /** A peer's answer to our sync request; `base` is present when it sent its whole base. */
  protected onSyncResponse(epoch: Epoch, shard: ShardId, versions: Version[], applied: Clock, base?: EpochClocks, lamport = 0): boolean {
    const replica = this.currentReplica;
    if (epoch !== this.currentMap.epoch || replica === null || replica.shard !== shard) return false;
    replica.mergeState(versions, applied, base, lamport);
    return true;
  }

  /**
   * Anti-entropy, answering side: a peer of the same shard and epoch sends its partition digests;
   * we name the partitions that differ (see digestAnswer). No versions: the asker pushes its own,
   * and we push ours in our rounds (`versions` stays empty and `more` false, for askers that read them).
   */
  protected onDigestRequest(
    epoch: Epoch,
    shard: ShardId,
    digests: readonly number[],
  ): { ok: true; differing: number[]; versions: Version[]; more: boolean } | { ok: false; reason: string } {
    const replica = this.currentReplica;
    if (epoch !== this.currentMap.epoch || replica === null || replica.shard !== shard || !this.isReady) {
      return { ok: false, reason: `not a ready replica of ${shard} at epoch ${epoch}` };
    }
    return { ok: true, differing: digestAnswer(replica, digests).differing, versions: [], more: false };
  }

  /** Anti-entropy, asking side: this replica's partition digests, if it is still the replica of `shard` at `epoch`. */
  repairDigests(epoch: Epoch, shard: ShardId): number[] | null {
    const replica = this.currentReplica;
    return epoch === this.currentMap.epoch && replica !== null && replica.shard === shard ? replica.digests() : null;
  }

  /**
   * Anti-entropy, asking side: what to push `peer` of the partitions it named as differing, past
   * what it is known to hold (see repairPlan); null when the replica changed meanwhile.
   */
  repairPlan(
    epoch: Epoch,
    shard: ShardId,
    peer: NodeAddress,
    differing: readonly number[],
    { cursor, exchangesMax, nowMs }: { cursor: number; exchangesMax: number; nowMs: number },
  ): RepairPlan | null {
    const replica = this.currentReplica;
    if (epoch !== this.currentMap.epoch || replica === null || replica.shard !== shard) return null;
    return repairPlan(replica, differing, this.peerHoldings.of(peer, epoch, this.links.incarnationOf(peer), nowMs), cursor, exchangesMax);
  }

  /** Anti-entropy, asking side: `peer` took these versions we pushed it (it holds them, or better). */
  protected onRepairPushed(epoch: Epoch, shard: ShardId, peer: NodeAddress, versions: readonly Version[], nowMs: number): void {
    const replica = this.currentReplica;
    if (epoch !== this.currentMap.epoch || replica === null || replica.shard !== shard) return;
    this.peerHoldings.learn(peer, epoch, this.links.incarnationOf(peer), versions, nowMs);
  }

  /**
   * Anti-entropy repair: versions a replica of the same shard and epoch holds. Returns how many
   * changed our state. A late transfer (see lateTransfers) comes this way too, and its last part says
   * what of an earlier epoch the whole transfer reflects. `from`: the peer that pushed them, which
   * holds them (they are not pushed back to it, see PeerHoldings).
   */
  protected onRepair(epoch: Epoch, shard: ShardId, versions: Version[], reflected: EpochClocks | undefined, from: NodeAddress | null, nowMs: number): number | null {
    const replica = this.currentReplica;
    if (epoch !== this.currentMap.epoch || replica === null || replica.shard !== shard) return null;
    // A late transfer into a replica frozen for a reshard could arrive after this node's transfers
    // were read, and be dropped with the replica at the commit: the sender tries again later.
    if (reflected !== undefined && this.pendingReshard !== null) return null;
    const changed = replica.repair(versions);
    if (reflected !== undefined) replica.addBase(reflected);
    else if (from !== null && from !== this.self) this.peerHoldings.learn(from, epoch, this.links.incarnationOf(from), versions, nowMs);
    return changed;
  }

  /**
   * Collects the tombstones every member of the shard reflects (see appliedEverywhere), as the
   * members' pings of this epoch tell (`peerApplied` replaces them: tests).
   */
  protected collectTombstones(peerApplied?: ReadonlyMap<NodeAddress, Clock>): number {
    const replica = this.currentReplica;
    if (replica === null || !this.isReady) return 0;
    if (this.bugs.has('forget-tombstones')) return replica.collectTombstones({ ...replica.applied }, { remember: false });
    const clocks = peerApplied ?? this.peers.appliedAt(this.currentMap.epoch, replica.shard);
    const everywhere = appliedEverywhere(replica, membersOf(this.currentMap, replica.shard) ?? [], this.self, clocks);
    return everywhere === null ? 0 : replica.collectTombstones(everywhere);
  }

  pingInfo(): PingInfo {
    return {
      address: this.self,
      epoch: this.currentMap.epoch,
      mapDigest: this.currentMapDigest,
      shard: this.currentReplica?.shard ?? null,
      ready: this.isReady,
      applied: { ...(this.currentReplica?.applied ?? {}) },
      view: this.membership.view(),
    };
  }

  /**
   * A member answered a probe with `info`: remember it, learn of the nodes in its view (probed
   * before they are admitted), and say whether to fetch its map (it differs) and whether to pull
   * from it, and why. Nothing is pulled over a link held down (`linkUp`, as the runtime found it just before): a replica
   * that was cut off does not catch up behind its clients' backs the moment it reconnects. Only what
   * the peer already had one ping ago is pulled: what it has just now is usually still in flight to
   * us; nor what its pushes to us are still bringing (under load replication lags a ping or more,
   * and pulling the same versions again would double the work of a busy peer).
   */
  protected onPingAnswer(peer: NodeAddress, info: PingInfo, nowMs: number, linkUp: boolean): { learned: NodeAddress[]; fetchMap: boolean; pull: string | null } {
    const previous = this.peers.heard(peer, info);
    const learned: NodeAddress[] = [];
    for (const node of Array.isArray(info.view) ? info.view : []) {
      if (isNodeAddress(node) && this.membership.learn(node, nowMs)) learned.push(node);
    }
    const fetchMap = info.mapDigest !== this.currentMapDigest;
    if (!linkUp) return { learned, fetchMap, pull: null };
    const pushing = typeof info.replicating === 'number' && info.replicating > 0;
    let pull: string | null = null;
    if (previous && !pushing && this.peerIsAhead({ ...info, applied: previous.applied })) pull = 'behind peer';
    else if (this.currentReplica && this.currentReplica.pendingCount > 0 && previous && this.peerIsAhead(info)) pull = 'gap in replication';
    return { learned, fetchMap, pull };
  }

  /** A peer that has some of what a waiting request lacks, among the members `usable` accepts. */
  peerWithAny(lacking: Clock, usable: (peer: NodeAddress) => boolean): NodeAddress | null {
    return this.peers.aheadFor(lacking, (peer) => this.membership.has(peer) && usable(peer));
  }

  /** A peer left the view: what it said no longer counts. */
  protected forgetPeer(peer: NodeAddress): void {
    this.peers.forget(peer);
  }

  /**
   * The members of this node's shard to copy it from, in order: those in the view over links that
   * are up first (the others would refuse or not answer), then the held ones, then the rest.
   */
  copySources(): NodeAddress[] {
    const replica = this.currentReplica;
    if (replica === null) return [];
    const members = (membersOf(this.currentMap, replica.shard) ?? []).filter((n) => n !== this.self);
    const rank = (n: NodeAddress) => (this.membership.has(n) ? 0 : 2) + (this.links.isHeld(n) ? 1 : 0);
    return [...members].sort((x, y) => rank(x) - rank(y));
  }

  /** True when a peer's ping shows writes of our shard that we lack, and it can serve them. */
  peerIsAhead(peer: PingInfo): boolean {
    const replica = this.currentReplica;
    if (!peer.ready || replica === null || peer.epoch !== this.currentMap.epoch || peer.shard !== replica.shard) return false;
    return Object.keys(clockLacks(replica.applied, peer.applied)).length > 0;
  }
}
