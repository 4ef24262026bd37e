// A node that starts joins the store: it takes the shard map the other nodes hold, then announces
// itself to them.

import { isNodeAddress } from '../core/address.ts';
import type { ShardMap } from '../core/types.ts';
import type { NodeContext } from './context.ts';
import type { Maps } from './maps.ts';
import { sleep } from './env.ts';
import { ANNOUNCE_TIMEOUT_MS, DISCOVERY_POLL_MS, DISCOVERY_TIMEOUT_MS } from './limits.ts';
import { isShardMap } from './wire.ts';

/** Ask the nodes of VIEW for the shard map they hold; a node that joins or restarts takes theirs. */
export async function discover(ctx: NodeContext, maps: Pick<Maps, 'adoptMap'>): Promise<void> {
  const { config, core, timers, log } = ctx;
  const others = config.view.filter((n) => n !== config.address);
  if (others.length === 0) return;
  const deadline = timers.now() + config.startupWaitMs;
  while (!ctx.isClosed()) {
    const answers = await Promise.allSettled(
      others.map((peer) => ctx.peers.call(peer, 'GET', '/internal/state', undefined, { timeoutMs: DISCOVERY_TIMEOUT_MS, lane: 'control' })),
    );
    let heard = 0;
    for (const [i, answer] of answers.entries()) {
      if (answer.status !== 'fulfilled' || answer.value.status !== 200) continue;
      const { map, view } = answer.value.body as { map?: unknown; view?: unknown };
      if (!isShardMap(map)) continue;
      heard++;
      maps.adoptMap(map, { source: 'discovery', syncNow: false, atStart: true });
      // Nodes that joined after this node's VIEW was written (it restarts with the VIEW it had).
      for (const node of Array.isArray(view) ? view : []) {
        if (!isNodeAddress(node) || node === config.address || core.isMember(node)) continue;
        ctx.step({ kind: 'view-put', node });
        log.info({ peer: node, from: others[i] }, 'node learned from a peer added to view');
      }
    }
    if (heard > 0 || timers.now() >= deadline) {
      log.info({ peersAnswered: heard, epoch: core.map.epoch, shard: core.shard }, 'discovered shard map');
      return;
    }
    await sleep(timers, DISCOVERY_POLL_MS);
  }
}

/**
 * PUT /view to every node of VIEW, as the spec has a starting node do, and to every node discovery
 * found in its peers' views: a node that joined after this node's VIEW was written, and that found
 * it down, takes it back now instead of after a hold-down of probes.
 */
export async function announce(ctx: NodeContext, gate: { adminHeaders(): Record<string, string> }): Promise<void> {
  const { config } = ctx;
  const others = [...new Set([...config.view, ...ctx.core.view()])].filter((n) => n !== config.address);
  await Promise.allSettled(
    others.map((peer) =>
      ctx.peers.call(peer, 'PUT', '/view', { 'socket-address': config.address }, { timeoutMs: ANNOUNCE_TIMEOUT_MS, lane: 'control', headers: gate.adminHeaders() }),
    ),
  );
}
