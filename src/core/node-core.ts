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

/** Bytes of versions (approximate JSON) in one anti-entropy answer; the rest is left for the next round. */
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

export type KvDecision =
  | { kind: 'reply'; reply: Reply; replicate?: { shard: ShardId; peers: NodeAddress[]; version: Version } }
  | { kind: 'forward'; shard: ShardId; targets: NodeAddress[] }
  | { kind: 'wait'; reason: WaitReason; detail?: Clock };

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
}

export interface PendingReshard {
  map: ShardMap;
  coordinator: NodeAddress;
  startedMs: number;
  /** Versions received for this node's shard in the new epoch, merged by version order. */
  incoming: Map<string, Version>;
  /** What the senders of `incoming` reflected, one claim per sender whose transfer arrived whole. */
  claims: TransferClaim[];
  /** This node delivered all its transfers (phase 2 done here). */
  sent: boolean;
}

/**
 * Sent with the last part of a reshard transfer: the sender's replica (its old shard, its applied
 * clock, what its own base reflected). The sender sent every version it holds for the receiver's
 * new shard, so the receiver now reflects all of that for its keys.
 */
export interface TransferClaim {
  shard: ShardId;
  applied: Clock;
  base: EpochClocks;
}

/** A reshard transfer to one node: versions in base form, and the sender's claim. */
export interface Transfer {
  versions: Version[];
  claim: TransferClaim;
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
}

/**
 * `orphaned`: the versions of a replica this node dropped because it missed a reshard (it was cut
 * off, or down). It may have acknowledged writes in the old epoch that no transfer carried; the
 * runtime sends them on to their new owners (lateTransfers), so nothing acknowledged is lost.
 */
export type MapChange = { changed: false } | { changed: true; needsFullSync: boolean; orphaned: Orphaned | null };

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

  /**
   * Why `metadata` cannot be this store's (null when it can be): it names a shard the map of its
   * epoch does not have, or a node that is not a member of that shard nor a node this store knows.
   * For an epoch whose map this node did not keep (it restarted since, or lags behind), the shard
   * and node must at least be ones the store has now. So metadata is never larger than the
   * store's own shards × nodes, and no dependency on a made-up writer can be stored for others to
   * inherit. (A made-up counter of a real writer is what only the cluster secret's MAC can refuse.)
   */
  private metadataOriginFault(metadata: CausalMetadata): string | null {
    const known = new Set<NodeAddress>([...this.membership.probeTargets(), ...this.membership.view()]);
    for (const map of [this.currentMap, ...this.pastMaps.values()]) for (const members of Object.values(map.shards)) for (const n of members) known.add(n);
    const check = (epoch: Epoch, clocks: ShardClocks): string | null => {
      const map = epoch === this.currentMap.epoch ? this.currentMap : this.pastMaps.get(epoch);
      for (const [shard, clock] of Object.entries(clocks)) {
        const members = map === undefined ? undefined : membersOf(map, shard);
        if (map !== undefined && members === undefined) return `it names shard ${shard}, which epoch ${epoch} does not have`;
        // A map this node did not keep had at most as many shards as the store has pairs of nodes.
        if (map === undefined && Number(shard.slice(1)) >= Math.max(shardIds(this.currentMap).length, Math.floor(known.size / 2))) {
          return `it names shard ${shard}, which this store cannot have had`;
        }
        for (const node of Object.keys(clock)) {
          if (!(members?.includes(node) ?? false) && !known.has(node)) return `it names ${node}, which is not a node of this store`;
        }
      }
      return null;
    };
    const current = check(metadata.e, metadata.c);
    if (current !== null) return current;
    for (const [epoch, clocks] of Object.entries(metadata.o ?? {})) {
      const fault = check(Number(epoch), clocks);
      if (fault !== null) return fault;
    }
    return null;
  }

  /** The shard peers in this node's view whose links are not held down (anti-entropy and pull partners). */
  replicationPeers(): NodeAddress[] {
    const shard = this.shard;
    if (shard === null) return [];
    return (membersOf(this.currentMap, shard) ?? []).filter((n) => n !== this.self && this.membership.has(n) && !this.links.isHeld(n));
  }

  // ---------------------------------------------------------------- key-value requests

  kv(method: KvMethod, key: string, rawBody: unknown): KvDecision {
    const body = rawBody === undefined ? {} : rawBody;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      return reply(400, { error: 'Request body must be a JSON object' });
    }
    const fields = body as Record<string, unknown>;
    if ([...key].length > KEY_LENGTH_MAX) return reply(400, { error: MESSAGES.keyTooLong });
    if (key.length === 0) return reply(400, { error: 'Key is empty' });
    if (method === 'PUT' && !Object.hasOwn(fields, 'value')) return reply(400, { error: MESSAGES.noValue });
    const fault = method === 'PUT' ? valueFault(fields.value) : null;
    if (fault !== null) return reply(400, { error: fault });
    const parsed = parseCausalMetadata(fields['causal-metadata']);
    if (!parsed.ok) return reply(400, { error: `Invalid causal metadata: ${parsed.reason}` });
    const metadata = parsed.metadata;

    const map = this.currentMap;
    const shard = shardOfKey(map, key);
    const replica = this.currentReplica;
    if (replica === null || replica.shard !== shard) {
      return { kind: 'forward', shard, targets: this.forwardTargets(shard) };
    }
    if (metadata !== null && this.options.checkMetadataOrigin !== false) {
      const origin = this.metadataOriginFault(metadata);
      if (origin !== null) return reply(400, { error: `Invalid causal metadata: ${origin}` });
    }
    if (!this.isReady) return { kind: 'wait', reason: 'syncing' };
    if (metadata !== null && metadata.e > map.epoch) return { kind: 'wait', reason: 'epoch' };
    if (method !== 'GET' && this.pendingReshard !== null) return { kind: 'wait', reason: 'reshard' };

    const deps = dependenciesAt(metadata, map.epoch);
    const clocks = deps.clocks;
    const need = clocks[shard] ?? {};
    const skipCheck = method === 'GET' && this.bugs.has('read-skips-deps');
    if (!skipCheck && !replica.covers(need)) return { kind: 'wait', reason: 'causal', detail: clockLacks(replica.applied, need) };
    if (!skipCheck && !replica.coversOld(deps.old)) return { kind: 'wait', reason: 'handover' };

    const current = replica.get(key);
    const live = current !== undefined && !current.deleted;
    if (method === 'GET') {
      if (!live) return reply(404, { error: MESSAGES.keyMissing });
      let seen = mergeShardClocks(clocks, current.deps);
      if (current.dot) seen = withDot(seen, shard, current.dot.node, current.dot.counter);
      return reply(200, {
        result: MESSAGES.found,
        value: current.value,
        'causal-metadata': makeMetadata(map.epoch, seen, mergeEpochClocks(deps.old, current.past ?? {})),
        'shard-id': shard,
      });
    }
    if (method === 'DELETE' && !live) return reply(404, { error: MESSAGES.keyMissing });

    const version =
      method === 'PUT'
        ? replica.write(key, { deleted: false, value: fields.value }, clocks, deps.old)
        : replica.write(key, { deleted: true }, clocks, deps.old);
    const dot = version.dot as { node: NodeAddress; counter: number };
    const answer: Record<string, unknown> = {
      result: method === 'DELETE' ? MESSAGES.deleted : live ? MESSAGES.replaced : MESSAGES.created,
      'causal-metadata': makeMetadata(map.epoch, withDot(clocks, shard, dot.node, dot.counter), deps.old),
      'shard-id': shard,
    };
    return {
      kind: 'reply',
      reply: { status: method === 'PUT' && !live ? 201 : 200, body: answer },
      replicate: { shard, peers: this.shardPeers(), version },
    };
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
    this.currentReplica = replica;
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
    this.currentReplica = this.newReplica(this.currentMap, this.currentReplica?.lamport ?? 0);
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
    const versions = replica.versionsSince(full ? {} : since, withBase, !full);
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
    const all = replica.differingPartitions(digests);
    const start = all.findIndex((p) => p >= this.repairCursor);
    const differing = start <= 0 ? all : [...all.slice(start), ...all.slice(0, start)];
    const byPartition = replica.versionsByPartition(differing);
    const taken: number[] = [];
    const versions: Version[] = [];
    let bytes = 0;
    for (const partition of differing) {
      const list = byPartition.get(partition) ?? [];
      let size = 0;
      for (const version of list) size += versionBytes(version);
      if (taken.length > 0 && bytes + size > REPAIR_BYTES_MAX) break;
      taken.push(partition);
      for (const version of list) versions.push(version);
      bytes += size;
    }
    const more = taken.length < differing.length;
    this.repairCursor = more ? (taken.at(-1) as number) + 1 : 0;
    return { ok: true, differing: taken, versions, more };
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
   * Collects tombstones every member reflects. `peerApplied` must hold the applied clock of every
   * other member of this node's shard (from their pings, this epoch); with any missing, nothing is
   * collected: a member we cannot hear from may hold an older version the tombstone must still beat.
   * Nor is anything collected until this replica has applied every member's own writes up to its
   * ping: a write made concurrently with a delete, before its coordinator applied the delete, is
   * among those, and arriving after the collection it would bring the key back here. (The graveyard
   * also refuses it, but does not survive a restart.)
   */
  collectTombstones(peerApplied: ReadonlyMap<NodeAddress, Clock>): number {
    const replica = this.currentReplica;
    if (replica === null || !this.isReady) return 0;
    let everywhere: Clock = { ...replica.applied };
    if (this.bugs.has('forget-tombstones')) return replica.collectTombstones(everywhere, false);
    for (const member of membersOf(this.currentMap, replica.shard) ?? []) {
      if (member === this.self) continue;
      const clock = peerApplied.get(member);
      if (clock === undefined) return 0;
      if (counterOf(replica.applied, member) < counterOf(clock, member)) return 0;
      const min: Clock = {};
      for (const [node, counter] of Object.entries(everywhere)) min[node] = Math.min(counter, counterOf(clock, node));
      everywhere = min;
    }
    return replica.collectTombstones(everywhere);
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

  /**
   * Shards with members but none in `nodes`: of the current map (their data could not move) and of
   * `next` (no member could receive it).
   */
  shardsWithout(nodes: ReadonlySet<NodeAddress>, next: ShardMap): string[] {
    const without = (map: ShardMap) =>
      shardIds(map).filter((shard) => {
        const members = membersOf(map, shard) ?? [];
        return members.length > 0 && !members.some((member) => nodes.has(member));
      });
    return [...without(this.currentMap).map((s) => `${s} (epoch ${this.currentMap.epoch})`), ...without(next).map((s) => `${s} (epoch ${next.epoch})`)];
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
  reshardTransfers(epoch: Epoch, targets: ReadonlySet<NodeAddress>): Map<NodeAddress, Transfer> | null {
    const pending = this.pendingReshard;
    if (pending === null || pending.map.epoch !== epoch) return null;
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
  commitReshard(epoch: Epoch): boolean {
    const pending = this.pendingReshard;
    if (pending === null || pending.map.epoch !== epoch) return epoch === this.currentMap.epoch;
    this.commit(pending.map);
    return true;
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
    this.currentReplica = this.newReplica(merged, lamport);
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

/** Planted bug 'reshard-skips-partition': the versions without those of the lowest partition that changes shard. */
function skipFirstMovedPartition(from: ShardMap, to: ShardMap, versions: Iterable<Version>): Version[] {
  const all = [...versions];
  const moved = all.filter((v) => shardOfKey(from, v.key) !== shardOfKey(to, v.key)).map((v) => partitionOfKey(v.key));
  if (moved.length === 0) return all;
  const skipped = Math.min(...moved);
  return all.filter((v) => partitionOfKey(v.key) !== skipped);
}

/**
 * What a new replica's base reflects, from the claims of the senders whose transfers arrived whole.
 * Of the old epoch: for each old shard, what its senders had applied (each sent all it held for our
 * keys). Of epochs before it: a sender's base spoke for its old shard's keys only, and our keys come
 * from every old shard, so per old shard the best sender counts, and over old shards the worst.
 */
function reflectedByClaims(oldMap: ShardMap, claims: readonly TransferClaim[]): EpochClocks {
  const applied: Record<ShardId, Clock> = {};
  const bases = new Map<ShardId, EpochClocks>();
  for (const claim of claims) {
    applied[claim.shard] = mergeClocks(applied[claim.shard] ?? {}, claim.applied);
    bases.set(claim.shard, mergeEpochClocks(bases.get(claim.shard) ?? {}, claim.base));
  }
  let earlier: EpochClocks | null = null;
  for (const shard of shardIds(oldMap)) {
    if ((membersOf(oldMap, shard) ?? []).length === 0) continue;
    const base = bases.get(shard) ?? {};
    earlier = earlier === null ? base : minEpochClocks(earlier, base);
  }
  return mergeEpochClocks(earlier ?? {}, { [String(oldMap.epoch)]: applied });
}

/** Every node that is a member of some shard of `map`. */
function allMembers(map: ShardMap): Set<NodeAddress> {
  return new Set(Object.values(map.shards).flat());
}

/** Versions grouped by the members of their key's shard in `map`; this node's share goes to `onSelf`. */
function groupByOwners(
  map: ShardMap,
  versions: Iterable<Version>,
  self: NodeAddress,
  onSelf: (version: Version) => void,
): Map<NodeAddress, Version[]> {
  const out = new Map<NodeAddress, Version[]>();
  for (const version of versions) {
    for (const member of map.shards[shardOfKey(map, version.key)] ?? []) {
      if (member === self) {
        onSelf(version);
        continue;
      }
      let list = out.get(member);
      if (!list) out.set(member, (list = []));
      list.push(version);
    }
  }
  return out;
}

function reply(status: number, body: Record<string, unknown>): KvDecision {
  return { kind: 'reply', reply: { status, body } };
}

