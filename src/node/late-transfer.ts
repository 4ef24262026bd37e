import type { Orphaned } from '../core/node-core.ts';
import { shardOfNode } from '../core/shard-map.ts';
import type { NodeAddress, Version } from '../core/types.ts';
import type { NodeContext } from './context.ts';
import { sleep } from './env.ts';
import { LATE_TRANSFER_RETRY_MS, lateTransferWindowMs } from './limits.ts';
import { sendVersions } from './send-versions.ts';

/**
 * This node missed a reshard (cut off or down) and dropped its old replica: what it held, and may
 * have acknowledged while cut off, goes to the keys' new owners, merged there by version order.
 * Every member of the current map gets the last part with what the transfer reflects, so clients
 * that depend on these writes are served once they are there. A member that cannot take it yet
 * (down, in another epoch, or frozen for the next reshard) is tried again for a bounded time
 * (lateTransferWindowMs: longer than any freeze); if the store reshards meanwhile, the owners of the
 * newest map are the targets.
 */
export async function sendLate(ctx: NodeContext, orphaned: Orphaned): Promise<void> {
  const { core, log } = ctx;
  let epoch = core.map.epoch;
  let delivered = new Set<NodeAddress>();
  let remaining: [NodeAddress, Version[]][] = [];
  let sent = 0;
  const attempts = Math.ceil(lateTransferWindowMs(ctx.config) / LATE_TRANSFER_RETRY_MS);
  for (let attempt = 1; attempt <= attempts && !ctx.isClosed(); attempt++) {
    if (core.map.epoch !== epoch) {
      epoch = core.map.epoch;
      delivered = new Set();
    }
    const got = delivered;
    remaining = [...core.lateTransfers(orphaned)].filter(([peer]) => !got.has(peer));
    if (remaining.length === 0) {
      log.info({ epoch, versions: orphaned.versions.length, sent, attempts: attempt - 1 }, 'missed a reshard: sent what this node held to the new owners');
      return;
    }
    await Promise.all(
      remaining.map(async ([peer, versions]) => {
        const shard = shardOfNode(core.map, peer);
        if (shard === null) return got.add(peer);
        try {
          const result = await sendVersions(ctx.peers, peer, versions, {
            path: '/internal/repair',
            fields: { epoch, shard },
            lastFields: { reflected: orphaned.reflected },
            timeoutMs: ctx.config.requestTimeoutMs,
          });
          sent += result.sent;
          got.add(peer);
        } catch (error) {
          log.debug({ peer, attempt, err: error }, 'late transfer not taken yet; trying again');
        }
      }),
    );
    if (remaining.every(([peer]) => got.has(peer)) && core.map.epoch === epoch) continue;
    await sleep(ctx.timers, LATE_TRANSFER_RETRY_MS);
  }
  const missing = remaining.map(([peer]) => peer).filter((peer) => !delivered.has(peer));
  log.warn({ epoch, missing }, 'late transfer after a missed reshard not taken by every owner; the others repair them by anti-entropy');
}
