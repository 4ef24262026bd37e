// Causal metadata: what the store hands clients and accepts back. Every blob it mints survives a
// JSON round trip and parses to itself; anything else is rejected; old epochs are dropped.

import { asEpoch } from '../../src/core/shard-map.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  dependenciesAt,
  makeMetadata,
  mergeIntoMetadata,
  METADATA_NODES_PER_SHARD_MAX,
  METADATA_SHARDS_MAX,
  OLD_EPOCHS_MAX,
  parseCausalMetadata,
} from '../../src/core/causal-metadata.ts';
import { mergeShardClocks } from '../../src/core/vector-clock.ts';
import type { Clock, ShardClocks } from '../../src/core/types.ts';

const RUNS = { numRuns: 200 };

const addressArb = fc
  .tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 65535 }))
  .map(([a, b, port]) => `10.10.${a}.${b}:${port}`);
const counterArb = fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER });
const clockArb: fc.Arbitrary<Clock> = fc
  .array(fc.tuple(addressArb, counterArb), { maxLength: 6 })
  .map((entries) => Object.fromEntries(entries));
const shardIdArb = fc.integer({ min: 0, max: 300 }).map((i) => `s${i}`);
const shardClocksArb: fc.Arbitrary<ShardClocks> = fc
  .array(fc.tuple(shardIdArb, clockArb), { maxLength: 6 })
  .map((entries) => Object.fromEntries(entries));
const epochArb = fc.integer({ min: 0, max: 1_000_000 }).map(asEpoch);

function rejected(raw: unknown): boolean {
  return !parseCausalMetadata(raw).ok;
}

test('null and undefined (a first request) parse to null metadata', () => {
  assert.deepEqual(parseCausalMetadata(null), { ok: true, metadata: null });
  assert.deepEqual(parseCausalMetadata(undefined), { ok: true, metadata: null });
});

test('every makeMetadata output survives a JSON round trip and parses to itself', () => {
  fc.assert(
    fc.property(epochArb, shardClocksArb, (epoch, clocks) => {
      const minted = makeMetadata(epoch, clocks);
      const parsed = parseCausalMetadata(JSON.parse(JSON.stringify(minted)));
      assert.deepEqual(parsed, { ok: true, metadata: minted });
      // So does what mergeIntoMetadata mints.
      const merged = mergeIntoMetadata(epoch, clocks, { s0: { '10.0.0.2:8090': 3 } });
      assert.deepEqual(parseCausalMetadata(JSON.parse(JSON.stringify(merged))), { ok: true, metadata: merged });
      assert.deepEqual(merged.c, mergeShardClocks(clocks, { s0: { '10.0.0.2:8090': 3 } }));
    }),
    RUNS,
  );
});

test('metadata at the size limits is accepted; one shard or node more is rejected', () => {
  const wideClock: Clock = {};
  for (let i = 0; i < METADATA_NODES_PER_SHARD_MAX; i++) wideClock[`10.0.${i >> 8}.${i & 255}:8090`] = 1;
  assert.ok(parseCausalMetadata(makeMetadata(asEpoch(1), { s0: wideClock })).ok);
  assert.ok(rejected(makeMetadata(asEpoch(1), { s0: { ...wideClock, '10.9.9.9:8090': 1 } })));

  const manyShards: ShardClocks = {};
  for (let i = 0; i < METADATA_SHARDS_MAX; i++) manyShards[`s${i}`] = {};
  assert.ok(parseCausalMetadata(makeMetadata(asEpoch(1), manyShards)).ok);
  const tooMany = { ...manyShards, [`s${METADATA_SHARDS_MAX}`]: {} };
  const result = parseCausalMetadata(makeMetadata(asEpoch(1), tooMany));
  assert.equal(result.ok, false);
  assert.match((result as { reason: string }).reason, /too many shards/);
});

test('non-objects and arrays are rejected', () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.boolean(),
        fc.integer(),
        fc.double(),
        fc.string(),
        fc.array(fc.anything()),
        fc.constant([]),
        fc.constant([makeMetadata(asEpoch(1), {})]),
      ),
      (raw) => {
        const result = parseCausalMetadata(raw);
        assert.equal(result.ok, false);
        assert.equal(typeof (result as { reason: string }).reason, 'string');
      },
    ),
    RUNS,
  );
});

test('foreign shapes are rejected', () => {
  const valid = { v: 1, e: 3, c: { s0: { '10.0.0.2:8090': 1 } } };
  const foreign: unknown[] = [
    {},
    { v: 1 },
    { v: 2, e: 3, c: {} },
    { v: '1', e: 3, c: {} },
    { e: 3, c: {} },
    { v: 1, c: {} },
    { v: 1, e: -1, c: {} },
    { v: 1, e: 1.5, c: {} },
    { v: 1, e: '3', c: {} },
    { v: 1, e: Number.MAX_SAFE_INTEGER + 1, c: {} },
    { v: 1, e: 3 },
    { v: 1, e: 3, c: null },
    { v: 1, e: 3, c: [] },
    { v: 1, e: 3, c: 'x' },
    { v: 1, e: 3, c: { s0: null } },
    { v: 1, e: 3, c: { s0: [] } },
    { v: 1, e: 3, c: { s0: 5 } },
    { v: 1, e: 3, c: { s0: [1, 2] } },
    { v: 1, e: 3, c: { ['s'.repeat(65)]: {} } },
    { v: 1, e: 3, c: { s0: { ['n'.repeat(301)]: 1 } } },
    { vectorClock: { a: 1 } },
    { v: 1, e: 3, c: { s0: { '10.0.0.2:8090': '1' } } },
    { v: 1, e: 3, c: { s0: { '10.0.0.2:8090': null } } },
    { v: 1, e: 3, c: { s0: { '10.0.0.2:8090': true } } },
  ];
  for (const raw of foreign) assert.ok(rejected(raw), `rejects ${JSON.stringify(raw)}`);
  assert.ok(parseCausalMetadata(valid).ok);
  // Random objects that are not minted metadata: rejected unless they happen to have the shape.
  fc.assert(
    fc.property(fc.dictionary(fc.string(), fc.anything()), (raw) => {
      if ((raw as Record<string, unknown>).v === 1) return;
      assert.ok(rejected(raw));
    }),
    RUNS,
  );
});

test('counters below 1 or not safe integers are rejected', () => {
  fc.assert(
    fc.property(
      epochArb,
      shardIdArb,
      addressArb,
      fc.oneof(
        fc.integer({ max: 0 }),
        fc.double({ noInteger: true }),
        fc.constantFrom(Number.NaN, Infinity, -Infinity, Number.MAX_SAFE_INTEGER + 1, 2 ** 60, -0),
      ),
      (epoch, shard, node, counter) => {
        assert.ok(rejected({ v: 1, e: epoch, c: { [shard]: { [node]: counter } } }), `rejects counter ${counter}`);
        // Also next to valid entries.
        assert.ok(rejected({ v: 1, e: epoch, c: { s0: { '10.0.0.2:8090': 4 }, [shard]: { '10.0.0.3:8090': 1, [node]: counter } } }));
      },
    ),
    RUNS,
  );
});

test('parsing copies the clocks: later changes to the raw input do not leak in', () => {
  const raw = { v: 1, e: 2, c: { s0: { '10.0.0.2:8090': 1 } } };
  const parsed = parseCausalMetadata(raw);
  assert.ok(parsed.ok);
  raw.c.s0['10.0.0.2:8090'] = 99;
  assert.deepEqual(parsed.metadata, { v: 1, e: 2, c: { s0: { '10.0.0.2:8090': 1 } } });
});

test('dependenciesAt: clocks of the same epoch stay current; older ones become old dependencies, within OLD_EPOCHS_MAX', () => {
  fc.assert(
    fc.property(epochArb, fc.integer({ min: 0, max: 12 }), shardClocksArb, (minted, ahead, clocks) => {
      const current = asEpoch(minted + ahead);
      const nonEmpty = Object.fromEntries(Object.entries(clocks).filter(([, clock]) => Object.keys(clock).length > 0));
      const deps = dependenciesAt(makeMetadata(minted, clocks), current);
      if (ahead === 0) {
        assert.deepEqual(deps, { clocks, old: {} });
      } else {
        assert.deepEqual(deps.clocks, {});
        const kept = ahead <= OLD_EPOCHS_MAX && Object.keys(nonEmpty).length > 0;
        assert.deepEqual(deps.old, kept ? { [String(minted)]: nonEmpty } : {});
      }
      assert.deepEqual(dependenciesAt(null, current), { clocks: {}, old: {} });
    }),
    RUNS,
  );
});

test('old dependencies survive a JSON round trip, merge with the clocks of their epoch, and are bounded', () => {
  const old = { '3': { s0: { '10.0.0.2:8090': 4 } }, '5': { s1: { '10.0.0.3:8090': 1 } } };
  const minted = makeMetadata(asEpoch(6), { s0: { '10.0.0.4:8090': 2 } }, old);
  const parsed = parseCausalMetadata(JSON.parse(JSON.stringify(minted)));
  assert.ok(parsed.ok);
  assert.deepEqual(parsed.metadata, minted);
  // Seen from epoch 7, epoch 6's clocks join the old ones.
  assert.deepEqual(dependenciesAt(parsed.metadata, asEpoch(7)).old, { ...old, '6': { s0: { '10.0.0.4:8090': 2 } } });
  // Epochs more than OLD_EPOCHS_MAX back are dropped when minted.
  assert.deepEqual(makeMetadata(asEpoch(3 + OLD_EPOCHS_MAX + 1), {}, old).o, { '5': old['5'] });
  // Forged: an old epoch not before `e`, a non-numeric epoch, too many epochs.
  assert.ok(rejected({ v: 1, e: 3, c: {}, o: { '3': {} } }));
  assert.ok(rejected({ v: 1, e: 3, c: {}, o: { x: {} } }));
  assert.ok(rejected({ v: 1, e: 3, c: {}, o: { '1': { s0: { a: 0 } } } }));
  const many = Object.fromEntries(Array.from({ length: OLD_EPOCHS_MAX + 1 }, (_, i) => [String(i), {}]));
  assert.ok(rejected({ v: 1, e: 100, c: {}, o: many }));
});
