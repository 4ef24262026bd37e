// The shard map: adopting a newer one (from a peer's push, a peer whose ping shows another digest,
// discovery at start), and pushing ours to the others after a change made here.

import type { MapChange, Orphaned } from '../core/node-core.ts';
import type { NodeAddress, ShardMap } from '../core/types.ts';
import type { NodeContext } from './context.ts';
import { CONTROL_TIMEOUT_MS } from './limits.ts';
import { isShardMap } from './wire.ts';

/** What adopting a map asks of the other concerns. */
export interface MapsDeps {
  /** Hand what this node held before a reshard it missed to the keys' new owners. */
  sendLate(orphaned: Orphaned): Promise<void>;
  /** Copy this node's (new) shard from a shard peer. */
  fullSync(reason: string): Promise<void>;
}

/** Where a map came from (for the log) and whether to copy a shard this node joined at once. */
export interface AdoptOptions {
  source: string;
  syncNow: boolean;
  /** Heard by discovery at start (see the `map` input). */
  atStart?: boolean;
}

export class Maps {
  private readonly ctx: NodeContext;
  private readonly deps: MapsDeps;
  /** Late transfers still trying to reach the new owners (in /status: the store is not settled while any runs). */
  private running = 0;

  constructor(ctx: NodeContext, deps: MapsDeps) {
    this.ctx = ctx;
    this.deps = deps;
  }

  /** Late transfers still running. */
  get lateTransfers(): number {
    return this.running;
  }

  async fetchMap(peer: NodeAddress): Promise<void> {
    try {
      const reply = await this.ctx.peers.call(peer, 'GET', '/internal/state', undefined, { timeoutMs: CONTROL_TIMEOUT_MS, lane: 'control' });
      const map = (reply.body as { map?: unknown } | undefined)?.map;
      if (reply.status === 200 && isShardMap(map)) this.adoptMap(map, { source: `map of ${peer}`, syncNow: true });
    } catch {
      // The next ping tries again.
    }
  }

  /**
   * Takes a peer's map (merged with ours). `syncNow`: copy a shard this node must now copy at once
   * (discovery at start leaves that to the start-up itself).
   */
  adoptMap(map: ShardMap, options: AdoptOptions): void {
    const core = this.ctx.core;
    const before = core.map;
    this.carryOut(this.ctx.step({ kind: 'map', map, atStart: options.atStart === true }), before, options);
  }

  /** What a change of map asks of the runtime (the step staged it for the disk): log it, hand over what was orphaned, copy the new shard. */
  carryOut(change: MapChange, before: ShardMap, { source, syncNow }: AdoptOptions): void {
    if (!change.changed) return;
    const core = this.ctx.core;
    this.ctx.log.info(
      { source, epoch: core.map.epoch, previousEpoch: before.epoch, shard: core.shard, fullSync: change.needsFullSync },
      'shard map updated',
    );
    const orphaned = change.orphaned;
    if (orphaned !== null) {
      this.running++;
      this.ctx.background.run('late transfer', () =>
        this.deps.sendLate(orphaned).finally(() => {
          this.running--;
        }),
      );
    }
    if (change.needsFullSync && syncNow) this.ctx.background.run('full sync', () => this.deps.fullSync(source));
  }

  async pushMap(targets: NodeAddress[]): Promise<void> {
    const map = this.ctx.core.map;
    await Promise.allSettled(
      [...new Set(targets)]
        .filter((peer) => peer !== this.ctx.config.address)
        .map((peer) => this.ctx.peers.call(peer, 'POST', '/internal/map', { map }, { timeoutMs: CONTROL_TIMEOUT_MS, lane: 'control' })),
    );
  }
}
