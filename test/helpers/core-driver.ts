// Drives a NodeCore through its one entry (step) with one call per input, named as the inputs
// are, for core tests that walk a protocol by hand. Every call is a step: what it stages for the
// disk and the parked requests it releases are kept (`last`) for the test to look at.

import assert from 'node:assert/strict';
import type { Input, KvDecision, KvMethod, KvRequest, NodeCore, Outputs, PingInfo, SavedReplica, Step } from '../../src/core/node-core.ts';
import type { Holdings, TransferClaim } from '../../src/core/reshard-participant.ts';
import type { Clock, Epoch, EpochClocks, NodeAddress, ShardId, ShardMap, Version } from '../../src/core/types.ts';

export class CoreDriver {
  readonly core: NodeCore;
  /** The time given to steps that take none. */
  nowMs = 0;
  /** The last step. */
  last: Step<unknown> | null = null;

  constructor(core: NodeCore) {
    this.core = core;
  }

  step<I extends Input>(input: I, nowMs = this.nowMs): Outputs[I['kind']] {
    const step = this.core.step(input, nowMs);
    this.last = step;
    return step.out;
  }

  /**
   * A client's request decided now, without leaving it parked: a request that would wait is
   * parked by the step and taken back at once (its deadline), and its wait returned.
   */
  kv(method: KvMethod, key: string, body: unknown, nowMs = this.nowMs): KvDecision {
    const parsed = this.core.parseKv(method, key, body);
    if (!parsed.ok) return { kind: 'reply', reply: parsed.reply };
    return this.decide(parsed.request, nowMs);
  }

  decide(request: KvRequest, nowMs = this.nowMs): KvDecision {
    const out = this.step({ kind: 'kv', request }, nowMs);
    if (out.kind !== 'parked') return out;
    const expired = this.core.step({ kind: 'expire', ticket: out.ticket }, out.deadlineMs).out;
    assert.equal(expired?.kind, 'expired');
    return out.wait;
  }

  ready(): void {
    this.step({ kind: 'ready' });
  }

  putView(node: NodeAddress): Outputs['view-put'] {
    return this.step({ kind: 'view-put', node });
  }

  deleteView(node: NodeAddress, reason: 'down' | 'request'): Outputs['view-delete'] {
    return this.step({ kind: 'view-delete', node, reason });
  }

  addMember(shard: ShardId, node: NodeAddress): Outputs['add-member'] {
    return this.step({ kind: 'add-member', shard, node });
  }

  onReplicate(epoch: Epoch, shard: ShardId, versions: Version[]): Outputs['replicate'] {
    return this.step({ kind: 'replicate', epoch, shard, versions });
  }

  onSyncRequest(epoch: Epoch, shard: ShardId, since: Clock, full: boolean, base?: EpochClocks): Outputs['sync-request'] {
    return this.step(base === undefined ? { kind: 'sync-request', epoch, shard, since, full } : { kind: 'sync-request', epoch, shard, since, full, base });
  }

  onSyncResponse(epoch: Epoch, shard: ShardId, versions: Version[], applied: Clock, base?: EpochClocks, lamport = 0): boolean {
    return (
      this.step(
        base === undefined ? { kind: 'sync-response', epoch, shard, versions, applied, lamport } : { kind: 'sync-response', epoch, shard, versions, applied, base, lamport },
      ) === 'merged'
    );
  }

  onRepair(epoch: Epoch, shard: ShardId, versions: Version[], reflected?: EpochClocks): number | null {
    return this.step(reflected === undefined ? { kind: 'repair', epoch, shard, versions } : { kind: 'repair', epoch, shard, versions, reflected });
  }

  collectTombstones(peerApplied?: ReadonlyMap<NodeAddress, Clock>): number {
    return this.step(peerApplied === undefined ? { kind: 'collect-tombstones' } : { kind: 'collect-tombstones', peerApplied });
  }

  onPingAnswer(peer: NodeAddress, info: PingInfo, nowMs: number, linkUp: boolean): Outputs['ping-answer'] {
    return this.step({ kind: 'ping-answer', peer, info, linkUp }, nowMs);
  }

  adoptMap(map: ShardMap): Outputs['map'] {
    return this.step({ kind: 'map', map });
  }

  prepareReshard(map: ShardMap, coordinator: NodeAddress, nowMs = this.nowMs): Outputs['reshard-prepare'] {
    return this.step({ kind: 'reshard-prepare', map, coordinator }, nowMs);
  }

  reshardTransfers(epoch: Epoch, targets: ReadonlySet<NodeAddress>, nowMs = this.nowMs, holdings?: Holdings): Outputs['reshard-transfers'] {
    return this.step({ kind: 'reshard-transfers', epoch, targets, ...(holdings ? { holdings } : {}) }, nowMs);
  }

  markSent(epoch: Epoch): void {
    this.step({ kind: 'reshard-sent', epoch });
  }

  acceptTransfer(epoch: Epoch, versions: Version[], claim?: TransferClaim): boolean {
    return this.step(claim === undefined ? { kind: 'reshard-transfer', epoch, versions } : { kind: 'reshard-transfer', epoch, versions, claim });
  }

  commitReshard(epoch: Epoch): Outputs['reshard-commit'] {
    return this.step({ kind: 'reshard-commit', epoch });
  }

  abortReshard(epoch: Epoch): void {
    this.step({ kind: 'reshard-abort', epoch });
  }

  restoreReplica(saved: SavedReplica): boolean {
    return this.step({ kind: 'restore', map: null, replica: saved });
  }
}

/** The driver of `core` (one per core, so `last` is the core's last step). */
export function drive(core: NodeCore): CoreDriver {
  let driver = drivers.get(core);
  if (driver === undefined) {
    driver = new CoreDriver(core);
    drivers.set(core, driver);
  }
  return driver;
}

const drivers = new WeakMap<NodeCore, CoreDriver>();
