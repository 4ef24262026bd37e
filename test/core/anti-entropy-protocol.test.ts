// The anti-entropy protocol (src/core/anti-entropy.ts): the answer names the differing partitions
// only; each side pushes its own versions of them that the peer is not known to hold, in bounded
// batches; a version pushed to a peer, or pushed by it, is not pushed to it again. Rounds are run
// here as the runtime runs them (src/node/sync.ts), both ways and interleaved, through JSON.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { digestAnswer, HELD_FOR_MS, PeerHoldings, pushedBytes, repairPlan, type HeldBy } from '../../src/core/anti-entropy.ts';
import { NodeCore } from '../../src/core/node-core.ts';
import { Replica } from '../../src/core/replica.ts';
import { asEpoch, initialShardMap, partitionOfKey, shardIdFor } from '../../src/core/shard-map.ts';
import type { NodeAddress, Version } from '../../src/core/types.ts';
import { nodeAddress } from '../../src/core/address.ts';
import { drive } from '../helpers/core-driver.ts';

const SHARD = shardIdFor(0);
const EPOCH = asEpoch(0);
const A = nodeAddress('10.10.0.2:8090');
const B = nodeAddress('10.10.0.3:8090');
const NOTHING: HeldBy = { has: () => false };

function replica(self: NodeAddress): Replica {
  return new Replica({ self, shard: SHARD, pendingMax: 1000 });
}

function wire<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

function storeOf(r: Replica): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of r.allVersions()) out[v.key] = JSON.stringify([v.deleted, v.value, v.stamp]);
  return out;
}

/** A version of `key` that no clock accounts for (as the repair bench injects them). */
function loose(key: string, lamport: number, node: NodeAddress, value: unknown = key): Version {
  return { key, deleted: false, dot: null, stamp: { lamport, node }, deps: {}, value };
}

/** Keys spread over `partitions` distinct partitions, `perPartition` keys each. */
function keysOver(partitions: number, perPartition: number): string[] {
  const byPartition = new Map<number, string[]>();
  for (let i = 0; byPartition.size < partitions || [...byPartition.values()].some((k) => k.length < perPartition); i++) {
    const key = `k${i}`;
    const p = partitionOfKey(key);
    const list = byPartition.get(p) ?? [];
    if (list.length === 0 && byPartition.size >= partitions) continue;
    if (list.length < perPartition) list.push(key);
    byPartition.set(p, list);
  }
  return [...byPartition.values()].flat();
}

test('the digest answer names the partitions that differ, and carries no versions', () => {
  const a = replica(A);
  const b = replica(B);
  for (const key of ['x', 'y', 'z']) a.repair([loose(key, 1, A)]);
  const differing = digestAnswer(b, a.digests()).differing;
  assert.deepEqual(differing, [...new Set(['x', 'y', 'z'].map(partitionOfKey))].sort((p, q) => p - q));
  assert.deepEqual(digestAnswer(a, a.digests()).differing, []);
  // Through the core's step: no versions, whatever differs.
  const view = [A, B];
  const core = new NodeCore({ self: B, pendingMax: 1000, failuresToRemove: 3, holdDownMs: 3000 }, view, wire(initialShardMap(view, null)));
  drive(core).ready();
  const out = drive(core).step({ kind: 'digest-request', epoch: core.map.epoch, shard: SHARD, digests: a.digests() });
  assert.ok(out.ok);
  assert.deepEqual(out.versions, []);
  assert.equal(out.more, false);
  assert.ok(out.differing.length > 0);
});

test('a plan pushes what the peer is not known to hold, in batches of whole partitions within the bound', () => {
  const a = replica(A);
  const keys = keysOver(6, 4);
  for (const key of keys) a.repair([loose(key, 1, A, 'v'.repeat(50))]);
  const differing = digestAnswer(replica(B), a.digests()).differing;
  assert.equal(differing.length, 6);
  // Everything, in one batch, when the bound allows.
  const all = repairPlan(a, differing, NOTHING, 0, 64);
  assert.equal(all.batches.length, 1);
  assert.equal(all.batches[0]?.versions.length, keys.length);
  assert.deepEqual(all.batches[0]?.partitions, differing);
  assert.equal(all.more, false);
  assert.equal(all.next, 0);
  // A bound of about two partitions: batches of whole partitions, none above the bound (each
  // partition alone fits), every version once.
  const partitionBytes = Math.max(...differing.map((p) => keys.filter((k) => partitionOfKey(k) === p).reduce((s, k) => s + pushedBytes(a.get(k) as Version), 0)));
  const bytesMax = partitionBytes * 2;
  const small = repairPlan(a, differing, NOTHING, 0, 64, bytesMax);
  assert.ok(small.batches.length >= 3);
  const pushed = small.batches.flatMap((b) => b.versions.map((v) => v.key));
  assert.deepEqual(pushed.toSorted(), keys.toSorted());
  for (const batch of small.batches) {
    assert.ok(batch.versions.reduce((s, v) => s + pushedBytes(v), 0) <= bytesMax);
    assert.deepEqual(new Set(batch.versions.map((v) => partitionOfKey(v.key))), new Set(batch.partitions));
  }
  // At most `exchangesMax` batches; the rest is left, and the next plan starts after the last taken.
  const cut = repairPlan(a, differing, NOTHING, 0, 1, bytesMax);
  assert.equal(cut.batches.length, 1);
  assert.equal(cut.more, true);
  const last = cut.batches[0]?.partitions.at(-1) as number;
  assert.equal(cut.next, last + 1);
  const rest = repairPlan(a, differing, NOTHING, cut.next, 64, bytesMax);
  assert.equal(rest.batches[0]?.partitions[0], differing.find((p) => p > last));
  // A partition whose every version the peer holds is passed over.
  const p0 = differing[0] as number;
  const held: HeldBy = { has: (v) => partitionOfKey(v.key) === p0 };
  const plan = repairPlan(a, differing, held, 0, 64);
  assert.ok(!plan.batches.some((b) => b.partitions.includes(p0)));
  assert.equal(plan.batches.flatMap((b) => b.versions).length, keys.filter((k) => partitionOfKey(k) !== p0).length);
  // Nothing to push: no batch.
  assert.deepEqual(repairPlan(a, differing, { has: () => true }, 0, 64).batches, []);
});

test('a peer holds what it pushed or took, or better, for its incarnation and epoch, for a while', () => {
  const holdings = new PeerHoldings();
  const v1 = loose('k', 1, A);
  const v2 = loose('k', 2, A);
  holdings.learn(B, EPOCH, 'i1', [v1], 0);
  assert.equal(holdings.of(B, EPOCH, 'i1', 0).has(v1), true);
  // A newer version of the key is not held; an older one is (the peer holds better).
  assert.equal(holdings.of(B, EPOCH, 'i1', 0).has(v2), false);
  holdings.learn(B, EPOCH, 'i1', [v2], 1);
  assert.equal(holdings.of(B, EPOCH, 'i1', 1).has(v1), true);
  assert.equal(holdings.of(B, EPOCH, 'i1', 1).has(v2), true);
  // Learning an older version does not lower what it holds.
  holdings.learn(B, EPOCH, 'i1', [v1], 2);
  assert.equal(holdings.of(B, EPOCH, 'i1', 2).has(v2), true);
  // Another peer, a restart (new incarnation), another epoch: nothing known.
  assert.equal(holdings.of(A, EPOCH, 'i1', 2).has(v1), false);
  assert.equal(holdings.of(B, EPOCH, 'i2', 2).has(v1), false);
  assert.equal(holdings.of(B, asEpoch(1), 'i1', 2).has(v1), false);
  // Forgotten HELD_FOR_MS after it was first learned.
  assert.equal(holdings.of(B, EPOCH, 'i1', HELD_FOR_MS - 1).has(v1), true);
  assert.equal(holdings.of(B, EPOCH, 'i1', HELD_FOR_MS).has(v1), false);
  // Learning for a new incarnation starts over.
  holdings.learn(B, EPOCH, 'i2', [loose('other', 1, A)], 3);
  assert.equal(holdings.size(B), 1);
  assert.equal(holdings.of(B, EPOCH, 'i2', 3).has(v1), false);
});

test('through the core: versions a peer pushed are not pushed back to it, and what it took is not pushed twice', () => {
  const view = [A, B];
  const map = initialShardMap(view, null);
  const core = new NodeCore({ self: A, pendingMax: 1000, failuresToRemove: 3, holdDownMs: 3000 }, view, wire(map));
  drive(core).ready();
  const epoch = core.map.epoch;
  const fromB = ['b1', 'b2', 'b3'].map((k) => loose(k, 5, B));
  assert.equal(drive(core).step({ kind: 'repair', epoch, shard: SHARD, versions: wire(fromB), from: B }), 3);
  const ours = loose('a1', 5, A);
  drive(core).step({ kind: 'repair', epoch, shard: SHARD, versions: wire([ours]) });
  const everything = Array.from({ length: 1024 }, (_, p) => p);
  const plan = core.repairPlan(epoch, SHARD, B, everything, { cursor: 0, exchangesMax: 64, nowMs: 0 });
  assert.deepEqual(plan?.batches.flatMap((b) => b.versions.map((v) => v.key)), ['a1']);
  // To another peer, everything.
  const other = core.repairPlan(epoch, SHARD, nodeAddress('10.10.0.9:8090'), everything, { cursor: 0, exchangesMax: 64, nowMs: 0 });
  assert.equal(other?.batches.flatMap((b) => b.versions).length, 4);
  // B took a1: nothing left to push it.
  drive(core).step({ kind: 'repair-pushed', epoch, shard: SHARD, peer: B, versions: plan?.batches.flatMap((b) => b.versions) ?? [] });
  assert.deepEqual(core.repairPlan(epoch, SHARD, B, everything, { cursor: 0, exchangesMax: 64, nowMs: 0 })?.batches, []);
  // A newer write of a key B holds is pushed again.
  drive(core).step({ kind: 'repair', epoch, shard: SHARD, versions: wire([loose('b1', 9, A, 'newer')]) });
  assert.deepEqual(core.repairPlan(epoch, SHARD, B, everything, { cursor: 0, exchangesMax: 64, nowMs: 0 })?.batches.flatMap((b) => b.versions.map((v) => v.key)), ['b1']);
  // Another epoch or shard: no plan.
  assert.equal(core.repairPlan(asEpoch(7), SHARD, B, everything, { cursor: 0, exchangesMax: 64, nowMs: 0 }), null);
});

/** One side of a shard as the runtime runs it: its replica and what it knows its peer holds. */
interface Side {
  self: NodeAddress;
  replica: Replica;
  holdings: PeerHoldings;
}

/**
 * One round of `x` with `y`, as sync.ts runs it: digests, the answer, the plan, the push (through
 * JSON), what the peer took; again while something was pushed. Counts each version pushed.
 */
function round(x: Side, y: Side, pushes: Map<string, number>, exchangesMax = 64, bytesMax?: number): number {
  let exchanges = 0;
  while (exchanges < exchangesMax) {
    const differing = digestAnswer(y.replica, x.replica.digests()).differing;
    if (differing.length === 0) break;
    const plan = repairPlan(x.replica, differing, x.holdings.of(y.self, EPOCH, null, 0), 0, exchangesMax - exchanges, bytesMax);
    if (plan.batches.length === 0) break;
    exchanges += plan.batches.length;
    const versions = plan.batches.flatMap((b) => b.versions);
    for (const v of versions) {
      const id = `${x.self}>${y.self}:${v.key}@${v.stamp.lamport}/${v.stamp.node}/${v.deleted}`;
      pushes.set(id, (pushes.get(id) ?? 0) + 1);
    }
    const received = wire(versions);
    y.replica.repair(received);
    y.holdings.learn(x.self, EPOCH, null, received, 0);
    x.holdings.learn(y.self, EPOCH, null, versions, 0);
  }
  return exchanges;
}

test('rounds both ways converge the replicas, and no version crosses twice in one direction', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ key: fc.integer({ min: 0, max: 40 }), at: fc.constantFrom(A, B), lamport: fc.integer({ min: 1, max: 5 }), del: fc.boolean() }), {
        minLength: 1,
        maxLength: 80,
      }),
      fc.array(fc.boolean(), { minLength: 6, maxLength: 6 }),
      fc.integer({ min: 200, max: 5000 }),
      (ops, order, bytesMax) => {
        const a: Side = { self: A, replica: replica(A), holdings: new PeerHoldings() };
        const b: Side = { self: B, replica: replica(B), holdings: new PeerHoldings() };
        for (const op of ops) {
          const side = op.at === A ? a : b;
          const version: Version = op.del
            ? { key: `k${op.key}`, deleted: true, dot: null, stamp: { lamport: op.lamport, node: op.at }, deps: {} }
            : loose(`k${op.key}`, op.lamport, op.at, op.lamport);
          side.replica.repair([version]);
        }
        const pushes = new Map<string, number>();
        // Rounds in any order, as the two timers fire; a small bound makes them take many exchanges.
        for (const aFirst of order) {
          if (aFirst) round(a, b, pushes, 64, bytesMax);
          else round(b, a, pushes, 64, bytesMax);
        }
        round(a, b, pushes, 64, bytesMax);
        round(b, a, pushes, 64, bytesMax);
        assert.deepEqual(storeOf(a.replica), storeOf(b.replica));
        assert.deepEqual(a.replica.digests(), b.replica.digests());
        for (const [id, count] of pushes) assert.equal(count, 1, `${id} pushed ${count} times`);
        // No version went back to the replica it came from.
        for (const id of pushes.keys()) {
          const [dir, what] = id.split(':') as [string, string];
          const back = `${dir.split('>').reverse().join('>')}:${what}`;
          assert.ok(!pushes.has(back), `${what} crossed both ways`);
        }
      },
    ),
    { numRuns: 200 },
  );
});

test('one round repairs a large difference in one go, within its exchanges', () => {
  const a: Side = { self: A, replica: replica(A), holdings: new PeerHoldings() };
  const b: Side = { self: B, replica: replica(B), holdings: new PeerHoldings() };
  for (let i = 0; i < 3000; i++) a.replica.repair([loose(`key-${i}`, 1, A, 'x'.repeat(100))]);
  const pushes = new Map<string, number>();
  // B's round first: it has nothing to push, and pushes nothing.
  assert.equal(round(b, a, pushes), 0);
  // A's round, with a bound of ~40 KB an exchange: many exchanges, one round.
  const exchanges = round(a, b, pushes, 64, 40_000);
  assert.ok(exchanges > 5 && exchanges < 64, `${exchanges} exchanges`);
  assert.deepEqual(storeOf(b.replica), storeOf(a.replica));
  assert.equal(pushes.size, 3000);
  // B's next round sends nothing back.
  assert.equal(round(b, a, pushes), 0);
  assert.equal(pushes.size, 3000);
});
