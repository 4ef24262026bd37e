// One shard replica: causal delivery of peers' writes in any order with duplicates, the pending
// bound, state exchange (versionsSince + mergeState) and last-writer-wins convergence.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { asBase, Replica } from '../../src/core/replica.ts';
import { compareStamps } from '../../src/core/version-order.ts';
import { clockCovers, mergeClocks } from '../../src/core/vector-clock.ts';
import type { Clock, NodeAddress, Version } from '../../src/core/types.ts';
import { nodeAddress } from '../../src/core/address.ts';
import { shardIdFor } from '../../src/core/shard-map.ts';

const SHARD = shardIdFor(0);
const ORIGINS: NodeAddress[] = [nodeAddress('10.10.0.2:8090'), nodeAddress('10.10.0.3:8090'), nodeAddress('10.10.0.10:8090')];
const FRESH = nodeAddress('10.10.0.99:8090');
const KEYS = ['a', 'b', 'c', 'd'];
const MAX_STEPS = 40;

// ------------------------------------------------------------------ a random causal history

type Step =
  | { kind: 'write'; origin: number; key: number; del: boolean; forget: number }
  | { kind: 'sync'; to: number; from: number; share: number };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('write' as const),
      origin: fc.integer({ min: 0, max: ORIGINS.length - 1 }),
      key: fc.integer({ min: 0, max: KEYS.length - 1 }),
      del: fc.boolean(),
      // 0: deps = the origin's whole applied clock; k > 0: a client that saw k fewer writes per origin.
      forget: fc.constantFrom(0, 0, 0, 1, 2),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('sync' as const),
      to: fc.integer({ min: 0, max: ORIGINS.length - 1 }),
      from: fc.integer({ min: 0, max: ORIGINS.length - 1 }),
      // Which share of what `from` has applied reaches `to` (a causally closed prefix).
      share: fc.integer({ min: 0, max: 4 }),
    }),
  },
);

interface Written {
  version: Version;
  /** What the origin had applied when it wrote (its own earlier writes included). */
  seen: Clock;
}

interface History {
  /** Every write in creation order: a causal order. */
  log: Written[];
  origins: Replica[];
}

function dotClock(version: Version): Clock {
  const dot = version.dot as { node: NodeAddress; counter: number };
  return { [dot.node]: dot.counter };
}

function buildHistory(steps: Step[]): History {
  const origins = ORIGINS.map((self) => new Replica({ self, shard: SHARD, pendingMax: 10_000 }));
  const log: Written[] = [];
  let serial = 0;
  for (const step of steps) {
    if (step.kind === 'write') {
      const origin = origins[step.origin] as Replica;
      const seen = { ...origin.applied };
      const client: Clock = {};
      for (const [node, counter] of Object.entries(seen)) if (counter - step.forget >= 1) client[node] = counter - step.forget;
      // Metadata names other shards too; a replica of s0 must ignore them.
      const deps = { [SHARD]: client, s1: { '10.10.9.9:8090': 7 } };
      const key = KEYS[step.key] as string;
      const version = step.del
        ? origin.write(key, { deleted: true }, deps)
        : origin.write(key, { deleted: false, value: { n: serial++, by: origin.self } }, deps);
      log.push({ version, seen });
    } else if (step.to !== step.from) {
      const to = origins[step.to] as Replica;
      const from = origins[step.from] as Replica;
      const known = log.filter((w) => from.covers(dotClock(w.version)));
      // A prefix of a causal order of a causally closed set is causally closed.
      to.deliver(known.slice(0, Math.ceil((known.length * step.share) / 4)).map((w) => w.version));
    }
  }
  return { log, origins };
}

/** Steps, not replicas: a property builds its history itself, so nothing it mutates is reused by shrinking. */
const stepsArb = fc.array(stepArb, { minLength: 1, maxLength: MAX_STEPS, size: 'max' });

/** A delivery schedule: a permutation of the log with duplicates, cut into batches. */
const scheduleArb = fc.record({
  priorities: fc.array(fc.integer({ min: 0, max: 1_000_000 }), { minLength: MAX_STEPS, maxLength: MAX_STEPS }),
  duplicates: fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 15, size: 'max' }),
  batches: fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 8 }),
});

function schedule(log: Written[], s: { priorities: number[]; duplicates: [number, number][]; batches: number[] }): Version[][] {
  if (log.length === 0) return [];
  const order = log.map((_, i) => i).sort((a, b) => (s.priorities[a] ?? 0) - (s.priorities[b] ?? 0) || a - b);
  const sequence = order.map((i) => (log[i] as Written).version);
  for (const [which, where] of s.duplicates) {
    sequence.splice(where % (sequence.length + 1), 0, (log[which % log.length] as Written).version);
  }
  const out: Version[][] = [];
  for (let i = 0, b = 0; i < sequence.length; b++) {
    const size = s.batches[b % s.batches.length] as number;
    out.push(sequence.slice(i, i + size));
    i += size;
  }
  return out;
}

function unionClock(log: Written[]): Clock {
  return log.reduce((clock, w) => mergeClocks(clock, dotClock(w.version)), {} as Clock);
}

function storeOf(replica: Replica): Record<string, Version> {
  return Object.fromEntries([...replica.allVersions()].map((v) => [v.key, v]));
}

/** The version each key should hold given exactly the writes `applied` names: the highest stamp. */
function expectedStore(log: Written[], applied: Clock): Record<string, Version> {
  const out: Record<string, Version> = {};
  for (const { version } of log) {
    if (!clockCovers(applied, dotClock(version))) continue;
    const current = out[version.key];
    if (current === undefined || compareStamps(version.stamp, current.stamp) > 0) out[version.key] = version;
  }
  return out;
}

/** The replica invariants, checked against the log of every write there is. */
function assertInvariants(replica: Replica, log: Written[], where: string): void {
  const applied = replica.applied;
  for (const version of replica.allVersions()) {
    if (version.dot === null) continue;
    assert.ok(replica.covers(dotClock(version)), `${where}: stored dot ${JSON.stringify(version.dot)} is covered by applied`);
    assert.ok(replica.covers(version.deps[SHARD] ?? {}), `${where}: the deps of stored ${JSON.stringify(version.dot)} are applied`);
  }
  // Nothing is applied before its deps: the applied set is causally closed.
  for (const { version } of log) {
    if (clockCovers(applied, dotClock(version))) {
      assert.ok(replica.covers(version.deps[SHARD] ?? {}), `${where}: ${JSON.stringify(version.dot)} applied before its deps`);
    }
  }
  assert.ok(clockCovers(unionClock(log), applied), `${where}: applied names only writes that exist`);
  // Every applied write is reflected: the store is the last-writer-wins of exactly the applied writes.
  assert.deepEqual(storeOf(replica), expectedStore(log, applied), `${where}: store reflects exactly the applied writes`);
}

// ------------------------------------------------------------------ causal delivery

test('causal delivery: any permutation with duplicates ends where in-order delivery ends; deps always first', () => {
  fc.assert(
    fc.property(stepsArb, scheduleArb, (steps, s) => {
      const { log } = buildHistory(steps);
      const inOrder = new Replica({ self: FRESH, shard: SHARD, pendingMax: 10_000 });
      inOrder.deliver(log.map((w) => w.version));
      assert.equal(inOrder.pendingCount, 0);

      const replica = new Replica({ self: FRESH, shard: SHARD, pendingMax: log.length + 1 });
      let step = 0;
      let applied = 0;
      let duplicates = 0;
      for (const batch of schedule(log, s)) {
        const result = replica.deliver(batch);
        applied += result.applied;
        duplicates += result.duplicates;
        assert.equal(result.dropped, 0);
        assertInvariants(replica, log, `after delivery ${step++}`);
      }
      assert.equal(applied, log.length, 'every write applied once');
      assert.equal(duplicates, s.duplicates.length === 0 || log.length === 0 ? 0 : s.duplicates.length);
      assert.equal(replica.pendingCount, 0);
      assert.deepEqual(storeOf(replica), storeOf(inOrder));
      assert.deepEqual({ ...replica.applied }, unionClock(log));
      assert.deepEqual({ ...inOrder.applied }, unionClock(log));
      assert.equal(replica.liveKeyCount(), inOrder.liveKeyCount());
    }),
    { numRuns: 150 },
  );
});

test('the origins themselves keep the invariants while writing and syncing', () => {
  fc.assert(
    fc.property(stepsArb, (steps) => {
      const { log, origins } = buildHistory(steps);
      for (const origin of origins) assertInvariants(origin, log, origin.self);
    }),
    { numRuns: 150 },
  );
});

// ------------------------------------------------------------------ the pending bound

test('pending bound: early arrivals beyond pendingMax are dropped and counted; a later mergeState repairs', () => {
  fc.assert(
    fc.property(stepsArb, scheduleArb, fc.integer({ min: 0, max: 3 }), (steps, s, pendingMax) => {
      const { log } = buildHistory(steps);
      const complete = new Replica({ self: nodeAddress('10.10.0.50:8090'), shard: SHARD, pendingMax: 10_000 });
      complete.deliver(log.map((w) => w.version));

      const replica = new Replica({ self: FRESH, shard: SHARD, pendingMax });
      let dropped = 0;
      for (const batch of schedule(log, s)) {
        const result = replica.deliver(batch);
        dropped += result.dropped;
        assert.ok(replica.pendingCount <= pendingMax, `pending ${replica.pendingCount} <= ${pendingMax}`);
        // Applied counts writes drained from the buffer too; the rest account for each delivered version.
        assert.ok(result.duplicates + result.buffered + result.dropped <= batch.length);
        assertInvariants(replica, log, 'during delivery');
      }
      if (dropped === 0) assert.deepEqual({ ...replica.applied }, unionClock(log), 'nothing dropped: nothing missing');
      // A peer that has everything sends what we lack, with its clock.
      replica.mergeState(complete.versionsSince(replica.applied, { base: false }), complete.applied);
      assert.equal(replica.pendingCount, 0);
      assert.deepEqual({ ...replica.applied }, unionClock(log));
      assert.deepEqual(storeOf(replica), storeOf(complete));
      assertInvariants(replica, log, 'after mergeState');
    }),
    { numRuns: 150 },
  );
});

test('pending bound, by hand: five writes of one origin arrive backwards at a replica with pendingMax 2', () => {
  const origin = new Replica({ self: ORIGINS[0] as NodeAddress, shard: SHARD, pendingMax: 10 });
  const writes = [1, 2, 3, 4, 5].map((n) => origin.write(`k${n}`, { deleted: false, value: n }, { [SHARD]: { ...origin.applied } }));
  const replica = new Replica({ self: FRESH, shard: SHARD, pendingMax: 2 });
  assert.deepEqual(replica.deliver([...writes].reverse()), { applied: 1, duplicates: 0, buffered: 2, dropped: 2 });
  assert.deepEqual({ ...replica.applied }, { [ORIGINS[0] as string]: 1 });
  assert.equal(replica.pendingCount, 2);
  // Re-sent, the dropped ones drain the buffer.
  assert.deepEqual(replica.deliver([writes[1] as Version, writes[2] as Version]), { applied: 4, duplicates: 0, buffered: 0, dropped: 0 });
  assert.equal(replica.pendingCount, 0);
  assert.deepEqual({ ...replica.applied }, { [ORIGINS[0] as string]: 5 });
});

// ------------------------------------------------------------------ state exchange

test('two diverged replicas converge after exchanging versionsSince(other.applied) both ways', () => {
  fc.assert(
    fc.property(stepsArb, fc.boolean(), (steps, bFirst) => {
      const { log, origins } = buildHistory(steps);
      const [a, b] = origins as [Replica, Replica];
      const bothSaw = log.filter((w) => a.covers(dotClock(w.version)) || b.covers(dotClock(w.version)));
      const reference = new Replica({ self: FRESH, shard: SHARD, pendingMax: 10_000 });
      reference.deliver(bothSaw.map((w) => w.version));
      const union = mergeClocks(a.applied, b.applied);

      const [first, second] = bFirst ? [b, a] : [a, b];
      // Each asks the other for what it lacks, as the runtime's sync does: versions and clock read at one instant.
      const toFirst = second.versionsSince(first.applied, { base: false });
      first.mergeState(toFirst, { ...second.applied });
      const toSecond = first.versionsSince(second.applied, { base: false });
      second.mergeState(toSecond, { ...first.applied });

      assert.deepEqual(storeOf(a), storeOf(b));
      assert.deepEqual({ ...a.applied }, { ...b.applied });
      assert.deepEqual({ ...a.applied }, union);
      assert.deepEqual(storeOf(a), storeOf(reference));
      assertInvariants(a, log, 'a after exchange');
      assertInvariants(b, log, 'b after exchange');
      // Nothing more to send either way.
      assert.deepEqual(a.versionsSince(b.applied, { base: false }), []);
      assert.deepEqual(b.versionsSince(a.applied, { base: false }), []);
      // And they keep writing with fresh dots and stamps above everything they hold.
      const next = a.write('a', { deleted: false, value: 'after' }, { [SHARD]: { ...a.applied } });
      for (const v of b.allVersions()) assert.ok(compareStamps(next.stamp, v.stamp) > 0);
      assert.equal(next.dot?.counter, (union[a.self] ?? 0) + 1);
    }),
    { numRuns: 150 },
  );
});

test('versionsSince sends only versions with newer dots; base versions only on a full sync', () => {
  const replica = new Replica({ self: ORIGINS[0] as NodeAddress, shard: SHARD, pendingMax: 10 });
  const written: Version = { key: 'old', value: 1, deleted: false, dot: { node: nodeAddress('10.10.5.5:8090'), counter: 9 }, stamp: { lamport: 7, node: nodeAddress('10.10.5.5:8090') }, deps: { s3: { x: 1 } } };
  replica.mergeBase([asBase(written, shardIdFor(3))], {});
  assert.equal(replica.get('old')?.dot, null, 'a base version has no dot');
  assert.deepEqual(replica.get('old')?.deps, {});
  assert.deepEqual(replica.get('old')?.past, { '0': { s3: { x: 1, '10.10.5.5:8090': 9 } } }, 'its dot and deps live on under its epoch');
  assert.equal(replica.lamport, 7, 'the lamport clock never goes back below what is stored');
  const w1 = replica.write('x', { deleted: false, value: 1 }, {});
  const w2 = replica.write('y', { deleted: false, value: 2 }, {});
  assert.equal(w1.stamp.lamport, 8);
  assert.deepEqual(replica.versionsSince({}, { base: false }), [w1, w2]);
  assert.deepEqual(replica.versionsSince({ [ORIGINS[0] as string]: 1 }, { base: false }), [w2]);
  assert.deepEqual(replica.versionsSince({ [ORIGINS[0] as string]: 2 }, { base: false }), []);
  assert.deepEqual(new Set(replica.versionsSince({ [ORIGINS[0] as string]: 2 }, { base: true }).map((v) => v.key)), new Set(['old']));
  // A base version pushed like a write is dropped: bases travel only in transfers and full syncs.
  const other = new Replica({ self: FRESH, shard: SHARD, pendingMax: 10 });
  assert.deepEqual(other.deliver([replica.get('old') as Version]), { applied: 0, duplicates: 0, buffered: 0, dropped: 1 });
});

test('a replica rebuilt with a lamport start never stamps below it', () => {
  const replica = new Replica({ self: ORIGINS[0] as NodeAddress, shard: SHARD, pendingMax: 10, lamport: 41 });
  assert.equal(replica.write('k', { deleted: false, value: 1 }, {}).stamp.lamport, 42);
});

// ------------------------------------------------------------------ last writer wins

test('LWW: a causally later write always has the higher stamp, and no stored winner is causally overwritten', () => {
  fc.assert(
    fc.property(stepsArb, (steps) => {
      const { log } = buildHistory(steps);
      for (const later of log) {
        for (const earlier of log) {
          if (earlier === later) continue;
          if (clockCovers(later.seen, dotClock(earlier.version))) {
            assert.ok(compareStamps(later.version.stamp, earlier.version.stamp) > 0, 'later write stamps higher');
          }
        }
      }
      const all = new Replica({ self: FRESH, shard: SHARD, pendingMax: 10_000 });
      all.deliver(log.map((w) => w.version));
      for (const winner of all.allVersions()) {
        const winnerWrite = log.find((w) => w.version === winner) as Written;
        for (const other of log) {
          if (other.version.key === winner.key && other !== winnerWrite) {
            assert.ok(!clockCovers(other.seen, dotClock(winner)), 'a write that saw the winner would have won');
          }
        }
      }
    }),
    { numRuns: 150 },
  );
});

test('LWW: concurrent writes to one key converge to one winner in every delivery order', () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 3, maxLength: 3 }),
      fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 3, maxLength: 3 }),
      fc.boolean(),
      (warmups, orderSeed, lastIsDelete) => {
        // Each origin did some unrelated writes first (so stamps differ), then all write `k` concurrently.
        const origins = ORIGINS.map((self) => new Replica({ self, shard: SHARD, pendingMax: 100 }));
        const writes: Version[] = [];
        origins.forEach((origin, i) => {
          for (let n = 0; n < (warmups[i] as number); n++) writes.push(origin.write(`w${i}-${n}`, { deleted: false, value: n }, {}));
          writes.push(
            i === 2 && lastIsDelete
              ? origin.write('k', { deleted: true }, {})
              : origin.write('k', { deleted: false, value: origin.self }, {}),
          );
        });
        const finalK = writes.filter((v) => v.key === 'k');
        const expected = finalK.reduce((best, v) => (compareStamps(v.stamp, best.stamp) > 0 ? v : best));
        const perms = [
          [0, 1, 2],
          [0, 2, 1],
          [1, 0, 2],
          [1, 2, 0],
          [2, 0, 1],
          [2, 1, 0],
        ];
        const results = perms.map((perm) => {
          const r = new Replica({ self: FRESH, shard: SHARD, pendingMax: 100 });
          const byOrigin = perm.map((o) => writes.filter((v) => v.dot?.node === ORIGINS[o]));
          // Interleave the origins' streams differently each time, including the rotated seed.
          const rotated = byOrigin.slice(orderSeed[0] as number % 3).concat(byOrigin.slice(0, orderSeed[0] as number % 3));
          for (const stream of rotated) r.deliver([...stream].reverse());
          return r.get('k');
        });
        for (const winner of results) assert.deepEqual(winner, expected);
        // Each origin, once it has the others' writes, holds the same winner too.
        for (const origin of origins) {
          origin.deliver(writes);
          assert.deepEqual(origin.get('k'), expected);
        }
      },
    ),
    { numRuns: 100 },
  );
});

test('LWW by hand: equal lamports are broken by the higher node address, the same way everywhere', () => {
  const a = new Replica({ self: nodeAddress('10.10.0.2:8090'), shard: SHARD, pendingMax: 10 });
  const b = new Replica({ self: nodeAddress('10.10.0.3:8090'), shard: SHARD, pendingMax: 10 });
  const va = a.write('k', { deleted: false, value: 'from a' }, {});
  const vb = b.write('k', { deleted: false, value: 'from b' }, {});
  assert.equal(va.stamp.lamport, vb.stamp.lamport);
  a.deliver([vb]);
  b.deliver([va]);
  assert.equal(a.get('k')?.value, 'from b');
  assert.equal(b.get('k')?.value, 'from b');
  // b's next write after seeing a's is later than both.
  const vb2 = b.write('k', { deleted: true }, { [SHARD]: { ...b.applied } });
  a.deliver([vb2]);
  assert.equal(a.get('k')?.deleted, true);
  assert.equal(a.liveKeyCount(), 0);
  assert.equal(a.size, 1, 'a delete is kept as a tombstone');
});
