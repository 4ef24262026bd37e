import type { PingInfo } from './contract.ts';
import type { Clock, Epoch, NodeAddress, ShardId } from './types.ts';
import { counterOf } from './vector-clock.ts';

/**
 * What this node last heard from each peer's ping: its epoch, shard and applied clock. The core
 * decides from it when to pull from a peer, which peer has what a waiting request lacks, and
 * whether every member of the shard reflects a tombstone.
 */
export class PeerKnowledge {
  private readonly last = new Map<NodeAddress, PingInfo>();

  /** A member answered a probe with `info`; returns what it answered the time before. */
  heard(peer: NodeAddress, info: PingInfo): PingInfo | undefined {
    const previous = this.last.get(peer);
    this.last.set(peer, info);
    return previous;
  }

  forget(peer: NodeAddress): void {
    this.last.delete(peer);
  }

  /** A new epoch: what peers said of the old one no longer counts. */
  clear(): void {
    this.last.clear();
  }

  /** The applied clocks of the peers whose last ping was of replica `shard` at `epoch`. */
  appliedAt(epoch: Epoch, shard: ShardId): Map<NodeAddress, Clock> {
    const out = new Map<NodeAddress, Clock>();
    for (const [node, info] of this.last) if (info.epoch === epoch && info.shard === shard) out.set(node, info.applied);
    return out;
  }

  /** Whether `peer`'s last ping said its replica is stale. */
  saidStale(peer: NodeAddress): boolean {
    return this.last.get(peer)?.stale === true;
  }

  /** Whether some peer's last ping names `node`: in its view, or with writes of its in its applied clock. */
  mentions(node: NodeAddress): boolean {
    for (const info of this.last.values()) {
      if (Array.isArray(info.view) && info.view.includes(node)) return true;
      if (counterOf(info.applied, node) > 0) return true;
    }
    return false;
  }

  /** The first peer (in the order first heard) that `usable` accepts and that has some write of `lacking`. */
  aheadFor(lacking: Clock, usable: (peer: NodeAddress) => boolean): NodeAddress | null {
    const needed = Object.entries(lacking);
    if (needed.length === 0) return null;
    for (const [peer, info] of this.last) {
      if (!usable(peer)) continue;
      if (needed.some(([node, counter]) => counterOf(info.applied, node) >= counter)) return peer;
    }
    return null;
  }
}
