import { isNodeAddress } from './address.ts';

import { MESSAGES } from './api-messages.ts';

import { membersOf, shardIds, shardOfNode, withMember, withoutMember } from './shard-map.ts';

import type { NodeAddress, ShardId, ShardMap } from './types.ts';

import { counterOf } from './vector-clock.ts';

import { KvWaits, type WakeResult } from './waits.ts';

import type { LinkChange } from './links.ts';

import { assertNever } from './assert.ts';

import type { Input, InputKind, LinkEvent, Outputs, StepOf } from './step.ts';

import { decideKv, parseKv } from './kv.ts';

export type { Holdings, PendingReshard, Transfer, TransferClaim } from './reshard-participant.ts';
export * from './contract.ts';
export type * from './step.ts';
export type { WakeResult, ExpireResult } from './waits.ts';
export type { LinkView, ReplicaView } from './core-state.ts';
import { CAUSAL_WAIT_MS, MEMBER_JOIN_GRACE_MS_DEFAULT, RESHARD_WAIT_MS, type KvDecision, type KvMethod, type KvRequest, type NodeCoreOptions, type Reply } from './contract.ts';

import { ReshardCore } from './reshard-core.ts';


/**
 * One node's protocol state: view, shard map, its replica, and a reshard in progress. Pure: it reads
 * no clock, does no I/O; the runtime passes time in and carries out what it returns.
 */
export class NodeCore extends ReshardCore {
  /** Requests waiting for a state change (see waits.ts). */
  private readonly waits: KvWaits;

  constructor(options: NodeCoreOptions, view: NodeAddress[], map: ShardMap) {
    super(options, view, map);
    this.waits = new KvWaits((request, nowMs) => this.decideKv(request, nowMs), {
      causalWaitMs: options.causalWaitMs ?? CAUSAL_WAIT_MS,
      reshardWaitMs: options.reshardWaitMs ?? RESHARD_WAIT_MS,
    });
  }

  /**
   * The core's one entry: an input (a client request, a peer message, an outcome of the runtime's
   * own I/O, a timer) with the time. Out comes what the disk must hold after it, the parked requests
   * it lets go on, and its own outcome, in the order the runtime carries them out (see Step).
   */
  step<I extends Input>(input: I, nowMs: number): StepOf<I> {
    // With nothing parked there is nothing to wake (a request parked by this very input was
    // decided in the state it leaves).
    const before = this.waits.size > 0 ? this.changeMark() : null;
    const out = this.apply(input, nowMs);
    // A parked request is decided again only after a step that changed what it waits on, or that
    // released a link (a request waiting for what the peer has may now pull it). Its release (a
    // write applied, say) is part of this step, so `persist` below includes it.
    const changed = before !== null && (this.changeMark() !== before || (input.kind === 'link' && out === 'released'));
    const wake = changed && this.waits.size > 0 ? this.wake(nowMs) : null;
    const persist = this.takePersist();
    return { persist, wake, out: out as Outputs[I['kind']] };
  }

  private apply(input: Input, nowMs: number): Outputs[InputKind] {
    switch (input.kind) {
      case 'kv':
        return this.waits.submit(input.request, nowMs, this.waitGeneration(), this.currentReplica?.applied ?? null);
      case 'expire':
        return this.waits.expire(input.ticket, nowMs);
      case 'close':
        return this.waits.expireAll();
      case 'view-put':
        return this.putView(input.node);
      case 'view-delete':
        return this.deleteView(input.node, input.reason);
      case 'add-member':
        return this.addMember(input.shard, input.node);
      case 'replicate':
        return this.onReplicate(input.epoch, input.shard, input.versions);
      case 'sync-request':
        return this.onSyncRequest(input.epoch, input.shard, input.since, input.full, input.base);
      case 'digest-request':
        return this.onDigestRequest(input.epoch, input.shard, input.digests);
      case 'repair':
        return this.onRepair(input.epoch, input.shard, input.versions, input.reflected, input.from ?? null, nowMs);
      case 'repair-pushed':
        this.onRepairPushed(input.epoch, input.shard, input.peer, input.versions, nowMs);
        return undefined;
      case 'map':
        return this.adoptMap(input.map, input.atStart === true);
      case 'reshard-prepare':
        return this.prepareReshard(input.map, input.coordinator, nowMs);
      case 'reshard-transfer':
        return this.acceptTransfer(input.epoch, input.versions, input.claim);
      case 'reshard-commit':
        return this.commitReshard(input.epoch);
      case 'reshard-abort':
        this.abortReshard(input.epoch);
        return undefined;
      case 'sync-response':
        return this.onSyncResponse(input.epoch, input.shard, input.versions, input.applied, {
          ...(input.base === undefined ? {} : { base: input.base }),
          lamport: input.lamport,
          ...(input.collected === undefined ? {} : { collected: input.collected }),
          full: input.full === true,
          ...(input.peer === undefined ? {} : { peer: input.peer }),
          nowMs,
        });
      case 'peer-horizon':
        return this.onPeerHorizon(input.peer, input.epoch, input.shard, input.collected, nowMs);
      case 'ping-answer':
        return this.onPingAnswer(input.peer, input.info, nowMs, input.linkUp);
      case 'probe':
        return this.observe(input.peer, input.answered, nowMs);
      case 'link':
        return this.onLinkEvent(input.event, nowMs);
      case 'learn':
        return this.learn(input.node, nowMs);
      case 'forget-peer':
        this.forgetPeer(input.peer);
        return undefined;
      case 'reshard-transfers':
        return this.reshardTransfers(input.epoch, input.targets, nowMs, input.holdings);
      case 'reshard-sent':
        this.markSent(input.epoch);
        return undefined;
      case 'restore':
        this.mapFromEnvironment = input.map === null;
        if (input.map !== null) this.mapPersisted(input.map);
        return input.replica !== null && this.restoreReplica(input.replica);
      case 'full-sync-begin':
        this.beginFullSync();
        return undefined;
      case 'ready':
        this.markReady();
        return undefined;
      case 'collect-tombstones':
        return this.collectTombstones(nowMs, input.peerApplied);
      case 'drop-never-joined':
        return this.dropNeverJoined(nowMs);
      default:
        return assertNever(input, 'input');
    }
  }

  private onLinkEvent(event: LinkEvent, nowMs: number): LinkChange {
    switch (event.type) {
      case 'probe-sent':
        this.links.probeSent(event.peer, nowMs);
        return null;
      case 'probe-answered':
        return this.links.probeAnswered(event.peer, event.sentTo, event.incarnation, nowMs);
      case 'failed':
        return this.links.failed(event.peer, event.sentTo, nowMs);
      case 'answered':
        this.links.answered(event.peer, nowMs);
        return null;
      case 'refused-by':
        this.links.refusedBy(event.peer, event.remainingMs, nowMs);
        return null;
      case 'announced':
        return this.links.announced(event.peer, event.incarnation, nowMs);
      case 'check-late':
        return this.links.checkLate(event.peer, nowMs);
      case 'forgive-probes':
        this.links.forgiveProbes();
        return null;
      default:
        return assertNever(event, 'link event');
    }
  }

  /**
   * Names what parked requests wait on: the replica, readiness, map and reshard (waitGeneration),
   * the replica's clocks (replaced, never changed in place) and the view. A step that leaves it the
   * same cannot release a parked request, except a link released (a waiting request may now pull).
   */
  private changeMark(): string {
    const replica = this.currentReplica;
    if (replica !== this.markedReplica || (replica !== null && (replica.applied !== this.markedApplied || replica.base !== this.markedBase))) {
      this.markedReplica = replica;
      this.markedApplied = replica?.applied ?? null;
      this.markedBase = replica?.base ?? null;
      this.clockChanges++;
    }
    return `${this.waitGeneration()}/${this.clockChanges}/${this.membership.changes}`;
  }

  private markedReplica: unknown = null;
  private markedApplied: unknown = null;
  private markedBase: unknown = null;
  private clockChanges = 0;

  parseKv(method: KvMethod, key: string, rawBody: unknown, deadlineMs: number | null = null): { ok: true; request: KvRequest } | { ok: false; reply: Reply } {
    return parseKv(method, key, rawBody, deadlineMs);
  }

  /** What to do with a checked request now (see kv.ts). */
  protected decideKv(request: KvRequest, nowMs: number): KvDecision {
    return decideKv(this, this.currentReplica, request, nowMs);
  }

  /** After a state change: the parked requests it lets go on, decided (see KvWaits.wake). */
  private wake(nowMs: number): WakeResult {
    return this.waits.wake(nowMs, this.waitGeneration(), this.currentReplica?.applied ?? null);
  }

  /** Names the state a change of which makes every parked request be decided again: replica, readiness, map, reshard. */
  protected waitGeneration(): string {
    return `${this.replicaGeneration}/${this.isReady}/${this.currentMapDigest}/${this.pendingReshard?.map.epoch ?? ''}`;
  }

  /** Requests parked now. */
  get parkedCount(): number {
    return this.waits.size;
  }

  protected putView(node: NodeAddress): Reply {
    const outcome = this.membership.add(node);
    // A replicated-only store grows with its view: a node that joins becomes a replica.
    if (this.currentMap.mode === 'replicated') {
      const only = shardIds(this.currentMap)[0];
      if (only !== undefined) this.setMap(withMember(this.currentMap, only, node));
    }
    return outcome === 'added' ? { status: 201, body: { result: MESSAGES.added } } : { status: 200, body: { result: MESSAGES.alreadyPresent } };
  }

  protected deleteView(node: NodeAddress, reason: 'down' | 'request'): Reply {
    const outcome = this.membership.remove(node, reason);
    if (outcome === 'deleted') this.peers.forget(node);
    return outcome === 'deleted' ? { status: 200, body: { result: MESSAGES.deleted } } : { status: 404, body: { error: MESSAGES.noSuchReplica } };
  }

  /**
   * Members that never joined: an address that is a member of a shard but has never been heard from
   * here (no probe answered, no announcement), is out of the view, and that no peer's ping names (in
   * its view, or with a write of its in its applied clock), for MEMBER_JOIN_GRACE_MS since this node
   * first saw it a member, is dropped from its shard: an address where nothing ever listened would
   * otherwise hold its shard's tombstones and hints for ever. If it does come up, it finds itself
   * dropped and joins again (see rejoinIfDropped); a member wrongly taken for one (cut off from
   * everyone since it was added) does the same, keeping its replica. Returns what was dropped.
   */
  protected dropNeverJoined(nowMs: number): { shard: ShardId; node: NodeAddress }[] {
    const graceMs = this.options.memberJoinGraceMs ?? MEMBER_JOIN_GRACE_MS_DEFAULT;
    const dropped: { shard: ShardId; node: NodeAddress }[] = [];
    const members = new Set<NodeAddress>();
    let map = this.currentMap;
    for (const shard of shardIds(map)) {
      for (const node of membersOf(map, shard) ?? []) {
        if (node === this.self) continue;
        members.add(node);
        const heardOf = this.links.incarnationOf(node) !== null || this.membership.has(node) || this.peers.mentions(node) || counterOf(this.currentReplica?.applied ?? {}, node) > 0;
        if (heardOf) {
          this.neverJoinedSince.delete(node);
          continue;
        }
        const since = this.neverJoinedSince.get(node);
        if (since === undefined) this.neverJoinedSince.set(node, nowMs);
        else if (nowMs - since >= graceMs) {
          map = withoutMember(map, shard, node);
          dropped.push({ shard, node });
        }
      }
    }
    for (const node of this.neverJoinedSince.keys()) if (!members.has(node)) this.neverJoinedSince.delete(node);
    if (dropped.length > 0) {
      for (const { node } of dropped) this.neverJoinedSince.delete(node);
      this.setMap(map);
    }
    return dropped;
  }

  /** Since when each member this node never heard from has been one (see dropNeverJoined); at most one entry per member. */
  private readonly neverJoinedSince = new Map<NodeAddress, number>();

  /** `joined`: this node is the one added, and must copy its new shard from a peer. */
  protected addMember(shard: ShardId, node: NodeAddress): Reply & { joined?: boolean } {
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
}
