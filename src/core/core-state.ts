import { OLD_EPOCHS_MAX } from './causal-metadata.ts';

import { hash32 } from './hash.ts';

import { Links, PROBE_LATE_MS } from './links.ts';

import { Membership } from './membership.ts';

import { NO_BUGS, type PlantedBug } from './planted-bugs.ts';

import { Replica } from './replica.ts';

import { mapDigest, membersOf, shardOfNode } from './shard-map.ts';

import type { CausalMetadata, Clock, Epoch, EpochClocks, NodeAddress, ShardId, ShardMap } from './types.ts';

import { metadataOriginFault } from './metadata-origin.ts';

import { PeerKnowledge } from './peers.ts';

import { type PendingReshard } from './reshard-participant.ts';

import { type Persist, type NodeCoreOptions } from './contract.ts';


/**
 * The state one node's core keeps (view, links, shard map, its replica, a reshard in progress, what
 * the disk holds) and the questions every part of the core asks of it. The protocol's entry points
 * build on it: ReplicationCore (replica-to-replica), ReshardCore (maps and reshards), NodeCore
 * (client requests and the view).
 */
/** What the runtime may ask of the link table (its events go in through NodeCore.step, as `link` inputs). */
export type LinkView = Pick<Links, 'incarnationOf' | 'isUp' | 'accepts' | 'remainingMs' | 'held'>;

/** What the runtime may read of the replica: it changes only through NodeCore.step. */
export type ReplicaView = Pick<
  Replica,
  | 'self'
  | 'shard'
  | 'epoch'
  | 'applied'
  | 'lamport'
  | 'base'
  | 'size'
  | 'pendingCount'
  | 'liveKeyCount'
  | 'get'
  | 'covers'
  | 'allVersions'
  | 'digests'
  | 'storeDigest'
  | 'collected'
  | 'checkInvariants'
>;

export class CoreState {
  readonly self: NodeAddress;

  /** The view and the failure counts behind it: asked and changed only through the methods below. */
  protected readonly membership: Membership;

  /** The health of the link to each peer: data crosses only links that are up (see Links). */
  protected readonly links: Links;

  protected readonly options: NodeCoreOptions;

  protected currentMap: ShardMap;

  /** mapDigest(currentMap), computed once per map: maps are replaced, never changed in place. */
  protected currentMapDigest: string;

  protected currentReplica: Replica | null;

  /** False while this node rebuilds its shard copy from a peer: requests for its shard wait. */
  protected isReady: boolean;

  protected pendingReshard: PendingReshard | null = null;
  /**
   * This node's map came from its environment alone (no map on disk: a new node, or one without
   * DATA_DIR): the store's map, when discovery hears it at start, replaces it (ReshardCore.adoptMap).
   */
  protected mapFromEnvironment = false;

  protected readonly bugs: ReadonlySet<PlantedBug>;

  /** The maps of the OLD_EPOCHS_MAX epochs before this one, as far as this process saw them (metadata checks). */
  protected readonly pastMaps = new Map<Epoch, ShardMap>();

  /** What each peer's last ping said (see PeerKnowledge). */
  protected readonly peers = new PeerKnowledge();

  /** Counts replacements of the replica: parked requests are all looked at again after one, and the disk's copy starts over. */
  protected replicaGeneration = 0;

  /** The replica generation and map the disk holds (see takePersist). */
  protected persistedGeneration = -1;

  protected persistedMapDigest = '';

  /** The replica's clocks as last handed to the disk (null: not since the replica was replaced). */
  private persistedClocks: { applied: Readonly<Clock>; lamport: number; base: Readonly<EpochClocks>; collected: Readonly<Clock> } | null = null;

  /** The generation of the replica restored from disk at start (-1: none). */
  protected restoredGeneration = -1;

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

  /**
   * The link table, read-only: the runtime asks it before data crosses a link. What each request
   * and probe showed goes in as a `link` input (NodeCore.step); every decision (held, released,
   * mirrored, accepted) is the link table's (src/core/links.ts).
   */
  get linkView(): LinkView {
    return this.links;
  }

  // ---------------------------------------------------------------- the view

  /** The nodes this node counts as up, itself included, sorted. */
  view(): NodeAddress[] {
    return this.membership.view();
  }

  /** Changes of the view since start (a node added, removed or admitted again). */
  get viewChanges(): number {
    return this.membership.changes;
  }

  isMember(node: NodeAddress): boolean {
    return this.membership.has(node);
  }

  /** The other nodes of the view. */
  viewPeers(): NodeAddress[] {
    return this.membership.peers();
  }

  /** Every node this node probes: the view, nodes on probation, nodes learned of. */
  probeTargets(): NodeAddress[] {
    return this.membership.probeTargets();
  }

  /** Nodes found down that answer again and wait out the hold-down before they rejoin the view. */
  onProbation(): NodeAddress[] {
    return this.membership.probeTargets().filter((n) => this.membership.isOnProbation(n));
  }

  /** What a probe of `peer` showed: it may remove it from the view or admit it again (see Membership.observe). */
  protected observe(peer: NodeAddress, answered: boolean, nowMs: number): ReturnType<Membership['observe']> {
    return this.membership.observe(peer, answered, nowMs);
  }

  /** A node heard of (from a ping or a peer's view): probed before it is admitted; true when new. */
  protected learn(node: NodeAddress, nowMs: number): boolean {
    return this.membership.learn(node, nowMs);
  }

  get map(): ShardMap {
    return this.currentMap;
  }

  get mapDigest(): string {
    return this.currentMapDigest;
  }

  protected setMap(map: ShardMap): void {
    if (map === this.currentMap) return;
    if (map.epoch !== this.currentMap.epoch) {
      this.pastMaps.set(this.currentMap.epoch, this.currentMap);
      for (const epoch of this.pastMaps.keys()) if (epoch < map.epoch - OLD_EPOCHS_MAX) this.pastMaps.delete(epoch);
    }
    this.currentMap = map;
    this.currentMapDigest = mapDigest(map);
  }

  protected setReplica(replica: Replica | null): void {
    this.currentReplica = replica;
    this.replicaGeneration++;
  }

  /**
   * What changed since the last call, for the disk (null: nothing). NodeCore.step takes it after
   * every input, so nothing that changes state escapes the disk. `reset`: the replica was replaced
   * (a new epoch, a copy from a peer): the disk's copy of it starts over. `replica`: its changed
   * keys and clocks, when any changed. `map`: the shard map changed.
   */
  protected takePersist(): Persist | null {
    const out: Persist = {};
    let any = false;
    const replica = this.currentReplica;
    if (this.replicaGeneration !== this.persistedGeneration) {
      out.reset = { replica: replica === null ? null : { epoch: this.currentMap.epoch, shard: replica.shard } };
      this.persistedGeneration = this.replicaGeneration;
      this.persistedClocks = null;
      any = true;
    }
    if (replica !== null) {
      const clocks = this.persistedClocks;
      // Clocks are replaced, never changed in place: the same objects mean the same clocks.
      if (
        replica.dirtyCount > 0 ||
        clocks === null ||
        clocks.applied !== replica.applied ||
        clocks.lamport !== replica.lamport ||
        clocks.base !== replica.base ||
        clocks.collected !== replica.collected
      ) {
        out.replica = { changes: replica.takeDirty(), applied: replica.applied, lamport: replica.lamport, base: replica.base, collected: replica.collected };
        this.persistedClocks = { applied: replica.applied, lamport: replica.lamport, base: replica.base, collected: replica.collected };
        any = true;
      }
    }
    if (this.currentMapDigest !== this.persistedMapDigest) {
      out.map = this.currentMap;
      this.persistedMapDigest = this.currentMapDigest;
      any = true;
    }
    return any ? out : null;
  }

  /**
   * The replica is still the one restored from disk at start (the map did not move this node since):
   * it has all it acknowledged and only catches up with its peers.
   */
  get replicaIsRestored(): boolean {
    return this.currentReplica !== null && this.restoredGeneration === this.replicaGeneration;
  }

  /** The disk already holds this map (what the node restored at start): it is not written again until it changes. */
  protected mapPersisted(map: ShardMap): void {
    this.persistedMapDigest = mapDigest(map);
  }

  get replica(): ReplicaView | null {
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

  get plantedBugs(): ReadonlySet<PlantedBug> {
    return this.bugs;
  }

  get checksMetadataOrigin(): boolean {
    return this.options.checkMetadataOrigin !== false;
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

  /** A full sync from a peer finished (or no peer could be reached): serve again. */
  protected markReady(): void {
    this.isReady = true;
  }

  /** Starts rebuilding this node's shard copy (a restart, a join): requests wait until markReady. */
  protected beginFullSync(): void {
    if (this.currentReplica !== null) this.startCopy();
  }

  /**
   * A new, empty replica of this node's shard in the current map (none if in no shard), keeping the
   * Lamport clock; it serves only once the runtime has copied the shard from a peer (markReady).
   */
  protected startCopy(): void {
    this.setReplica(this.newReplica(this.currentMap, this.currentReplica?.lamport ?? 0));
    this.isReady = this.currentReplica === null;
  }

  protected newReplica(map: ShardMap, lamport: number): Replica | null {
    const shard = shardOfNode(map, this.self);
    if (shard === null) return null;
    return new Replica({ self: this.self, shard, epoch: map.epoch, ...this.pendingLimits(), lamport });
  }

  /** The bounds every replica of this node gets: early arrivals, and collected tombstones remembered. */
  protected pendingLimits(): { pendingMax: number; pendingBytesMax?: number; graveyardMax?: number } {
    const { pendingMax, pendingBytesMax, graveyardMax } = this.options;
    return {
      pendingMax,
      ...(pendingBytesMax === undefined ? {} : { pendingBytesMax }),
      ...(graveyardMax === undefined ? {} : { graveyardMax }),
    };
  }
}
