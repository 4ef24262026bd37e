// Requests for keys of another shard are relayed to a member of that shard, with failover, and so
// is a key count of another shard.

import { afterForwardAttempt, noMemberServed, type ForwardAttempt } from '../core/forward-rules.ts';
import type { KvMethod, Reply } from '../core/node-core.ts';
import { membersOf } from '../core/shard-map.ts';
import type { NodeAddress, ShardId } from '../core/types.ts';
import type { NodeContext } from './context.ts';
import { ForwardBatcher, type ForwardBatchCounts } from './forward-batch.ts';
import type { HttpReply } from './http-server.ts';
import { CONTROL_TIMEOUT_MS, FORWARD_BATCH_BYTES_MAX, FORWARD_HOPS_MAX } from './limits.ts';
import { PeerUnreachableError, causeOf } from './peer-client.ts';
import { json, RawJson } from './replies.ts';

export class Forwarding {
  private readonly ctx: NodeContext;
  /** A request to a member failed (it may be down). */
  private readonly suspect: (peer: NodeAddress, what: string) => void;

  /** Sends the relayed requests: those of one turn to one member go in one batch (forward-batch.ts). */
  private readonly batcher: ForwardBatcher;

  constructor(ctx: NodeContext, suspect: (peer: NodeAddress, what: string) => void, batcher?: ForwardBatcher) {
    this.ctx = ctx;
    this.suspect = suspect;
    this.batcher = batcher ?? new ForwardBatcher(ctx.peers, ctx.timers, setImmediate, { itemsMax: 1, bytesMax: FORWARD_BATCH_BYTES_MAX });
  }

  /** How many relayed requests went on their own and in batches (for /metrics). */
  get batchCounts(): ForwardBatchCounts {
    return this.batcher.counts;
  }

  /**
   * Relay to a member of the key's shard in the core's order (`targets`); status and body come back
   * unchanged (the answer's text is relayed as it came, parsed only for a 503, the one status the
   * failover rule reads). `body` is the client's body, best as its text (JsonText) so that it goes
   * on as it came. After each attempt the core's rule (afterForwardAttempt) says whether to try the
   * next member. The request carries a deadline past which a member refuses a write.
   */
  async forward(
    method: KvMethod,
    path: string,
    body: unknown,
    shard: ShardId,
    targets: NodeAddress[],
    hops: number,
    deadlineMs: number | null,
  ): Promise<HttpReply> {
    const { config, timers } = this.ctx;
    if (hops >= FORWARD_HOPS_MAX) {
      return json(503, { error: 'The shard map is changing; try again later' });
    }
    const deadline = deadlineMs ?? timers.now() + config.requestTimeoutMs;
    let lacking: Reply | null = null;
    for (const target of targets) {
      // A read may take its full time at each member; a write's attempts share its deadline.
      const timeoutMs = method === 'GET' && deadlineMs === null ? config.requestTimeoutMs : Math.max(1, deadline - timers.now());
      let attempt: ForwardAttempt;
      try {
        const reply = await this.batcher.call(target, { method, path, body, hops: hops + 1, deadlineMs: deadline, timeoutMs });
        const relayed = reply.text !== undefined && reply.status !== 503 ? new RawJson(reply.text) : reply.body;
        attempt = { kind: 'answered', reply: { status: reply.status, body: relayed as Reply['body'] } };
      } catch (error) {
        if (!(error instanceof PeerUnreachableError)) throw error;
        this.suspect(target, `forward ${method}: ${causeOf(error)}`);
        attempt = { kind: 'unreachable', maybeDelivered: error.maybeDelivered };
      }
      const next = afterForwardAttempt(method, shard, attempt);
      if (next.kind === 'reply') return json(next.reply.status, next.reply.body);
      lacking = next.lacking ?? lacking;
    }
    const reply = noMemberServed(shard, lacking);
    return json(reply.status, reply.body);
  }

  /** GET /shard/key-count/<id>: counted here when this node is a replica of the shard, else asked of a member. */
  async keyCount(shard: ShardId): Promise<HttpReply> {
    const core = this.ctx.core;
    const members = membersOf(core.map, shard);
    if (!members) return json(404, { error: `Shard ${shard} does not exist` });
    const replica = core.replica;
    if (replica !== null && replica.shard === shard) return json(200, { 'shard-key-count': replica.liveKeyCount() });
    for (const target of core.forwardTargets(shard)) {
      try {
        const reply = await this.ctx.peers.call(target, 'GET', `/internal/key-count/${encodeURIComponent(shard)}`, undefined, {
          timeoutMs: CONTROL_TIMEOUT_MS,
        });
        if (reply.status === 200) return json(200, reply.body);
      } catch (error) {
        if (!(error instanceof PeerUnreachableError)) throw error;
        this.suspect(target, `key count: ${causeOf(error)}`);
      }
    }
    return json(503, { error: `No member of shard ${shard} is reachable` });
  }
}
