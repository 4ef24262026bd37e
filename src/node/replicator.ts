import type { Epoch, NodeAddress, ShardId, Version } from '../core/types.ts';
import type { Logger } from './logger.ts';
import { PeerUnreachableError, type PeerClient } from './peer-client.ts';

export interface ReplicatorOptions {
  self: NodeAddress;
  batchMax: number;
  /** Approximate JSON bytes per batch; a batch always carries at least one version. */
  batchBytesMax: number;
  queueMax: number;
  timeoutMs: number;
}

interface Item {
  epoch: Epoch;
  shard: ShardId;
  version: Version;
  bytes: number;
}

interface PeerQueue {
  items: Item[];
  sending: boolean;
}

export interface ReplicatorStats {
  queued: number;
  sent: number;
  dropped: number;
}

/**
 * Pushes acknowledged writes to shard peers: one queue and at most one request in flight per peer,
 * so batches form by themselves under load. A full queue or a failed peer drops versions; nothing
 * is lost by that, because replicas compare clocks in pings and pull what they lack (sync).
 */
export class Replicator {
  private readonly options: ReplicatorOptions;
  private readonly peers: PeerClient;
  private readonly log: Logger;
  private readonly onUnreachable: (peer: NodeAddress) => void;
  private readonly queues = new Map<NodeAddress, PeerQueue>();
  private readonly stats = { sent: 0, dropped: 0 };

  constructor(options: ReplicatorOptions, peers: PeerClient, log: Logger, onUnreachable: (peer: NodeAddress) => void) {
    this.options = options;
    this.peers = peers;
    this.log = log;
    this.onUnreachable = onUnreachable;
  }

  enqueue(targets: NodeAddress[], epoch: Epoch, shard: ShardId, version: Version): void {
    const bytes = JSON.stringify(version).length;
    for (const peer of targets) {
      let queue = this.queues.get(peer);
      if (!queue) this.queues.set(peer, (queue = { items: [], sending: false }));
      if (queue.items.length >= this.options.queueMax) {
        this.stats.dropped++;
        continue;
      }
      queue.items.push({ epoch, shard, version, bytes });
      if (!queue.sending) void this.pump(peer, queue);
    }
  }

  /** A peer that left the view: what was queued for it will be pulled by sync when it is back. */
  forget(peer: NodeAddress): void {
    const queue = this.queues.get(peer);
    if (queue) {
      this.stats.dropped += queue.items.length;
      queue.items = [];
    }
  }

  snapshot(): ReplicatorStats {
    let queued = 0;
    for (const queue of this.queues.values()) queued += queue.items.length;
    return { queued, ...this.stats };
  }

  private async pump(peer: NodeAddress, queue: PeerQueue): Promise<void> {
    queue.sending = true;
    try {
      while (queue.items.length > 0) {
        const batch = this.takeBatch(queue);
        const first = batch[0] as Item;
        try {
          const reply = await this.peers.call(
            peer,
            'POST',
            '/internal/replicate',
            { from: this.options.self, epoch: first.epoch, shard: first.shard, versions: batch.map((i) => i.version) },
            { timeoutMs: this.options.timeoutMs },
          );
          if (reply.status === 200) this.stats.sent += batch.length;
          else {
            this.stats.dropped += batch.length;
            this.log.debug({ peer, status: reply.status, body: reply.body }, 'replication batch refused');
          }
        } catch (error) {
          if (!(error instanceof PeerUnreachableError)) throw error;
          this.stats.dropped += batch.length + queue.items.length;
          queue.items = [];
          this.onUnreachable(peer);
        }
      }
    } finally {
      queue.sending = false;
    }
  }

  /** The longest prefix of one epoch and shard within the batch bounds. */
  private takeBatch(queue: PeerQueue): Item[] {
    const first = queue.items[0] as Item;
    let count = 0;
    let bytes = 0;
    for (const item of queue.items) {
      if (item.epoch !== first.epoch || item.shard !== first.shard) break;
      if (count > 0 && (count >= this.options.batchMax || bytes + item.bytes > this.options.batchBytesMax)) break;
      count++;
      bytes += item.bytes;
    }
    return queue.items.splice(0, count);
  }
}
