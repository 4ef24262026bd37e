import { MESSAGES } from './api-messages.ts';

import { asBase, Replica } from './replica.ts';

import { checkReshard, planReshard } from './reshard-plan.ts';

import { liveKeysByPartition } from './reshard-preview.ts';

import { mapsEqual, membershipCount, mergeShardMaps, shardIds, shardOfKey, shardOfNode, withMember } from './shard-map.ts';

import type { Epoch, NodeAddress, ShardId, ShardMap, Version } from './types.ts';

import { supersedes } from './version-order.ts';

import {
  allMembers,
  fullSender,
  groupByOwners,
  leftOut,
  reflectedByClaims,
  shardsWithout,
  skipFirstMovedPartition,
  type Holdings,
  type PendingReshard,
  type PrepareOutcome,
  type Transfer,
  type TransferClaim,
} from './reshard-participant.ts';

import { type CommitOutcome, type MapChange, type Orphaned, type Reply, type SavedReplica } from './contract.ts';

import { ReplicationCore } from './replication-core.ts';


/** Shard maps and reshards: adopting a peer's map, a restart's replica, and every phase of a reshard at this node. */
export class ReshardCore extends ReplicationCore {
  /**
   * Takes a map a peer holds. Returns whether this node must rebuild its shard copy from a peer
   * (it joined a shard, or missed a reshard it did not take part in).
   */
  protected adoptMap(remote: ShardMap, atStart = false): MapChange {
    // A node that started without a map of its own built one from its environment (VIEW,
    // SHARD_COUNT). The store's map, heard at start, replaces it instead of merging with it: within
    // one epoch a merge unions members, and a VIEW unlike the store's (a new node's names it) deals
    // the nodes otherwise, so the union would put nodes in two shards. Only the first map heard, and
    // only before this node has served anything or announced itself; never back to an older epoch.
    const replace = atStart && this.mapFromEnvironment && remote.epoch >= this.currentMap.epoch;
    if (atStart) this.mapFromEnvironment = false;
    const merged = this.rejoinIfDropped(replace ? remote : mergeShardMaps(this.currentMap, remote));
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
   * A map of this node's epoch that dropped it from its shard (peers took it for a member that never
   * joined: it was down, or cut off from all of them, since it was added) and names it in no other:
   * it joins again at once, keeping its replica, so what it holds (writes of its own included) goes
   * on replicating. A node that starts and finds itself dropped joins the same way, and copies the
   * shard. The join counts one more change of its membership, so it wins over the drop everywhere.
   */
  private rejoinIfDropped(map: ShardMap): ShardMap {
    const shard = this.shard;
    if (shard === null || map.epoch !== this.currentMap.epoch || shardOfNode(map, this.self) !== null) return map;
    return membershipCount(map, shard, this.self) % 2 === 0 && membershipCount(map, shard, this.self) > 0 ? withMember(map, shard, this.self) : map;
  }

  /**
   * Takes back the replica this node persisted before a restart, if it still belongs to this node's
   * shard in the current map. The node is not ready until the runtime has caught up with a peer (or
   * found none); it already has everything it acknowledged, so its own dots continue, never reused.
   */
  protected restoreReplica(saved: SavedReplica): boolean {
    if (saved.epoch !== this.currentMap.epoch || saved.shard !== this.shard) return false;
    const replica = new Replica({
      self: this.self,
      shard: saved.shard,
      epoch: saved.epoch,
      ...this.pendingLimits(),
      lamport: saved.lamport,
    });
    // The versions first: with the base clocks in place, base versions would count as old news.
    replica.mergeState(saved.versions, saved.applied, saved.base ?? {}, 0, saved.collected ?? {});
    replica.graveyard.restore(saved.graveyard ?? []);
    replica.takeDirty();
    this.setReplica(replica);
    // The disk holds this very replica.
    this.persistedGeneration = this.replicaGeneration;
    this.restoredGeneration = this.replicaGeneration;
    this.isReady = false;
    return true;
  }

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
   * A reshard to the shard count the store has, with every node of the view in a shard already and
   * every member of a shard in the view: nothing would move, so nothing is done (no new epoch, no
   * transfers). A member that left the view (down, or removed) makes it a real reshard, which drops
   * it from the map, so the operator's way to shrink is `reshard N` at the same N.
   */
  reshardIsNoop(shardCount: number): boolean {
    const map = this.currentMap;
    if (shardIds(map).length !== shardCount) return false;
    const view = this.membership.view();
    const inView = new Set(view);
    return view.every((node) => shardOfNode(map, node) !== null) && [...allMembers(map)].every((node) => inView.has(node));
  }

  /** This replica's live keys per partition, if it is a ready replica of `shard` (for a reshard's preview and progress). */
  partitionKeys(shard: ShardId): number[] | null {
    const replica = this.currentReplica;
    if (replica === null || replica.shard !== shard || !this.isReady) return null;
    return liveKeysByPartition(replica.allVersions());
  }

  planReshard(shardCount: number): ShardMap {
    return planReshard(this.currentMap, this.membership.view(), shardCount);
  }

  /**
   * Phase 1 at every node: freeze writes (they wait for the commit) so that what phase 2 sends is
   * all this node will ever acknowledge in the old epoch.
   */
  protected prepareReshard(map: ShardMap, coordinator: NodeAddress, nowMs: number): PrepareOutcome {
    if (map.epoch !== this.currentMap.epoch + 1) {
      return { ok: false, reason: `epoch ${map.epoch} does not follow ${this.currentMap.epoch}` };
    }
    const pending = this.pendingReshard;
    if (pending !== null && (pending.coordinator !== coordinator || !mapsEqual(pending.map, map))) {
      return { ok: false, reason: `another reshard (by ${pending.coordinator}) is in progress` };
    }
    const replica = this.currentReplica;
    const holding = replica === null ? null : { claim: claimOf(replica), generation: this.replicaGeneration };
    const next = pending ?? { map, coordinator, startedMs: nowMs, incoming: new Map(), claims: [], sent: false, holding };
    this.pendingReshard = next;
    return { ok: true, holding: next.holding?.claim ?? null };
  }

  /**
   * Phase 2, once every node is frozen: what to send to whom. Every version this node holds goes to
   * every member of its key's new shard that took part (`targets`; the others copy their shard from
   * these), so nothing any replica acknowledged is lost; each of them gets this node's claim, even
   * with no versions. A node in no shard sends nothing.
   *
   * But what some replica sends anyway is left out (`holdings`, the prepared nodes' prepare
   * answers; see leftOut): what the receiver reflects already, and, unless this node is its old
   * shard's full sender, what that sender reflects. Those promises hold because a node refuses
   * phase 2 (null) if its replica is no longer the one it described at the prepare, and the
   * coordinator commits only when every prepared node delivered all of its transfers.
   */
  protected reshardTransfers(
    epoch: Epoch,
    targets: ReadonlySet<NodeAddress>,
    nowMs?: number,
    holdings: Holdings = new Map(),
  ): Map<NodeAddress, Transfer> | null {
    const pending = this.pendingReshard;
    if (pending === null || pending.map.epoch !== epoch) return null;
    if (pending.holding !== null && pending.holding.generation !== this.replicaGeneration) return null;
    // The coordinator is alive and in phase 2: the freeze's timeout counts from now, so a phase 1
    // that waited long for nodes that did not answer cannot make this node give up during phase 3.
    if (nowMs !== undefined) pending.startedMs = nowMs;
    const replica = this.currentReplica;
    if (replica === null) return new Map();
    // Versions as stored (judged by leftOut as they are), in base form only those that go somewhere.
    let versions: Iterable<Version> = replica.allVersions();
    if (this.bugs.has('reshard-skips-partition')) versions = skipFirstMovedPartition(this.currentMap, pending.map, versions);
    const claim = claimOf(replica);
    const sender = { self: this.self, epoch: this.currentMap.epoch, shard: replica.shard, full: fullSender(holdings, replica.shard) };
    const byOwner = groupByOwners(
      pending.map,
      versions,
      this.self,
      (version) => this.mergeIncoming(version),
      holdings.size === 0 ? undefined : (member, version) => leftOut(holdings, sender, member, version, this.bugs.has('reshard-no-full-sender')),
      (version) => asBase(version, replica.shard),
    );
    if (shardOfNode(pending.map, this.self) !== null) pending.claims.push(claim);
    const out = new Map<NodeAddress, Transfer>();
    for (const node of allMembers(pending.map)) {
      if (node !== this.self && targets.has(node)) out.set(node, { versions: byOwner.get(node) ?? [], claim });
    }
    return out;
  }

  /** Phase 2 finished here: every transfer of this node was delivered. */
  protected markSent(epoch: Epoch): void {
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
  protected acceptTransfer(epoch: Epoch, versions: Version[], claim?: TransferClaim): boolean {
    const pending = this.pendingReshard;
    if (pending === null || pending.map.epoch !== epoch) return false;
    for (const version of versions) this.mergeIncoming(version);
    if (claim !== undefined) pending.claims.push(claim);
    return true;
  }

  /** Phase 3: switch to the new epoch with the data received. */
  protected commitReshard(epoch: Epoch): CommitOutcome {
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
  protected abortReshard(epoch: Epoch): void {
    if (this.pendingReshard?.map.epoch === epoch) this.pendingReshard = null;
  }

  protected commit(map: ShardMap): void {
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

  protected mergeIncoming(version: Version): void {
    const incoming = (this.pendingReshard as PendingReshard).incoming;
    if (supersedes(version, incoming.get(version.key))) incoming.set(version.key, version);
  }
}

/** What a replica holds, as a reshard's prepare answers it and a transfer's claim states it. */
function claimOf(replica: Replica): TransferClaim {
  return { shard: replica.shard, applied: { ...replica.applied }, base: { ...replica.base } };
}
