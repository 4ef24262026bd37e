// The packed form of an anti-entropy push (src/node/repair-wire.ts): every kind of version comes
// back as it went, through JSON and the repair decoder; a body stays within its bound; a malformed
// packing is a 400, and nothing a peer sends can reach Object.prototype.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { packedBodies, packVersions, unpackVersions } from '../../src/node/repair-wire.ts';
import { decodeRepair, isVersionList } from '../../src/node/wire.ts';
import { BadRequest } from '../../src/node/replies.ts';
import { versionBytes } from '../../src/core/json-value.ts';
import type { Version } from '../../src/core/types.ts';

const A = '10.10.0.2:8090';
const B = '10.10.0.3:8090';
const C = '10.10.0.4:8090';

/** What travels over HTTP is JSON. */
function wire<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

const examples: Version[] = [
  // A base version with nothing but key, value and stamp (as the repair bench injects them).
  { key: 'plain', deleted: false, dot: null, stamp: { lamport: 1, node: A }, deps: {}, value: 'x'.repeat(100) } as Version,
  // A write: its epoch, its dot, deps across shards naming other nodes, a JSON value.
  {
    key: 'write',
    deleted: false,
    dot: { node: B, counter: 7 },
    stamp: { epoch: 2, lamport: 40, node: B },
    deps: { s0: { [A]: 3, [B]: 6 }, s1: { [C]: 1 } },
    value: { nested: [1, 2.5, null, true, 'é'] },
  } as unknown as Version,
  // A tombstone of a write whose dot is another node's than its stamp's (never made so, but carried as is).
  { key: 'gone', deleted: true, dot: { node: C, counter: 2 }, stamp: { epoch: 1, lamport: 9, node: A }, deps: {} } as unknown as Version,
  // A base version carried over a reshard: past and origin.
  {
    key: 'base',
    deleted: false,
    dot: null,
    stamp: { epoch: 1, lamport: 3, node: C },
    deps: {},
    past: { '0': { s0: { [C]: 5 } } },
    origin: { epoch: 0, shard: 's0', node: C, counter: 5 },
    value: 0,
  } as unknown as Version,
  // A null value, and an empty key.
  { key: '', deleted: false, dot: { node: A, counter: 1 }, stamp: { lamport: 2, node: A }, deps: { s3: {} }, value: null } as unknown as Version,
];

test('every kind of version comes back as it was packed, through JSON and decodeRepair', () => {
  const packed = wire(packVersions(examples));
  assert.deepEqual(packed.n.toSorted(), [A, B, C].toSorted(), 'each address named once');
  const back = unpackVersions(packed);
  assert.ok(isVersionList(back));
  assert.deepEqual(back, wire(examples));
  const message = decodeRepair(wire({ epoch: 2, shard: 's0', from: B, packed: packVersions(examples) }));
  assert.deepEqual(message.versions, wire(examples));
  assert.equal(message.from, B);
  // The unpacked versions have their fields in the order a version always has them.
  assert.deepEqual(Object.keys(back[3] as object), ['key', 'deleted', 'dot', 'stamp', 'deps', 'past', 'origin', 'value']);
  // The plain form still decodes, with no sender.
  assert.equal(decodeRepair(wire({ epoch: 2, shard: 's0', versions: examples })).from, null);
});

test('packed, a small version costs little more than its key and value', () => {
  const versions = Array.from({ length: 1000 }, (_, i) => ({ ...examples[0], key: `key-${10_000 + i}` }) as Version);
  const raw = versions.reduce((sum, v) => sum + v.key.length + (v.value as string).length, 0);
  const text = JSON.stringify(packVersions(versions));
  assert.ok(text.length < raw * 1.2, `${text.length} bytes packed for ${raw} of keys and values`);
  assert.ok(JSON.stringify(versions).length > raw * 1.8, 'the plain form costs about twice');
});

test('bodies stay within their bound, carry every version once in order, and decode', () => {
  fc.assert(
    fc.property(fc.array(fc.constantFrom(...examples), { minLength: 1, maxLength: 60 }), fc.integer({ min: 50, max: 3000 }), (picked, charsMax) => {
      const versions = picked.map((v, i) => ({ ...v, key: `${v.key}-${i}` }) as Version);
      const bodies = [...packedBodies(versions, { epoch: 1, shard: 's0', from: A }, charsMax)];
      const carried = bodies.flatMap((b) => b.versions);
      assert.deepEqual(carried, versions);
      for (const body of bodies) {
        // Over the bound only with one version (at least one goes in each).
        const tuples = JSON.stringify(JSON.parse(body.text).packed.v).length;
        assert.ok(body.versions.length === 1 || tuples <= charsMax + 2, `${tuples} > ${charsMax}`);
        const message = decodeRepair(JSON.parse(body.text));
        assert.deepEqual(message.versions, wire(body.versions));
        assert.equal(message.from, A);
        assert.equal(message.epoch, 1);
      }
      return versionBytes(versions) > 0;
    }),
    { numRuns: 200 },
  );
});

test('a malformed packing is refused, and no packed field reaches Object.prototype', () => {
  const good = wire(packVersions(examples));
  const bad: unknown[] = [
    null,
    [],
    { n: [A] },
    { n: ['not an address'], v: [['k', 1, 0, 0, 'v']] },
    { n: [A], v: [['k', 1, 1, 0, 'v']] },
    { n: [A], v: [['k', 1, -1, 0, 'v']] },
    { n: [A], v: [['k', 1, 0, 0, 'v', 'extra']] },
    { n: [A], v: [['k', 1, 0]] },
    { n: [A], v: [['k', 1, 0, 'x', 'v']] },
    { n: [A], v: [['k', 1, 0, { d: [5, 1] }, 'v']] },
    { n: [A], v: [['k', 1, 0, { p: { s0: [0] } }, 'v']] },
    { n: [A], v: [['k', 1, 0, { p: { s0: [3, 1] } }, 'v']] },
    JSON.parse(`{"n":["${A}"],"v":[["k",1,0,{"p":{"__proto__":[0,1]}},"v"]]}`),
    JSON.parse(`{"n":["__proto__"],"v":[["k",1,0,{"p":{"s0":[0,1]}},"v"]]}`),
  ];
  for (const packed of bad) {
    assert.equal(unpackVersions(packed), null, JSON.stringify(packed));
    assert.throws(() => decodeRepair({ epoch: 1, shard: 's0', packed }), BadRequest);
  }
  // Shaped right but not versions (a lamport that is not a whole number, a value too deep): the
  // version checks refuse them.
  const deep = JSON.parse(`${'['.repeat(70)}${']'.repeat(70)}`);
  for (const packed of [{ n: [A], v: [['k', 1.5, 0, 0, 'v']] }, { n: [A], v: [['k', 1, 0, 0, deep]] }, { n: [A], v: [[7, 1, 0, 0, 'v']] }]) {
    assert.throws(() => decodeRepair({ epoch: 1, shard: 's0', packed }), BadRequest);
  }
  assert.equal(({} as Record<string, unknown>).s0, undefined);
  assert.ok(unpackVersions(good) !== null);
});
