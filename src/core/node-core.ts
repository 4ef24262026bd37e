import { isNodeAddress } from './address.ts';

import { MESSAGES } from './api-messages.ts';

import { membersOf, shardIds, shardOfNode, withMember } from './shard-map.ts';

import type { NodeAddress, ShardId, ShardMap } from './types.ts';

import { KvWaits, type ExpireResult, type WakeResult } from './waits.ts';

import { decideKv, parseKv } from './kv.ts';

export type { PendingReshard, Transfer, TransferClaim } from './reshard-participant.ts';
export * from './contract.ts';
import { CAUSAL_WAIT_MS, RESHARD_WAIT_MS, type KvDecision, type KvMethod, type KvRequest, type KvWait, type NodeCoreOptions, type ParkedDecision, type Reply } from './contract.ts';

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
  protected waitGeneration(): string {
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
}
