// Vector clocks: mergeClocks is a join (commutative, associative, idempotent, least upper bound
// under clockCovers), clockLacks names exactly what clockCovers misses, withDot adds one write.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  clockCovers,
  clockLacks,
  clocksEqual,
  mergeClocks,
  mergeShardClocks,
  withDot,
} from '../../src/core/vector-clock.ts';
import type { Clock, ShardClocks } from '../../src/core/types.ts';

const RUNS = { numRuns: 300 };

// A few node names so clocks overlap often; counters are >= 1 as in every clock the store mints.
const nodeArb = fc.constantFrom('10.0.0.2:8090', '10.0.0.3:8090', '10.0.0.4:8090', '10.0.0.5:8090', '10.0.0.10:8090');
const clockArb: fc.Arbitrary<Clock> = fc
  .array(fc.tuple(nodeArb, fc.integer({ min: 1, max: 20 })), { maxLength: 5 })
  .map((entries) => Object.fromEntries(entries));
const shardArb = fc.constantFrom('s0', 's1', 's2');
const shardClocksArb: fc.Arbitrary<ShardClocks> = fc
  .array(fc.tuple(shardArb, clockArb), { maxLength: 3 })
  .map((entries) => Object.fromEntries(entries));

test('mergeClocks is commutative', () => {
  fc.assert(
    fc.property(clockArb, clockArb, (a, b) => {
      assert.deepEqual(mergeClocks(a, b), mergeClocks(b, a));
    }),
    RUNS,
  );
});

test('mergeClocks is associative', () => {
  fc.assert(
    fc.property(clockArb, clockArb, clockArb, (a, b, c) => {
      assert.deepEqual(mergeClocks(mergeClocks(a, b), c), mergeClocks(a, mergeClocks(b, c)));
    }),
    RUNS,
  );
});

test('mergeClocks is idempotent and does not change its inputs', () => {
  fc.assert(
    fc.property(clockArb, clockArb, (a, b) => {
      const a0 = structuredClone(a);
      const b0 = structuredClone(b);
      assert.deepEqual(mergeClocks(a, a), a);
      const m = mergeClocks(a, b);
      assert.deepEqual(mergeClocks(m, b), m);
      assert.deepEqual(a, a0);
      assert.deepEqual(b, b0);
    }),
    RUNS,
  );
});

test('mergeClocks is the least upper bound under clockCovers', () => {
  fc.assert(
    fc.property(clockArb, clockArb, clockArb, (a, b, c) => {
      const m = mergeClocks(a, b);
      assert.ok(clockCovers(m, a));
      assert.ok(clockCovers(m, b));
      // Any clock covering both covers the merge; the merge names no node neither input names.
      if (clockCovers(c, a) && clockCovers(c, b)) assert.ok(clockCovers(c, m));
      const upper = mergeClocks(c, m);
      assert.ok(clockCovers(upper, m));
      for (const node of Object.keys(m)) assert.ok(node in a || node in b);
      for (const [node, counter] of Object.entries(m)) {
        assert.equal(counter, Math.max(a[node] ?? 0, b[node] ?? 0));
      }
    }),
    RUNS,
  );
});

test('clockCovers is reflexive and transitive, and a missing entry counts as 0', () => {
  fc.assert(
    fc.property(clockArb, clockArb, clockArb, (a, b, c) => {
      assert.ok(clockCovers(a, a));
      assert.ok(clockCovers(a, {}));
      if (clockCovers(a, b) && clockCovers(b, c)) assert.ok(clockCovers(a, c));
      assert.equal(clocksEqual(a, b), clockCovers(a, b) && clockCovers(b, a));
    }),
    RUNS,
  );
  assert.ok(clockCovers({}, { x: 0 }));
  assert.ok(!clockCovers({}, { x: 1 }));
});

test('clockLacks is empty exactly when clockCovers holds, and names only what is missing', () => {
  fc.assert(
    fc.property(clockArb, clockArb, (have, need) => {
      const lacks = clockLacks(have, need);
      assert.equal(Object.keys(lacks).length === 0, clockCovers(have, need));
      for (const [node, counter] of Object.entries(lacks)) {
        assert.equal(counter, need[node]);
        assert.ok((have[node] ?? 0) < counter);
      }
      for (const [node, counter] of Object.entries(need)) {
        if ((have[node] ?? 0) < counter) assert.equal(lacks[node], counter);
      }
      // Once the lacking entries are merged in, nothing is lacking.
      assert.ok(clockCovers(mergeClocks(have, lacks), need));
    }),
    RUNS,
  );
});

test('withDot adds one dot to one shard, never lowers a counter, and does not change its input', () => {
  fc.assert(
    fc.property(shardClocksArb, shardArb, nodeArb, fc.integer({ min: 1, max: 25 }), (clocks, shard, node, counter) => {
      const before = structuredClone(clocks);
      const out = withDot(clocks, shard, node, counter);
      assert.deepEqual(clocks, before);
      assert.equal(out[shard]?.[node], Math.max(counter, clocks[shard]?.[node] ?? 0));
      // Everything else is unchanged, and the result covers the input shard by shard.
      for (const [id, clock] of Object.entries(clocks)) {
        assert.ok(clockCovers(out[id] ?? {}, clock));
        for (const [n, c] of Object.entries(clock)) if (id !== shard || n !== node) assert.equal(out[id]?.[n], c);
      }
      for (const id of Object.keys(out)) assert.ok(id in clocks || id === shard);
      // It is the merge with a one-entry clock, and idempotent.
      assert.deepEqual(out, mergeShardClocks(clocks, { [shard]: { [node]: counter } }));
      assert.deepEqual(withDot(out, shard, node, counter), out);
    }),
    RUNS,
  );
});

test('mergeShardClocks merges shard by shard, commutatively and idempotently', () => {
  fc.assert(
    fc.property(shardClocksArb, shardClocksArb, shardClocksArb, (a, b, c) => {
      assert.deepEqual(mergeShardClocks(a, b), mergeShardClocks(b, a));
      assert.deepEqual(mergeShardClocks(mergeShardClocks(a, b), c), mergeShardClocks(a, mergeShardClocks(b, c)));
      assert.deepEqual(mergeShardClocks(a, a), a);
      const m = mergeShardClocks(a, b);
      for (const id of new Set([...Object.keys(a), ...Object.keys(b)])) {
        assert.deepEqual(m[id], mergeClocks(a[id] ?? {}, b[id] ?? {}));
      }
    }),
    RUNS,
  );
});
