import { isNodeAddress } from './address.ts';
import { MESSAGES, KEY_LENGTH_MAX } from './api-messages.ts';
import { dependenciesAt, makeMetadata, OLD_EPOCHS_MAX, parseCausalMetadata } from './causal-metadata.ts';
import { valueFault, versionBytes } from './json-value.ts';
import { hash32 } from './hash.ts';
import { Links, PROBE_LATE_MS } from './links.ts';
import { Membership } from './membership.ts';
import { NO_BUGS, type PlantedBug } from './planted-bugs.ts';
import { asBase, Replica } from './replica.ts';
import { checkReshard, planReshard } from './reshard-plan.ts';
import {
  mapDigest,
  mapsEqual,
  membersOf,
  mergeShardMaps,
  partitionOfKey,
  shardIds,
  shardOfKey,
  shardOfNode,
  withMember,
} from './shard-map.ts';
import type { CausalMetadata, Clock, Epoch, EpochClocks, NodeAddress, ShardClocks, ShardId, ShardMap, Version } from './types.ts';
import { clockLacks, counterOf, epochClocksCover, mergeClocks, mergeEpochClocks, mergeShardClocks, minEpochClocks, withDot } from './vector-clock.ts';
import { supersedes } from './version-order.ts';
import { assert } from './assert.ts';
import { metadataOriginFault } from './metadata-origin.ts';
import { appliedEverywhere, digestAnswer } from './anti-entropy.ts';
import { PeerKnowledge } from './peers.ts';
import { KvWaits, type ExpireResult, type WakeResult } from './waits.ts';
import { decideKv, parseKv } from './kv.ts';
import { allMembers, groupByOwners, reflectedByClaims, shardsWithout, skipFirstMovedPartition, type PendingReshard, type Transfer, type TransferClaim } from './reshard-participant.ts';

export type { PendingReshard, Transfer, TransferClaim } from './reshard-participant.ts';

export * from './contract.ts';
import {
  CAUSAL_WAIT_MS,
  RESHARD_WAIT_MS,
  REPAIR_BYTES_MAX,
  unavailableReply,
  waitLacking,
  type KvDecision,
  type KvMethod,
  type KvRequest,
  type KvWait,
  type CommitOutcome,
  type Persist,
  type MapChange,
  type NodeCoreOptions,
  type Orphaned,
  type ParkedDecision,
  type PingInfo,
  type Released,
  type Reply,
  type SavedReplica,
  type WaitReason,
} from './contract.ts';

/**
 * One node's protocol state: view, shard map, its replica, and a reshard in progress. Pure: it reads
 * no clock, does no I/O; the runtime passes time in and carries out what it returns.
 */
export class NodeCore {
  readonly self: NodeAddress;
  readonly membership: Membership;
  /** The health of the link to each peer: data crosses only links that are up (see Links). */
  readonly links: Links;
  private readonly options: NodeCoreOptions;
  private currentMap: ShardMap;
  /** mapDigest(currentMap), computed once per map: maps are replaced, never changed in place. */
  private currentMapDigest: string;
  private currentReplica: Replica | null;
  /** False while this node rebuilds its shard copy from a peer: requests for its shard wait. */
  private isReady: boolean;
  /** Where the next anti-entropy answer starts, when the last one stopped at its bound. */
  private repairCursor = 0;
  private pendingReshard: PendingReshard | null = null;
  private readonly bugs: ReadonlySet<PlantedBug>;
  /** The maps of the OLD_EPOCHS_MAX epochs before this one, as far as this process saw them (metadata checks). */
  private readonly pastMaps = new Map<Epoch, ShardMap>();
  /** Requests waiting for a state change (see waits.ts). */
  private readonly waits: KvWaits;
  /** What each peer's last ping said (see PeerKnowledge). */
  private readonly peers = new PeerKnowledge();
  /** Counts replacements of the replica: parked requests are all looked at again after one, and the disk's copy starts over. */
  private replicaGeneration = 0;
  /** The replica generation and map the disk holds (see takePersist). */
  private persistedGeneration = -1;
  private persistedMapDigest = '';
  /** The generation of the replica restored from disk at start (-1: none). */
  private restoredGeneration = -1;

  constructor(options: NodeCoreOptions, view: NodeAddress[], map: ShardMap) {
    this.options = options;
    this.bugs = options.plantedBugs ?? NO_BUGS;
    this.self = options.self;
    this.membership = new Membership(
      { self: options.self, failuresToRemove: options.failuresToRemove, holdDownMs: options.holdDownMs },
      view,
    );
    this.links = new Links({ holdDownMs: options.holdDownMs, probeLateMs: options.probeLateMs ?? PROBE_LATE_MS });
    this.currentMap = map;
    this.currentMapDigest = mapDigest(map);
    this.waits = new KvWaits((request, nowMs) => this.decideKv(request, nowMs), {
      causalWaitMs: options.causalWaitMs ?? CAUSAL_WAIT_MS,
      reshardWaitMs: options.reshardWaitMs ?? RESHARD_WAIT_MS,
    });
    this.currentReplica = this.newReplica(map, 0);
    this.isReady = this.currentReplica === null;
  }

  get map(): ShardMap {
    return this.currentMap;
  }

  get mapDigest(): string {
    return this.currentMapDigest;
  }

  private setMap(map: ShardMap): void {
    if (map === this.currentMap) return;
    if (map.epoch !== this.currentMap.epoch) {
      this.pastMaps.set(this.currentMap.epoch, this.currentMap);
      for (const epoch of this.pastMaps.keys()) if (epoch < map.epoch - OLD_EPOCHS_MAX) this.pastMaps.delete(epoch);
    }
    this.currentMap = map;
    this.currentMapDigest = mapDigest(map);
  }

  private setReplica(replica: Replica | null): void {
    this.currentReplica = replica;
    this.replicaGeneration++;
  }

  /**
   * What changed since the last call, for the disk. The runtime stages it right after every core
   * call that changes state, and makes it durable before it sends or replies anything that depends
   * on it. `reset`: the replica was replaced (a new epoch, a copy from a peer): the disk's copy of it
   * starts over. `map`: the shard map changed.
   */
  takePersist(): Persist {
    const out: Persist = {};
    const replica = this.currentReplica;
    if (this.replicaGeneration !== this.persistedGeneration) {
      out.reset = { replica: replica === null ? null : { epoch: this.currentMap.epoch, shard: replica.shard } };
      this.persistedGeneration = this.replicaGeneration;
    }
    if (replica !== null) out.replica = { changes: replica.takeDirty(), applied: replica.applied, lamport: replica.lamport, base: replica.base };
    if (this.currentMapDigest !== this.persistedMapDigest) {
      out.map = this.currentMap;
      this.persistedMapDigest = this.currentMapDigest;
    }
    return out;
  }

  /**
   * The replica is still the one restored from disk at start (the map did not move this node since):
   * it has all it acknowledged and only catches up with its peers.
   */
  get replicaIsRestored(): boolean {
    return this.currentReplica !== null && this.restoredGeneration === this.replicaGeneration;
  }

  /** The disk already holds this map (what the node restored at start): it is not written again until it changes. */
  mapPersisted(map: ShardMap): void {
    this.persistedMapDigest = mapDigest(map);
  }

  get replica(): Replica | null {
    return this.currentReplica;
  }

  get ready(): boolean {
    return this.isReady;
  }

  get reshardInProgress(): PendingReshard | null {
    return this.pendingReshard;
  }

  get shard(): ShardId | null {
    return shardOfNode(this.currentMap, this.self);
  }

  /**
   * Every other member of this node's shard: each write is queued for all of them; the runtime
   * holds it as a hint for a member that is not in the view.
   */
  shardPeers(): NodeAddress[] {
    const shard = this.shard;
    if (shard === null) return [];
    return (membersOf(this.currentMap, shard) ?? []).filter((n) => n !== this.self);
  }

  /** Why `metadata` cannot be this store's (null when it can be): see metadataOriginFault. */
  metadataOrigin(metadata: CausalMetadata): string | null {
    const known = new Set<NodeAddress>([...this.membership.probeTargets(), ...this.membership.view()]);
    return metadataOriginFault(metadata, this.currentMap, this.pastMaps, known);
  }

  /** The shard peers in this node's view whose links are not held down (anti-entropy and pull partners). */
  replicationPeers(): NodeAddress[] {
    const shard = this.shard;
    if (shard === null) return [];
    return (membersOf(this.currentMap, shard) ?? []).filter((n) => n !== this.self && this.membership.has(n) && !this.links.isHeld(n));
  }

  // ---------------------------------------------------------------- key-value requests

  parseKv(method: KvMethod, key: string, rawBody: unknown, deadlineMs: number | null = null): { ok: true; request: KvRequest } | { ok: false; reply: Reply } {
    return parseKv(method, key, rawBody, deadlineMs);
  }

  /** `parseKv` then `decideKv`, without parking (tests, and one-shot callers). */
  kv(method: KvMethod, key: string, rawBody: unknown, nowMs = 0): KvDecision {
    const parsed = this.parseKv(method, key, rawBody);
    return parsed.ok ? this.decideKv(parsed.request, nowMs) : { kind: 'reply', reply: parsed.reply };
  }

  /** What to do with a checked request now (see kv.ts). */
  decideKv(request: KvRequest, nowMs: number): KvDecision {
    return decideKv(this, request, nowMs);
  }

  get plantedBugs(): ReadonlySet<PlantedBug> {
    return this.bugs;
  }

  get checksMetadataOrigin(): boolean {
    return this.options.checkMetadataOrigin !== false;
  }

  /**
   * A request arrives: decided now, or parked until the state change that lets it go on (`wake`)
   * or its deadline (`expire`): its reason's budget from now. See waits.ts.
   */
  submitKv(request: KvRequest, nowMs: number): Exclude<KvDecision, KvWait> | ParkedDecision {
    return this.waits.submit(request, nowMs, this.waitGeneration(), this.currentReplica?.applied ?? null);
  }

  /** After a state change: the parked requests it lets go on, decided (see KvWaits.wake). */
  wake(nowMs: number): WakeResult {
    return this.waits.wake(nowMs, this.waitGeneration(), this.currentReplica?.applied ?? null);
  }

  /** Names the state a change of which makes every parked request be decided again: replica, readiness, map, reshard. */
  private waitGeneration(): string {
    return `${this.replicaGeneration}/${this.isReady}/${this.currentMapDigest}/${this.pendingReshard?.map.epoch ?? ''}`;
  }

  /** A parked request's timer fired (see KvWaits.expire). */
  expire(ticket: number, nowMs: number): ExpireResult {
    return this.waits.expire(ticket, nowMs);
  }

  /** The node is closing: every parked request gets its 503 now. */
  expireAll(): { ticket: number; reply: Reply }[] {
    return this.waits.expireAll();
  }

  /** Requests parked now. */
  get parkedCount(): number {
    return this.waits.size;
  }

  /**
   * Members of a shard to forward to, in order: those in the view first, starting at a place that
   * depends on this node so load spreads, then the rest (a down-detected node may be back).
   */
  forwardTargets(shard: ShardId): NodeAddress[] {
    const members = (membersOf(this.currentMap, shard) ?? []).filter((n) => n !== this.self);
    // In the view and over a link that is not held first (a member behind a held link may lack
    // what the client depends on), then the held ones, then members out of the view.
    const up = members.filter((n) => this.membership.has(n) && !this.links.isHeld(n));
    const held = members.filter((n) => this.membership.has(n) && this.links.isHeld(n));
    const down = members.filter((n) => !this.membership.has(n));
    const start = up.length === 0 ? 0 : hash32(`${this.self}/${shard}`) % up.length;
    return [...up.slice(start), ...up.slice(0, start), ...held, ...down];
  }

  // ---------------------------------------------------------------- view

  putView(node: NodeAddress): Reply {
    const outcome = this.membership.add(node);
    // A replicated-only store grows with its view: a node that joins becomes a replica.
    if (this.currentMap.mode === 'replicated') {
      const only = shardIds(this.currentMap)[0];
      if (only !== undefined) this.setMap(withMember(this.currentMap, only, node));
    }
    return outcome === 'added' ? { status: 201, body: { result: MESSAGES.added } } : { status: 200, body: { result: MESSAGES.alreadyPresent } };
  }

  deleteView(node: NodeAddress, reason: 'down' | 'request'): Reply {
    const outcome = this.membership.remove(node, reason);
    if (outcome === 'deleted') this.peers.forget(node);
    return outcome === 'deleted' ? { status: 200, body: { result: MESSAGES.deleted } } : { status: 404, body: { error: MESSAGES.noSuchReplica } };
  }

  // ---------------------------------------------------------------- shards

  /** `joined`: this node is the one added, and must copy its new shard from a peer. */
  addMember(shard: ShardId, node: NodeAddress): Reply & { joined?: boolean } {
    if (membersOf(this.currentMap, shard) === undefined) return { status: 404, body: { error: `Shard ${shard} does not exist` } };
    if (!isNodeAddress(node) || !this.membership.has(node)) return { status: 404, body: { error: 'Node is not in the view' } };
    const already = shardOfNode(this.currentMap, node);
    if (already !== null && already !== shard) {
      return { status: 409, body: { error: `Node is already a member of shard ${already}` } };
    }
    const before = this.shard;
    this.setMap(withMember(this.currentMap, shard, node));
    if (this.shard === before) return { status: 200, body: { result: MESSAGES.nodeAddedToShard } };
    // This node was the one added (the request came to it): it copies the shard, as when it learns
    // of its membership from a peer's map.
    this.startCopy();
    return { status: 200, body: { result: MESSAGES.nodeAddedToShard }, joined: true };
  }

  /**
   * Takes a map a peer holds. Returns whether this node must rebuild its shard copy from a peer
   * (it joined a shard, or missed a reshard it did not take part in).
   */
  adoptMap(remote: ShardMap): MapChange {
    const merged = mergeShardMaps(this.currentMap, remote);
    if (mapsEqual(merged, this.currentMap)) return { changed: false };
    const pending = this.pendingReshard;
    if (
      pending !== null &&
      pending.sent &&
      merged.epoch === pending.map.epoch &&
      mapsEqual(merged, mergeShardMaps(merged, pending.map))
    ) {
      // Some node committed the epoch we prepared and sent our data for: the coordinator commits only
      // after every prepared node delivered all its transfers, so our incoming data is complete. (Had
      // we not sent ours, the coordinator did not count us: we go on below as a node that missed it.)
      this.commit(merged);
      return { changed: true, needsFullSync: false, orphaned: null };
    }
    const before = this.shard;
    const epochChanged = merged.epoch !== this.currentMap.epoch;
    this.setMap(merged);
    const after = this.shard;
    if (!epochChanged && before === after) return { changed: true, needsFullSync: false, orphaned: null };
    if (epochChanged) this.pendingReshard = null;
    const old = this.currentReplica;
    const orphaned =
      epochChanged && old !== null
        ? {
            versions: [...old.allVersions()].map((version) => asBase(version, old.shard)),
            reflected: { [String(old.epoch)]: { [old.shard]: { ...old.applied } } },
          }
        : null;
    this.startCopy();
    return { changed: true, needsFullSync: this.currentReplica !== null, orphaned };
  }

  /**
   * Takes back the replica this node persisted before a restart, if it still belongs to this node's
   * shard in the current map. The node is not ready until the runtime has caught up with a peer (or
   * found none); it already has everything it acknowledged, so its own dots continue, never reused.
   */
  restoreReplica(saved: SavedReplica): boolean {
    if (saved.epoch !== this.currentMap.epoch || saved.shard !== this.shard) return false;
    const replica = new Replica({
      self: this.self,
      shard: saved.shard,
      epoch: saved.epoch,
      ...this.pendingLimits(),
      lamport: saved.lamport,
    });
    // The versions first: with the base clocks in place, base versions would count as old news.
    replica.mergeState(saved.versions, saved.applied, saved.base ?? {});
    replica.takeDirty();
    this.setReplica(replica);
    // The disk holds this very replica.
    this.persistedGeneration = this.replicaGeneration;
    this.restoredGeneration = this.replicaGeneration;
    this.isReady = false;
    return true;
  }

  /** A full sync from a peer finished (or no peer could be reached): serve again. */
  markReady(): void {
    this.isReady = true;
  }

  /** Starts rebuilding this node's shard copy (a restart, a join): requests wait until markReady. */
  beginFullSync(): void {
    if (this.currentReplica !== null) this.startCopy();
  }

  /**
   * A new, empty replica of this node's shard in the current map (none if in no shard), keeping the
   * Lamport clock; it serves only once the runtime has copied the shard from a peer (markReady).
   */
  private startCopy(): void {
    this.setReplica(this.newReplica(this.currentMap, this.currentReplica?.lamport ?? 0));
    this.isReady = this.currentReplica === null;
  }

  // ---------------------------------------------------------------- replication

  /** Writes pushed by a shard peer. A push for another epoch or shard is refused (the peer's map differs). */
  onReplicate(epoch: Epoch, shard: ShardId, versions: Version[]): { ok: true; applied: Clock } | { ok: false; reason: string } {
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
  onSyncRequest(
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
    const versions = replica.versionsSince(from, includeBase, includeCollected);
    const answer = { ok: true as const, versions, applied: { ...replica.applied }, lamport: replica.lamport };
    return withBase ? { ...answer, base: { ...replica.base } } : answer;
  }

  /** A peer's answer to our sync request; `base` is present when it sent its whole base. */
  onSyncResponse(epoch: Epoch, shard: ShardId, versions: Version[], applied: Clock, base?: EpochClocks, lamport = 0): boolean {
    const replica = this.currentReplica;
    if (epoch !== this.currentMap.epoch || replica === null || replica.shard !== shard) return false;
    replica.mergeState(versions, applied, base, lamport);
    return true;
  }

  /**
   * Anti-entropy, answering side: a peer of the same shard and epoch sends its partition digests;
   * we name the partitions that differ and send our versions of them, at most about REPAIR_BYTES_MAX of versions (whole partitions, at least one); `more`
   * when partitions were left for the next round. Each answer starts after the last partition the
   * previous one covered, so a bound that is always hit still reaches every partition in turn.
   */
  onDigestRequest(
    epoch: Epoch,
    shard: ShardId,
    digests: readonly number[],
  ): { ok: true; differing: number[]; versions: Version[]; more: boolean } | { ok: false; reason: string } {
    const replica = this.currentReplica;
    if (epoch !== this.currentMap.epoch || replica === null || replica.shard !== shard || !this.isReady) {
      return { ok: false, reason: `not a ready replica of ${shard} at epoch ${epoch}` };
    }
    const answer = digestAnswer(replica, digests, this.repairCursor);
    this.repairCursor = answer.next;
    return { ok: true, differing: answer.differing, versions: answer.versions, more: answer.more };
  }

  /**
   * Anti-entropy repair: versions a replica of the same shard and epoch holds. Returns how many
   * changed our state. A late transfer (see lateTransfers) comes this way too, and its last part says
   * what of an earlier epoch the whole transfer reflects.
   */
  onRepair(epoch: Epoch, shard: ShardId, versions: Version[], reflected?: EpochClocks): number | null {
    const replica = this.currentReplica;
    if (epoch !== this.currentMap.epoch || replica === null || replica.shard !== shard) return null;
    // A late transfer into a replica frozen for a reshard could arrive after this node's transfers
    // were read, and be dropped with the replica at the commit: the sender tries again later.
    if (reflected !== undefined && this.pendingReshard !== null) return null;
    const changed = replica.repair(versions);
    if (reflected !== undefined) replica.addBase(reflected);
    return changed;
  }

  /**
   * Collects the tombstones every member of the shard reflects (see appliedEverywhere), as the
   * members' pings of this epoch tell (`peerApplied` replaces them: tests).
   */
  collectTombstones(peerApplied?: ReadonlyMap<NodeAddress, Clock>): number {
    const replica = this.currentReplica;
    if (replica === null || !this.isReady) return 0;
    if (this.bugs.has('forget-tombstones')) return replica.collectTombstones({ ...replica.applied }, false);
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
   * from it, and why. Nothing is pulled over a link held down (`linkUp`, asked only then): a replica
   * that was cut off does not catch up behind its clients' backs the moment it reconnects. Only what
   * the peer already had one ping ago is pulled: what it has just now is usually still in flight to
   * us; nor what its pushes to us are still bringing (under load replication lags a ping or more,
   * and pulling the same versions again would double the work of a busy peer).
   */
  onPingAnswer(peer: NodeAddress, info: PingInfo, nowMs: number, linkUp: () => boolean): { learned: NodeAddress[]; fetchMap: boolean; pull: string | null } {
    const previous = this.peers.heard(peer, info);
    const learned: NodeAddress[] = [];
    for (const node of Array.isArray(info.view) ? info.view : []) {
      if (isNodeAddress(node) && this.membership.learn(node, nowMs)) learned.push(node);
    }
    const fetchMap = info.mapDigest !== this.currentMapDigest;
    if (!linkUp()) return { learned, fetchMap, pull: null };
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
  forgetPeer(peer: NodeAddress): void {
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

  // ---------------------------------------------------------------- reshard

  checkReshard(shardCount: unknown): Reply | null {
    const check = checkReshard(this.membership.size, shardCount);
    if (check.ok) return null;
    if (check.reason === 'bad-count') return { status: 400, body: { error: 'shard-count must be a positive integer' } };
    return { status: 400, body: { error: MESSAGES.notEnoughNodes } };
  }

  /** Shards with members but none in `nodes`, of the current map and of `next` (see reshard-participant.ts). */
  shardsWithout(nodes: ReadonlySet<NodeAddress>, next: ShardMap): string[] {
    return shardsWithout(this.currentMap, next, nodes);
  }

  /** A prepared reshard whose commit has not come within `timeoutMs`: its epoch (the runtime abandons it), else null. */
  reshardTimedOut(nowMs: number, timeoutMs: number): Epoch | null {
    const pending = this.pendingReshard;
    return pending !== null && nowMs - pending.startedMs > timeoutMs ? pending.map.epoch : null;
  }

  /**
   * A reshard to the shard count the store has, with every node of the view in a shard already:
   * nothing would move, so nothing is done (no new epoch, no transfers).
   */
  reshardIsNoop(shardCount: number): boolean {
    const map = this.currentMap;
    return shardIds(map).length === shardCount && this.membership.view().every((node) => shardOfNode(map, node) !== null);
  }

  planReshard(shardCount: number): ShardMap {
    return planReshard(this.currentMap, this.membership.view(), shardCount);
  }

  /**
   * Phase 1 at every node: freeze writes (they wait for the commit) so that what phase 2 sends is
   * all this node will ever acknowledge in the old epoch.
   */
  prepareReshard(map: ShardMap, coordinator: NodeAddress, nowMs: number): { ok: true } | { ok: false; reason: string } {
    if (map.epoch !== this.currentMap.epoch + 1) {
      return { ok: false, reason: `epoch ${map.epoch} does not follow ${this.currentMap.epoch}` };
    }
    const pending = this.pendingReshard;
    if (pending !== null && (pending.coordinator !== coordinator || !mapsEqual(pending.map, map))) {
      return { ok: false, reason: `another reshard (by ${pending.coordinator}) is in progress` };
    }
    this.pendingReshard = pending ?? { map, coordinator, startedMs: nowMs, incoming: new Map(), claims: [], sent: false };
    return { ok: true };
  }

  /**
   * Phase 2, once every node is frozen: what to send to whom. Every version this node holds goes to
   * every member of its key's new shard that took part (`targets`; the others copy their shard from
   * these), so nothing any replica acknowledged is lost; each of them gets this node's claim, even
   * with no versions. A node in no shard sends nothing.
   */
  reshardTransfers(epoch: Epoch, targets: ReadonlySet<NodeAddress>, nowMs?: number): Map<NodeAddress, Transfer> | null {
    const pending = this.pendingReshard;
    if (pending === null || pending.map.epoch !== epoch) return null;
    // The coordinator is alive and in phase 2: the freeze's timeout counts from now, so a phase 1
    // that waited long for nodes that did not answer cannot make this node give up during phase 3.
    if (nowMs !== undefined) pending.startedMs = nowMs;
    const replica = this.currentReplica;
    if (replica === null) return new Map();
    let versions: Iterable<Version> = [...replica.allVersions()].map((version) => asBase(version, replica.shard));
    if (this.bugs.has('reshard-skips-partition')) versions = skipFirstMovedPartition(this.currentMap, pending.map, versions);
    const claim: TransferClaim = { shard: replica.shard, applied: { ...replica.applied }, base: { ...replica.base } };
    const byOwner = groupByOwners(pending.map, versions, this.self, (version) => this.mergeIncoming(version));
    if (shardOfNode(pending.map, this.self) !== null) pending.claims.push(claim);
    const out = new Map<NodeAddress, Transfer>();
    for (const node of allMembers(pending.map)) {
      if (node !== this.self && targets.has(node)) out.set(node, { versions: byOwner.get(node) ?? [], claim });
    }
    return out;
  }

  /** Phase 2 finished here: every transfer of this node was delivered. */
  markSent(epoch: Epoch): void {
    if (this.pendingReshard?.map.epoch === epoch) this.pendingReshard.sent = true;
  }

  /**
   * Where the versions of a dropped old-epoch replica (MapChange.orphaned) go: every member of each
   * key's shard in the current map, this node excepted (it copies its shard from them). They enter
   * the new epoch as base versions; every member also learns what they reflect.
   */
  lateTransfers(orphaned: Orphaned): Map<NodeAddress, Version[]> {
    const byOwner = groupByOwners(this.currentMap, orphaned.versions, this.self, () => {});
    const out = new Map<NodeAddress, Version[]>();
    for (const node of allMembers(this.currentMap)) if (node !== this.self) out.set(node, byOwner.get(node) ?? []);
    return out;
  }

  /** Phase 2: data for the new epoch from another node; `claim` comes with its last part. */
  acceptTransfer(epoch: Epoch, versions: Version[], claim?: TransferClaim): boolean {
    const pending = this.pendingReshard;
    if (pending === null || pending.map.epoch !== epoch) return false;
    for (const version of versions) this.mergeIncoming(version);
    if (claim !== undefined) pending.claims.push(claim);
    return true;
  }

  /** Phase 3: switch to the new epoch with the data received. */
  commitReshard(epoch: Epoch): CommitOutcome {
    const pending = this.pendingReshard;
    let outcome: CommitOutcome = { outcome: epoch === this.currentMap.epoch ? 'committed' : 'not-prepared' };
    if (pending !== null && pending.map.epoch === epoch) {
      if (pending.sent) {
        this.commit(pending.map);
        outcome = { outcome: 'committed' };
      } else {
        // Prepared, but the coordinator did not count this node (its prepare answer came too late,
        // or its transfers did not all arrive): nothing was sent to it, so it has none of its new
        // shard's data. It goes on as a node that missed the reshard: its old replica goes to the
        // new owners, and it copies its new shard from a peer before serving.
        this.pendingReshard = null;
        outcome = { outcome: 'missed', change: this.adoptMap(pending.map) };
      }
    }
    // What peers said of the old epoch no longer counts.
    if (outcome.outcome !== 'not-prepared') this.peers.clear();
    return outcome;
  }

  /** A reshard whose coordinator went silent: unfreeze and stay in the old epoch. */
  abortReshard(epoch: Epoch): void {
    if (this.pendingReshard?.map.epoch === epoch) this.pendingReshard = null;
  }

  private commit(map: ShardMap): void {
    const pending = this.pendingReshard as PendingReshard;
    const merged = mergeShardMaps(map, pending.map);
    const lamport = this.currentReplica?.lamport ?? 0;
    const reflected = reflectedByClaims(this.currentMap, pending.claims);
    this.setMap(merged);
    this.setReplica(this.newReplica(merged, lamport));
    this.currentReplica?.mergeBase(
      [...pending.incoming.values()].filter((v) => shardOfKey(merged, v.key) === this.currentReplica?.shard),
      reflected,
    );
    this.pendingReshard = null;
    this.isReady = true;
  }

  private mergeIncoming(version: Version): void {
    const incoming = (this.pendingReshard as PendingReshard).incoming;
    if (supersedes(version, incoming.get(version.key))) incoming.set(version.key, version);
  }

  private newReplica(map: ShardMap, lamport: number): Replica | null {
    const shard = shardOfNode(map, this.self);
    if (shard === null) return null;
    return new Replica({ self: this.self, shard, epoch: map.epoch, ...this.pendingLimits(), lamport });
  }

  /** The bounds on early arrivals every replica of this node gets. */
  private pendingLimits(): { pendingMax: number; pendingBytesMax?: number } {
    const { pendingMax, pendingBytesMax } = this.options;
    return pendingBytesMax === undefined ? { pendingMax } : { pendingMax, pendingBytesMax };
  }
}

function reply(status: number, body: Record<string, unknown>): KvDecision {
  return { kind: 'reply', reply: { status, body } };
}

