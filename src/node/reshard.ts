// Resharding in three phases, on every node at once: the coordinator side (the node asked for
// PUT /shard/reshard) and the participant side (every node, the coordinator included).

import { MESSAGES } from '../core/api-messages.ts';
import type { Epoch, NodeAddress, ShardMap } from '../core/types.ts';
import type { NodeContext } from './context.ts';
import type { HttpReply } from './http-server.ts';
import { PeerUnreachableError } from './peer-client.ts';
import { json } from './replies.ts';
import { sendVersions } from './send-versions.ts';
import type { Maps } from './maps.ts';
import { afterPrepare, afterSend, type Holdings, type TransferClaim } from '../core/reshard-participant.ts';
import { isTransferClaim } from './wire.ts';
import { previewReshard, type ReshardPreview } from '../core/reshard-preview.ts';
import { membersOf, PARTITION_COUNT, shardOfNode } from '../core/shard-map.ts';
import type { ShardId } from '../core/types.ts';
import { CONTROL_TIMEOUT_MS } from './limits.ts';

/** A reshard this node coordinates, as /status shows it: partitions and keys handed over so far, of all that move. */
export interface ReshardProgress {
  epoch: number;
  shardCount: number;
  phase: 'prepare' | 'send' | 'commit';
  coordinator: NodeAddress;
  partitionsMoved: number;
  partitionsTotal: number;
  /** Null when a shard's key counts were unknown at the start. */
  keysMoved: number | null;
  keysTotal: number | null;
  seconds: number;
}

/** What a reshard asks of the other concerns. */
export interface ReshardDeps {
  /** Carry out a change of map (a commit this node was not counted in). */
  carryOut: Maps['carryOut'];
}

export class Resharding {
  private readonly ctx: NodeContext;
  private readonly deps: ReshardDeps;
  /** True from a reshard's request to its end here, its preview included. */
  private coordinating = false;
  /** The reshard this node coordinates now, with what moves (see progress()). */
  private running: { preview: ReshardPreview; phase: ReshardProgress['phase']; sent: Set<ShardId>; startedMs: number } | null = null;

  constructor(ctx: NodeContext, deps: ReshardDeps) {
    this.ctx = ctx;
    this.deps = deps;
  }

  // ---------------------------------------------------------------- coordinator

  async reshard(shardCount: unknown): Promise<HttpReply> {
    const { core, config, log, timers } = this.ctx;
    const refusal = core.checkReshard(shardCount);
    if (refusal) return json(refusal.status, refusal.body);
    if (core.reshardIsNoop(shardCount as number)) {
      log.info({ shardCount, epoch: core.map.epoch }, 'reshard to the current shard count, every node in a shard: nothing to move');
      return json(200, { result: MESSAGES.resharded });
    }
    // This node coordinates one reshard at a time, counted from here: its preview below waits for
    // the shards' key counts before the prepare freezes anything.
    if (core.reshardInProgress || this.coordinating) return json(503, { error: 'A reshard is already in progress; try again later' });
    this.coordinating = true;
    try {
      return await this.planAndCoordinate(shardCount as number);
    } finally {
      this.coordinating = false;
    }
  }

  private async planAndCoordinate(shardCount: number): Promise<HttpReply> {
    const { core, timers } = this.ctx;
    const map = core.planReshard(shardCount);
    const nodes = core.view();
    const started = timers.now();
    const before = core.map;
    // What moves: the partitions are known from the maps now; the keys in them once a member of
    // each shard has sent its counts, asked alongside phase 1 (which starts at once, so that no
    // other reshard can slip in first).
    const running = { preview: previewReshard(before, map, new Map()), phase: 'prepare' as ReshardProgress['phase'], sent: new Set<ShardId>(), startedMs: started };
    this.running = running;
    const counted = this.partitionCounts(before).then((counts) => {
      running.preview = previewReshard(before, map, counts);
    });
    try {
      return await this.coordinate(map, nodes, running, before, counted);
    } finally {
      this.running = null;
    }
  }

  /** The three phases of a reshard to `map`, coordinated from here. */
  private async coordinate(
    map: ShardMap,
    nodes: NodeAddress[],
    running: NonNullable<Resharding['running']>,
    before: ShardMap,
    counted: Promise<void>,
  ): Promise<HttpReply> {
    const { core, config, log, timers } = this.ctx;
    const started = running.startedMs;
    const { partitionsMoving, keysMoving } = running.preview;
    log.info({ epoch: map.epoch, shardCount: running.preview.shardCount, nodes, partitionsMoving, keysMoving }, 'reshard: preparing');

    // Phase 1: every node freezes writes. Phase 2: every node sends its data to the new owners.
    // Phase 3: every node switches epoch. A phase starts only when the one before finished
    // everywhere, so no transfer reaches a node that is not ready for it.
    const frozen = await this.everyNode(nodes, '/internal/reshard/prepare', { map, coordinator: config.address }, () =>
      this.prepare(map, config.address),
    );
    const afterPhase1 = afterPrepare(core.map, map, nodes, frozen);
    if (afterPhase1.kind === 'abandon') {
      log.warn({ epoch: map.epoch, ...afterPhase1.detail }, `reshard: ${afterPhase1.why}; abandoning`);
      await this.abandonReshard(nodes, map.epoch);
      return json(afterPhase1.reply.status, afterPhase1.reply.body);
    }
    const prepared = afterPhase1.prepared;
    const holdings = holdingsOf(nodes, frozen, new Set(prepared));
    await counted;
    // Phase 2 among the nodes that took part; the others copy their new shard from these when back.
    running.phase = 'send';
    const sendStarted = timers.now();
    const sends = await this.everyNode(
      prepared,
      '/internal/reshard/send',
      { epoch: map.epoch, targets: prepared, holdings: Object.fromEntries(holdings) },
      () => this.sendReshardData(map.epoch, new Set(prepared), holdings),
      // A shard's data has moved once one of its members delivered all it holds.
      (node, reply) => {
        const shard = shardOfNode(before, node);
        const failed = (reply.body as { failed?: unknown } | undefined)?.failed;
        if (shard !== null && reply.status === 200 && Array.isArray(failed) && failed.length === 0) running.sent.add(shard);
      },
    );
    const afterPhase2 = afterSend(prepared, sends, { phaseMs: timers.now() - sendStarted, freezeMs: config.reshardTimeoutMs });
    if (afterPhase2.kind === 'abandon') {
      log.warn({ epoch: map.epoch, ...afterPhase2.detail }, `reshard: ${afterPhase2.why}; abandoning`);
      await this.abandonReshard(nodes, map.epoch);
      return json(afterPhase2.reply.status, afterPhase2.reply.body);
    }
    running.phase = 'commit';
    log.info({ epoch: map.epoch, ms: timers.now() - started }, 'reshard: data transferred; committing');
    await this.everyNode(nodes, '/internal/reshard/commit', { epoch: map.epoch }, () => this.commit(map.epoch));
    log.info({ epoch: map.epoch, ms: timers.now() - started }, 'reshard: committed');
    return json(200, { result: MESSAGES.resharded });
  }

  /** Every node unfreezes and stays in the old epoch (a node not reached times its reshard out). */
  private async abandonReshard(nodes: NodeAddress[], epoch: Epoch): Promise<void> {
    await this.everyNode(nodes, '/internal/reshard/abort', { epoch }, () => this.abort(epoch));
  }

  /**
   * One reshard phase on every node at once (this one through `local`). A node that cannot be
   * reached counts as done: it copies its new shard from a peer when it is back.
   */
  private async everyNode(
    nodes: NodeAddress[],
    path: string,
    body: unknown,
    local: () => HttpReply | Promise<HttpReply>,
    each: (node: NodeAddress, reply: { status: number; body: unknown }) => void = () => undefined,
  ): Promise<HttpReply[]> {
    return Promise.all(
      nodes.map(async (node) => {
        if (node === this.ctx.config.address) {
          const reply = await local();
          each(node, { status: reply.status, body: reply.body });
          return reply;
        }
        try {
          const reply = await this.ctx.peers.call(node, 'POST', path, body, { timeoutMs: this.ctx.config.reshardTimeoutMs });
          each(node, reply);
          return json(reply.status, reply.body);
        } catch (error) {
          if (!(error instanceof PeerUnreachableError)) throw error;
          this.ctx.log.warn({ peer: node, path }, 'reshard: node unreachable; it will copy its new shard when back');
          return json(200, { unreachable: true });
        }
      }),
    );
  }

  /** The reshard this node coordinates, as /status shows it (null: none). */
  progress(): ReshardProgress | null {
    const running = this.running;
    if (running === null) return null;
    const { preview, phase, sent } = running;
    const done = phase === 'commit';
    let partitionsMoved = 0;
    let keysMoved: number | null = 0;
    for (const m of preview.moving) {
      if (!done && !sent.has(m.shard)) continue;
      partitionsMoved += m.partitions;
      keysMoved = keysMoved === null || m.keys === null ? null : keysMoved + m.keys;
    }
    return {
      epoch: preview.epoch,
      shardCount: preview.shardCount,
      phase,
      coordinator: this.ctx.config.address,
      partitionsMoved,
      partitionsTotal: preview.partitionsMoving,
      keysMoved: preview.keysMoving === null ? null : keysMoved,
      keysTotal: preview.keysMoving,
      seconds: (this.ctx.timers.now() - running.startedMs) / 1000,
    };
  }

  /** GET /shard/reshard-plan/N: what a reshard to N shards would move, without moving anything. */
  async plan(shardCount: unknown): Promise<HttpReply> {
    const core = this.ctx.core;
    const refusal = core.checkReshard(shardCount);
    if (refusal) return json(refusal.status, refusal.body);
    const current = core.map;
    const next = core.planReshard(shardCount as number);
    return json(200, { ...previewReshard(current, next, await this.partitionCounts(current)), noop: core.reshardIsNoop(shardCount as number) });
  }

  /**
   * Each shard's live keys per partition, from whichever of its members answers first: every
   * member is asked at once, so this takes one round trip, and at most CONTROL_TIMEOUT_MS.
   */
  private async partitionCounts(map: ShardMap): Promise<Map<ShardId, readonly number[]>> {
    const out = new Map<ShardId, readonly number[]>();
    await Promise.all(
      Object.keys(map.shards).map(async (id) => {
        const shard = id as ShardId;
        const counts = await this.firstCounts(membersOf(map, shard) ?? [], shard);
        if (counts !== null) out.set(shard, counts);
      }),
    );
    return out;
  }

  /** The first counts any of `members` answers with (in-sync replicas agree); null when none does. */
  private async firstCounts(members: readonly NodeAddress[], shard: ShardId): Promise<readonly number[] | null> {
    let first: readonly number[] | null = null;
    let found = (): void => undefined;
    const someone = new Promise<void>((resolve) => {
      found = resolve;
    });
    const everyone = Promise.all(
      members.map(async (member) => {
        const counts = await this.countsAt(member, shard);
        if (counts !== null && first === null) {
          first = counts;
          found();
        }
      }),
    );
    // The others' answers (countsAt never throws) are not waited for once one has come.
    await Promise.race([someone, everyone]);
    return first;
  }

  private async countsAt(member: NodeAddress, shard: ShardId): Promise<readonly number[] | null> {
    if (member === this.ctx.config.address) return this.ctx.core.partitionKeys(shard);
    try {
      const reply = await this.ctx.peers.call(member, 'GET', `/internal/partition-keys/${shard}`, undefined, { timeoutMs: CONTROL_TIMEOUT_MS, lane: 'control' });
      const counts = (reply.body as { counts?: unknown } | undefined)?.counts;
      return reply.status === 200 && isCounts(counts) ? counts : null;
    } catch {
      return null;
    }
  }

  // ---------------------------------------------------------------- participant

  /** Phase 1 here: freeze writes until the commit; answer what this node's replica holds. */
  prepare(map: ShardMap, coordinator: NodeAddress): HttpReply {
    const prepared = this.ctx.step({ kind: 'reshard-prepare', map, coordinator });
    if (!prepared.ok) return json(409, { error: prepared.reason });
    return json(200, { ok: true, holding: prepared.holding });
  }

  /**
   * Phase 2 here: send every version this node holds to the members of its key's new shard among
   * `targets`, but what `holdings` shows some replica sends anyway (see leftOut), with this node's
   * claim; answer when all is delivered, naming the targets it was not.
   */
  async sendReshardData(epoch: Epoch, targets: ReadonlySet<NodeAddress>, holdings: Holdings = new Map()): Promise<HttpReply> {
    const { config, log, peers } = this.ctx;
    const transfers = this.ctx.step({ kind: 'reshard-transfers', epoch, targets, holdings });
    if (transfers === null) return json(409, { error: `no prepared reshard for epoch ${epoch}, or this node's replica changed since it prepared` });
    let sent = 0;
    const failed: NodeAddress[] = [];
    await Promise.all(
      [...transfers].map(async ([peer, transfer]) => {
        try {
          const result = await sendVersions(peers, peer, transfer.versions, {
            path: '/internal/reshard/transfer',
            fields: { epoch },
            lastFields: { claim: transfer.claim },
            timeoutMs: config.reshardTimeoutMs,
          });
          sent += result.sent;
        } catch (error) {
          log.warn({ peer, err: error }, 'reshard: transfer failed');
          failed.push(peer);
        }
      }),
    );
    if (failed.length === 0) this.ctx.step({ kind: 'reshard-sent', epoch });
    log.info({ epoch, versionsSent: sent, failed }, 'reshard: data sent');
    return json(200, { ok: true, sent, failed });
  }

  /**
   * Phase 3 here: switch to the new epoch. A node the coordinator did not count (it prepared, but
   * phase 2 never reached it) takes the new map as a node that missed the reshard.
   */
  async commit(epoch: Epoch): Promise<HttpReply> {
    const core = this.ctx.core;
    const before = core.map;
    const result = this.ctx.step({ kind: 'reshard-commit', epoch });
    if (result.outcome === 'committed') {
      this.ctx.log.info({ epoch, shard: core.shard, keys: core.replica?.liveKeyCount() ?? 0 }, 'reshard: new epoch');
    } else if (result.outcome === 'missed') {
      this.ctx.log.warn({ epoch }, 'reshard committed without this node (it was not counted): handing over what it held and copying its new shard');
      this.deps.carryOut(result.change, before, { source: 'reshard commit without this node', syncNow: true });
    }
    await this.ctx.storage.flush();
    return result.outcome === 'not-prepared' ? json(409, { error: `no prepared reshard for epoch ${epoch}` }) : json(200, { ok: true });
  }

  /** The reshard of `epoch` is abandoned: unfreeze, stay in the old epoch. */
  abort(epoch: Epoch): HttpReply {
    this.ctx.step({ kind: 'reshard-abort', epoch });
    return json(200, { ok: true });
  }
}

function isCounts(value: unknown): value is number[] {
  return Array.isArray(value) && value.length === PARTITION_COUNT && value.every((n) => Number.isSafeInteger(n) && n >= 0);
}

/**
 * The prepared nodes' holdings, from their prepare answers (`replies[i]` is `nodes[i]`'s). An answer
 * without a well-formed holding (a node in no shard, or one running code that does not declare it)
 * names none: nothing is left out on its account.
 */
function holdingsOf(nodes: readonly NodeAddress[], replies: readonly HttpReply[], prepared: ReadonlySet<NodeAddress>): Map<NodeAddress, TransferClaim> {
  const holdings = new Map<NodeAddress, TransferClaim>();
  for (const [i, node] of nodes.entries()) {
    const holding = (replies[i]?.body as { holding?: unknown } | undefined)?.holding;
    if (prepared.has(node) && isTransferClaim(holding)) holdings.set(node, holding);
  }
  return holdings;
}
