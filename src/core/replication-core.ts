import { isNodeAddress, sortAddresses } from './address.ts';

import { membersOf } from './shard-map.ts';

import type { Clock, Epoch, EpochClocks, NodeAddress, ShardId, Version } from './types.ts';

import { clockCovers, clockLacks, epochClocksCover } from './vector-clock.ts';

import { digestAnswer, PeerHoldings, repairPlan, type RepairPlan } from './anti-entropy.ts';

import { AppliedHistory, appliedByKnownMembers, clockMin, TOMBSTONE_GRACE_MS_DEFAULT } from './tombstone-grace.ts';

import type { Replica } from './replica.ts';

import { type PingInfo } from './contract.ts';

import { CoreState } from './core-state.ts';


/** What replicas of a shard exchange: pushed writes, pulls, anti-entropy, tombstone collection, pings. */
export class ReplicationCore extends CoreState {
  /** What each shard peer is known to hold, from anti-entropy both ways (see PeerHoldings). */
  private readonly peerHoldings = new PeerHoldings();
  /** When the current replica had applied what, for the tombstone grace (a new replica starts a new one). */
  private history: { replica: Replica; applied: AppliedHistory } | null = null;
  /** What the last collection could not count: members whose applied clock this node does not know, and whether it went on without them. */
  private lastCollection: { notCounted: NodeAddress[]; withoutThem: boolean; graveyardFull: boolean } = { notCounted: [], withoutThem: false, graveyardFull: false };
  /** Since when each member has been unheard of (no ping of this epoch and shard), by the collections that found it so. */
  private readonly missingSince = new Map<NodeAddress, number>();
  /**
   * Set when a peer's collection horizon showed the current replica stale (see onSyncResponse): it is
   * not merged with peers' states any more, pushes nothing in anti-entropy, and is replaced by a
   * fresh copy once the live members hold its writes (staleHandedOff). Tied to the replica: a new
   * replica is not stale.
   */
  private staleReplica: { replica: Replica; sinceMs: number; peer: NodeAddress } | null = null;

  /** How long a member may be unknown before tombstones are collected without it (TOMBSTONE_GRACE_MS). */
  get tombstoneGraceMs(): number {
    return this.options.tombstoneGraceMs ?? TOMBSTONE_GRACE_MS_DEFAULT;
  }

  /** The current replica is stale: since when, and which peer's horizon showed it. */
  get stale(): { sinceMs: number; peer: NodeAddress } | null {
    const stale = this.staleReplica;
    return stale !== null && stale.replica === this.currentReplica ? { sinceMs: stale.sinceMs, peer: stale.peer } : null;
  }

  /**
   * A peer of this replica's shard and epoch collected tombstones up to `collected`: if this replica
   * has not applied all of them, it may still hold versions they deleted, and becomes stale (unless
   * the planted bug stale-replica-merge). Returns whether the replica is stale now.
   */
  protected onPeerHorizon(peer: NodeAddress, epoch: Epoch, shard: ShardId, collected: Clock, nowMs: number): boolean {
    const replica = this.currentReplica;
    if (epoch !== this.currentMap.epoch || replica === null || replica.shard !== shard) return false;
    if (this.stale !== null) return true;
    if (clockCovers(replica.applied, collected) || this.bugs.has('stale-replica-merge')) return false;
    this.staleReplica = { replica, sinceMs: nowMs, peer };
    return true;
  }

  /**
   * A stale replica's writes are with the live members: every member of its shard this node knows
   * the applied clock of (from pings of this epoch, so in the view) covers this replica's, and there
   * is one. Until then the members pull what they lack from it, as from any member that is ahead.
   */
  staleHandedOff(): boolean {
    const replica = this.currentReplica;
    if (replica === null || this.stale === null) return false;
    const members = new Set(membersOf(this.currentMap, replica.shard) ?? []);
    let live = 0;
    for (const [member, clock] of this.peers.appliedAt(this.currentMap.epoch, replica.shard)) {
      // A member that is stale too drops its replica as well: not the one to hold our writes.
      if (!members.has(member) || member === this.self || this.peers.saidStale(member)) continue;
      if (!clockCovers(clock, replica.applied)) return false;
      live++;
    }
    return live > 0;
  }

  /**
   * The members the last collection round that decided did not hear from (a round skipped for a
   * live member's writes still on their way keeps the verdict before it): those it waits for (`blockedBy`: unheard of
   * for less than the grace, or this node does not hear from a majority) or went on without
   * (`collectingWithout`). One of the two is empty. `graveyardFull`: past the grace, but what it
   * would collect without them does not fit in the graveyard's room (see Graveyard), so it waits.
   */
  get collectionStatus(): { blockedBy: NodeAddress[]; collectingWithout: NodeAddress[]; graveyardFull: boolean; kept: number; keptMax: number } {
    const { notCounted, withoutThem, graveyardFull } = this.lastCollection;
    const graveyard = { graveyardFull, kept: this.currentReplica?.graveyard.kept ?? 0, keptMax: this.currentReplica?.graveyard.max ?? 0 };
    return withoutThem ? { blockedBy: [], collectingWithout: [...notCounted], ...graveyard } : { blockedBy: [...notCounted], collectingWithout: [], ...graveyard };
  }

  /**
   * Tombstones the replica holds, and how long ago this node applied the oldest of them: by the
   * grace's checkpoints, so to within TOMBSTONE_GRACE_MS / 32; one applied before the first
   * checkpoint (or a base tombstone) counts from the first checkpoint, and `atLeast` says so.
   */
  tombstoneStatus(nowMs: number): { held: number; oldestAgeMs: number | null; atLeast: boolean } {
    const replica = this.currentReplica;
    if (replica === null) return { held: 0, oldestAgeMs: null, atLeast: false };
    const all = replica.tombstones();
    const held = all.length;
    if (held === 0) return { held, oldestAgeMs: null, atLeast: false };
    const dots = all.filter((dot) => dot !== null);
    const history = this.history?.replica === replica ? this.history.applied : null;
    const since = history?.sinceMs ?? nowMs;
    let oldest = nowMs;
    let atLeast = dots.length < held;
    for (const dot of dots) {
      const at = history?.appliedAt(dot.node, dot.counter) ?? nowMs;
      if (at <= since) atLeast = true;
      if (at < oldest) oldest = at;
    }
    if (atLeast) oldest = Math.min(oldest, since);
    return { held, oldestAgeMs: nowMs - oldest, atLeast };
  }

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
  ): { ok: true; versions: Version[]; applied: Clock; lamport: number; base?: EpochClocks; collected: Clock } | { ok: false; reason: string } {
    const replica = this.currentReplica;
    if (epoch !== this.currentMap.epoch || replica === null || replica.shard !== shard || !this.isReady) {
      return { ok: false, reason: `not a ready replica of ${shard} at epoch ${epoch}` };
    }
    // A stale replica hands its writes over (a pull), but is no one's copy: it may hold what was deleted.
    if (full && this.stale !== null) return { ok: false, reason: `a stale replica of ${shard}: copy from another member` };
    const withBase = full || (base !== undefined && !epochClocksCover(base, replica.base));
    // A full copy starts from nothing; both carry the tombstones collected here (all of them, or
    // those with dots the puller lacks): it takes our clock, and must not keep what they deleted. A
    // copy into the rows of an older replica of the same shard overwrites those keys' rows on its
    // disk, and a member left out of a collection may still bring back a write they won over.
    const from = full ? {} : since;
    const includeBase = withBase;
    const includeCollected = !this.bugs.has('stale-replica-merge');
    const versions = replica.versionsSince(from, { base: includeBase, collected: includeCollected });
    const answer = { ok: true as const, versions, applied: { ...replica.applied }, lamport: replica.lamport, collected: { ...replica.collected } };
    return withBase ? { ...answer, base: { ...replica.base } } : answer;
  }

  /**
   * A peer's answer to our sync request; `base` is present when it sent its whole base. A pull
   * (not `full`) is merged only into a replica that has applied every tombstone the peer collected
   * (`collected`, its horizon): otherwise this replica missed deletes that are gone there for good
   * (it was away longer than the tombstone grace), and merging would keep the versions they deleted
   * while taking a clock that claims them. It is stale instead (see onPeerHorizon). A full copy goes
   * into a new, empty replica, which holds nothing to bring back.
   */
  protected onSyncResponse(
    epoch: Epoch,
    shard: ShardId,
    versions: Version[],
    applied: Clock,
    { base, lamport = 0, collected, full = false, peer, nowMs }: { base?: EpochClocks; lamport?: number; collected?: Clock; full?: boolean; peer?: NodeAddress; nowMs: number },
  ): 'merged' | 'refused' | 'stale' {
    const replica = this.currentReplica;
    if (epoch !== this.currentMap.epoch || replica === null || replica.shard !== shard) return 'refused';
    if (!full && collected !== undefined && peer !== undefined && this.onPeerHorizon(peer, epoch, shard, collected, nowMs)) return 'stale';
    if (!full && this.stale !== null) return 'stale';
    replica.mergeState(versions, applied, base, lamport, collected);
    return 'merged';
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
  ): { ok: true; differing: number[]; versions: Version[]; more: boolean; collected: Clock } | { ok: false; reason: string } {
    const replica = this.currentReplica;
    if (epoch !== this.currentMap.epoch || replica === null || replica.shard !== shard || !this.isReady) {
      return { ok: false, reason: `not a ready replica of ${shard} at epoch ${epoch}` };
    }
    return { ok: true, differing: digestAnswer(replica, digests).differing, versions: [], more: false, collected: { ...replica.collected } };
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
    // A stale replica pushes nothing: its versions may be ones tombstones collected elsewhere deleted.
    if (epoch !== this.currentMap.epoch || replica === null || replica.shard !== shard || this.stale !== null) return null;
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
   * Collects the tombstones every member of the shard reflects (see appliedByKnownMembers), as the
   * members' pings of this epoch tell (`peerApplied` replaces them: tests), and, past the grace,
   * without members it does not hear from (see tombstone-grace.ts).
   */
  protected collectTombstones(nowMs: number, peerApplied?: ReadonlyMap<NodeAddress, Clock>): number {
    const replica = this.currentReplica;
    if (replica === null || !this.isReady) return 0;
    if (this.history?.replica !== replica) this.history = { replica, applied: new AppliedHistory(this.tombstoneGraceMs) };
    this.history.applied.record(nowMs, replica.applied);
    if (this.bugs.has('forget-tombstones')) return replica.collectTombstones({ ...replica.applied }, { remember: false });
    // A stale replica collects nothing: what it would collect may be what it must not keep.
    if (this.stale !== null) return 0;
    const clocks = peerApplied ?? this.peers.appliedAt(this.currentMap.epoch, replica.shard);
    const known = appliedByKnownMembers(replica.applied, membersOf(this.currentMap, replica.shard) ?? [], this.self, clocks);
    // A round skipped for a live member's writes still on their way decides nothing about the members
    // it does not hear from: the last round's verdict stands (what /status reports).
    if (known === null) return 0;
    const { everywhere, missing } = known;
    for (const node of this.missingSince.keys()) if (!missing.includes(node)) this.missingSince.delete(node);
    for (const node of missing) if (!this.missingSince.has(node)) this.missingSince.set(node, nowMs);
    if (missing.length === 0) {
      this.lastCollection = { notCounted: [], withoutThem: false, graveyardFull: false };
      // Every member heard from, with their own writes here, and none stale (each has applied what
      // was collected here): what was collected without one of them buries nothing that could
      // still arrive, nor is there an old replica left to copy it into (see Graveyard).
      if ([...clocks.values()].every((clock) => clockCovers(clock, replica.collected))) replica.graveyard.release();
      return replica.collectTombstones(everywhere);
    }
    // Members this node does not hear from: once every one of them has been unheard of for the grace,
    // and this node hears from a majority of the shard, collect what every member it hears from
    // applied and this node applied at least the grace ago; until then, nothing.
    const graceMs = this.tombstoneGraceMs;
    const old = this.history.applied.asOf(nowMs - graceMs);
    const members = membersOf(this.currentMap, replica.shard) ?? [];
    const pastGrace = old !== null && missing.every((node) => nowMs - (this.missingSince.get(node) ?? nowMs) >= graceMs) && mayCollectWithout(members, missing);
    const horizon = old === null ? null : clockMin(everywhere, old);
    // What is collected without them is kept in the graveyard until they are back; what does not fit waits.
    const graveyardFull = pastGrace && horizon !== null && replica.collectable(horizon) > replica.graveyard.room;
    const goOn = pastGrace && !graveyardFull;
    this.lastCollection = { notCounted: missing, withoutThem: goOn, graveyardFull };
    return goOn && horizon !== null ? replica.collectTombstones(horizon, { kept: true }) : 0;
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
      ...(this.stale === null ? {} : { stale: true }),
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
    // A stale replica takes nothing from its peers: it waits to be copied afresh.
    if (this.stale !== null) return { learned, fetchMap, pull: null };
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

/**
 * Whether the members this node hears from may collect tombstones without the `missing` ones: they
 * are more than half of the shard, or exactly half with its first member by address. Two groups cut
 * off from each other can then never both collect without the other, which would leave each stale
 * to the other, both waiting for the other to take its writes. (A shard of two members: only the
 * first collects without the second.)
 */
export function mayCollectWithout(members: readonly NodeAddress[], missing: readonly NodeAddress[]): boolean {
  const heard = members.filter((node) => !missing.includes(node));
  if (heard.length * 2 > members.length) return true;
  const first = sortAddresses([...members])[0];
  return heard.length * 2 === members.length && first !== undefined && heard.includes(first);
}
