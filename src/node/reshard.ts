// Resharding in three phases, on every node at once: the coordinator side (the node asked for
// PUT /shard/reshard) and the participant side (every node, the coordinator included).

import { MESSAGES } from '../core/api-messages.ts';
import type { Epoch, NodeAddress, ShardMap } from '../core/types.ts';
import type { NodeContext } from './context.ts';
import type { HttpReply } from './http-server.ts';
import { PeerUnreachableError } from './peer-client.ts';
import { json } from './replies.ts';
import { sendVersions } from './send-versions.ts';

/** What a reshard asks of the failure detector. */
export interface ReshardDeps {
  /** A new epoch: the ping answers describe the old one. */
  forgetPings(): void;
}

export class Resharding {
  private readonly ctx: NodeContext;
  private readonly deps: ReshardDeps;

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
    if (core.reshardInProgress) return json(503, { error: 'A reshard is already in progress; try again later' });
    const map = core.planReshard(shardCount as number);
    const nodes = core.membership.view();
    const started = timers.now();
    log.info({ epoch: map.epoch, shardCount, nodes }, 'reshard: preparing');

    // Phase 1: every node freezes writes. Phase 2: every node sends its data to the new owners.
    // Phase 3: every node switches epoch. A phase starts only when the one before finished
    // everywhere, so no transfer reaches a node that is not ready for it.
    const frozen = await this.everyNode(nodes, '/internal/reshard/prepare', { map, coordinator: config.address }, () =>
      this.prepare(map, config.address),
    );
    const refused = frozen.filter((reply) => reply.status !== 200);
    // Every shard's data must move, so some member of each old shard must take part, and some member
    // of each new shard must take part to receive it: a shard whose members are all down would start
    // the new epoch without its keys, and their old versions arriving later would overwrite what
    // clients wrote meanwhile.
    const prepared = nodes.filter((_, i) => frozen[i]?.status === 200 && !(frozen[i]?.body as { unreachable?: boolean }).unreachable);
    const stranded = core.shardsWithout(new Set(prepared), map);
    if (refused.length > 0 || stranded.length > 0) {
      log.warn({ epoch: map.epoch, refused: refused.map((r) => r.body), stranded }, 'reshard: refused or a shard is unreachable; abandoning');
      await this.abandonReshard(nodes, map.epoch);
      if (refused.length > 0) return json(503, { error: 'Another reshard is in progress; try again later' });
      return json(503, { error: `No member of shard ${stranded.join(', ')} is reachable, so its keys cannot move; try again later` });
    }
    // Phase 2 among the nodes that took part; the others copy their new shard from these when back.
    const sends = await this.everyNode(prepared, '/internal/reshard/send', { epoch: map.epoch, targets: prepared }, () =>
      this.sendReshardData(map.epoch, new Set(prepared)),
    );
    const incomplete = prepared.filter((_, i) => {
      const reply = sends[i];
      const body = reply?.body as { unreachable?: boolean; failed?: unknown[] } | undefined;
      return reply?.status !== 200 || body?.unreachable === true || (body?.failed?.length ?? 0) > 0;
    });
    if (incomplete.length > 0) {
      // A node whose data did not reach every new owner would drop it at the commit.
      log.warn({ epoch: map.epoch, incomplete }, 'reshard: transfers incomplete; abandoning');
      await this.abandonReshard(nodes, map.epoch);
      return json(503, { error: 'A node could not hand over its keys during the reshard; try again later' });
    }
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
  private async everyNode(nodes: NodeAddress[], path: string, body: unknown, local: () => HttpReply | Promise<HttpReply>): Promise<HttpReply[]> {
    return Promise.all(
      nodes.map(async (node) => {
        if (node === this.ctx.config.address) return local();
        try {
          const reply = await this.ctx.peers.call(node, 'POST', path, body, { timeoutMs: this.ctx.config.reshardTimeoutMs });
          return json(reply.status, reply.body);
        } catch (error) {
          if (!(error instanceof PeerUnreachableError)) throw error;
          this.ctx.log.warn({ peer: node, path }, 'reshard: node unreachable; it will copy its new shard when back');
          return json(200, { unreachable: true });
        }
      }),
    );
  }

  // ---------------------------------------------------------------- participant

  /** Phase 1 here: freeze writes until the commit. */
  prepare(map: ShardMap, coordinator: NodeAddress): HttpReply {
    const prepared = this.ctx.core.prepareReshard(map, coordinator, this.ctx.timers.now());
    if (!prepared.ok) return json(409, { error: prepared.reason });
    this.ctx.stateChanged();
    return json(200, { ok: true });
  }

  /**
   * Phase 2 here: send every version this node holds to the members of its key's new shard among
   * `targets`, with this node's claim; answer when all is delivered, naming the targets it was not.
   */
  async sendReshardData(epoch: Epoch, targets: ReadonlySet<NodeAddress>): Promise<HttpReply> {
    const { core, config, log, peers } = this.ctx;
    const transfers = core.reshardTransfers(epoch, targets);
    if (transfers === null) return json(409, { error: `no prepared reshard for epoch ${epoch}` });
    let sent = 0;
    const failed: NodeAddress[] = [];
    await Promise.all(
      [...transfers].map(async ([peer, transfer]) => {
        try {
          const result = await sendVersions(peers, peer, '/internal/reshard/transfer', { epoch }, transfer.versions, config.reshardTimeoutMs, {
            claim: transfer.claim,
          });
          sent += result.sent;
        } catch (error) {
          log.warn({ peer, err: error }, 'reshard: transfer failed');
          failed.push(peer);
        }
      }),
    );
    if (failed.length === 0) core.markSent(epoch);
    log.info({ epoch, versionsSent: sent, failed }, 'reshard: data sent');
    return json(200, { ok: true, sent, failed });
  }

  /** Phase 3 here: switch to the new epoch. */
  async commit(epoch: Epoch): Promise<HttpReply> {
    const core = this.ctx.core;
    const committed = core.commitReshard(epoch);
    if (committed) {
      this.ctx.log.info({ epoch, shard: core.shard, keys: core.replica?.liveKeyCount() ?? 0 }, 'reshard: new epoch');
      this.deps.forgetPings();
    }
    this.ctx.stateChanged();
    await this.ctx.storage.flush();
    return committed ? json(200, { ok: true }) : json(409, { error: `no prepared reshard for epoch ${epoch}` });
  }

  /** The reshard of `epoch` is abandoned: unfreeze, stay in the old epoch. */
  abort(epoch: Epoch): HttpReply {
    this.ctx.core.abortReshard(epoch);
    this.ctx.stateChanged();
    return json(200, { ok: true });
  }
}
