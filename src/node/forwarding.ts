// Requests for keys of another shard are relayed to a member of that shard, with failover, and so
// is a key count of another shard.

import { MESSAGES } from '../core/api-messages.ts';
import type { KvMethod } from '../core/node-core.ts';
import { membersOf } from '../core/shard-map.ts';
import type { NodeAddress, ShardId } from '../core/types.ts';
import type { NodeContext } from './context.ts';
import { DEADLINE_HEADER, HOPS_HEADER } from './headers.ts';
import type { HttpReply } from './http-server.ts';
import { CONTROL_TIMEOUT_MS, FORWARD_HOPS_MAX } from './limits.ts';
import { PeerUnreachableError } from './peer-client.ts';
import { json } from './replies.ts';

/** The 503 of a replica lacking a request's causal dependencies (it applied nothing). */
function isCausalRefusal(body: unknown): boolean {
  return typeof body === 'object' && body !== null && (body as Record<string, unknown>).error === MESSAGES.causalUnavailable;
}

export class Forwarding {
  private readonly ctx: NodeContext;
  /** A request to a member failed (it may be down). */
  private readonly suspect: (peer: NodeAddress) => void;

  constructor(ctx: NodeContext, suspect: (peer: NodeAddress) => void) {
    this.ctx = ctx;
    this.suspect = suspect;
  }

  /**
   * Relay to a member of the key's shard; status and body come back unchanged. A read fails over
   * to the next member on any error. Any request fails over from a member that answers it lacks
   * the client's causal dependencies (it applied nothing). A write fails over only then, or when it provably never left (no
   * connection): after a timeout the first member may still apply it, and applying it at two
   * members would make it two writes, the late one overwriting whatever the client wrote since.
   * Such a write gets 503 (its outcome is unknown) and carries a deadline past which it is refused.
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
    let lacking: HttpReply | null = null;
    for (const target of targets) {
      // A read may take its full time at each member; a write's attempts share its deadline.
      const timeoutMs = method === 'GET' && deadlineMs === null ? config.requestTimeoutMs : Math.max(1, deadline - timers.now());
      try {
        const reply = await this.ctx.peers.call(target, method, path, body, {
          headers: { [HOPS_HEADER]: String(hops + 1), [DEADLINE_HEADER]: String(deadline) },
          timeoutMs,
        });
        // A member that lacks what the client depends on (cut off a moment ago, say) applied
        // nothing: another member may have it, so the request is tried there.
        if (reply.status === 503 && isCausalRefusal(reply.body)) {
          lacking = json(reply.status, reply.body);
          continue;
        }
        return json(reply.status, reply.body);
      } catch (error) {
        if (!(error instanceof PeerUnreachableError)) throw error;
        this.suspect(target);
        if (method !== 'GET' && error.maybeDelivered) {
          return json(503, { error: `A member of shard ${shard} did not answer in time; the write may or may not have been applied` });
        }
      }
    }
    return lacking ?? json(503, { error: `No member of shard ${shard} is reachable` });
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
        this.suspect(target);
      }
    }
    return json(503, { error: `No member of shard ${shard} is reachable` });
  }
}
