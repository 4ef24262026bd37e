// What stored versions share (src/core/intern.ts, the stored form in stored-version.ts, newVersion in versions.ts): the
// bounded address table, the one frozen empty deps that nothing mutates, and versions whose JSON
// is byte for byte what it was before they shared anything.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ADDRESSES_INTERNED_MAX, EMPTY_SHARD_CLOCKS, Interner, isEmptyRecord } from '../../src/core/intern.ts';
import { asBase, Replica } from '../../src/core/replica.ts';
import { newVersion, versionHash } from '../../src/core/versions.ts';
import { pack, storedHash, unpack } from '../../src/core/stored-version.ts';
import { nodeAddress } from '../../src/core/address.ts';
import { shardIdFor } from '../../src/core/shard-map.ts';
import type { Epoch, ShardClocks, Version } from '../../src/core/types.ts';

const SHARD = shardIdFor(0);
const A = nodeAddress('10.10.0.2:8090');
const B = nodeAddress('10.10.0.3:8090');

/** A copy of `text` that is a different string object (as JSON.parse makes one per occurrence). */
const fresh = (text: string): string => JSON.parse(JSON.stringify(text)) as string;

test('an interner gives back the first copy of a string, and holds at most max strings', () => {
  const table = new Interner(3);
  const first = fresh('10.0.0.1:1');
  assert.equal(table.intern(first), first);
  assert.equal(table.intern(fresh('10.0.0.1:1')), '10.0.0.1:1');
  assert.equal(table.size, 1);
  for (const text of ['10.0.0.2:1', '10.0.0.3:1', '10.0.0.4:1', '10.0.0.5:1']) assert.equal(table.intern(fresh(text)), text);
  // Full at 3: later strings come back as they are and are not held; the first three stay.
  assert.equal(table.size, 3);
  assert.equal(table.intern('10.0.0.4:1'), '10.0.0.4:1');
  assert.equal(table.size, 3);
  assert.equal(table.intern(fresh('10.0.0.2:1')), '10.0.0.2:1');
});

test('a replica interns at most ADDRESSES_INTERNED_MAX addresses, and stores every version all the same', () => {
  const replica = new Replica({ self: A, shard: SHARD, pendingMax: 10 });
  const count = ADDRESSES_INTERNED_MAX + 50;
  const versions: Version[] = [];
  for (let i = 0; i < count; i++) {
    const node = nodeAddress(`10.1.${Math.floor(i / 250)}.${i % 250}:8090`);
    versions.push({ key: `k${i}`, deleted: false, dot: { node, counter: 1 }, stamp: { epoch: 0 as Epoch, lamport: 1, node }, deps: {}, value: i });
  }
  assert.equal(replica.deliver(versions).applied, count);
  const table = (replica as unknown as { addresses: Interner }).addresses;
  assert.equal(table.size, ADDRESSES_INTERNED_MAX);
  for (let i = 0; i < count; i++) assert.deepEqual(replica.get(`k${i}`), versions[i]);
  replica.checkInvariants();
});

test('the shared empty deps is frozen: a mutation throws', () => {
  assert.ok(Object.isFrozen(EMPTY_SHARD_CLOCKS));
  assert.equal(Object.keys(EMPTY_SHARD_CLOCKS).length, 0);
  assert.throws(() => {
    (EMPTY_SHARD_CLOCKS as Record<string, unknown>).s0 = { [A]: 1 };
  }, TypeError);
  assert.ok(isEmptyRecord({}) && isEmptyRecord(EMPTY_SHARD_CLOCKS) && !isEmptyRecord({ s0: {} }));
  assert.ok(isEmptyRecord(Object.create({ inherited: 1 }) as object));
});

test('stored versions share one empty deps and one copy of each address; their JSON does not change', () => {
  const a = new Replica({ self: A, shard: SHARD, pendingMax: 10 });
  const b = new Replica({ self: B, shard: SHARD, pendingMax: 10 });
  const written = a.write('x', { deleted: false, value: { n: 1 } }, {});
  const deps: ShardClocks = { [SHARD]: { [A]: 1 } };
  const later = a.write('y', { deleted: true }, deps, { '0': { [SHARD]: { [B]: 3 } } });
  assert.equal(written.deps, EMPTY_SHARD_CLOCKS);
  assert.equal(later.deps, deps);
  // What a peer decodes: fresh objects and fresh strings, as JSON.parse makes them.
  const wire = JSON.stringify([written, later]);
  const decoded = JSON.parse(wire) as Version[];
  assert.notEqual(decoded[0]?.deps, EMPTY_SHARD_CLOCKS);
  assert.equal(b.deliver(decoded).applied, 2);
  const stored = b.get('x');
  assert.equal(stored?.deps, EMPTY_SHARD_CLOCKS);
  assert.equal(JSON.stringify([b.get('x'), b.get('y')]), wire);
  assert.equal(JSON.stringify([a.get('x'), a.get('y')]), wire);
  // Both still work as versions: the empty deps merges into new objects and stays empty.
  b.write('x', { deleted: false, value: 2 }, stored?.deps ?? {});
  assert.equal(Object.keys(EMPTY_SHARD_CLOCKS).length, 0);
  b.checkInvariants();
});

test('newVersion keeps the field order of a write: key, deleted, dot, stamp, deps, past, value', () => {
  const dot = { node: A, counter: 1 };
  const stamp = { epoch: 1 as Epoch, lamport: 1, node: A };
  const past = { '0': { [SHARD]: { [B]: 2 } } };
  const keys = (v: Version) => Object.keys(v).join(',');
  assert.equal(keys(newVersion('k', { deleted: false, value: 1 }, dot, stamp, {}, {})), 'key,deleted,dot,stamp,deps,value');
  assert.equal(keys(newVersion('k', { deleted: true }, dot, stamp, {}, {})), 'key,deleted,dot,stamp,deps');
  assert.equal(keys(newVersion('k', { deleted: false, value: 1 }, dot, stamp, {}, past)), 'key,deleted,dot,stamp,deps,past,value');
  assert.equal(keys(newVersion('k', { deleted: true }, dot, stamp, {}, past)), 'key,deleted,dot,stamp,deps,past');
  // A value of undefined is still a field, as it was when it was set after the literal.
  assert.ok(Object.hasOwn(newVersion('k', { deleted: false, value: undefined }, dot, stamp, {}, {}), 'value'));
});

test('the stored form gives back every version whole: writes, tombstones, base versions, stamps without an epoch, a dot of another node', () => {
  const table = new Interner(8);
  const a = new Replica({ self: A, shard: SHARD, pendingMax: 10 });
  const write = a.write('k', { deleted: false, value: { v: [1, null] } }, { [SHARD]: { [B]: 1 } });
  const tombstone = a.write('t', { deleted: true }, {}, { '0': { [SHARD]: { [B]: 3 } } });
  const base = asBase(write, SHARD);
  const baseTombstone = asBase(tombstone, SHARD);
  const noEpoch: Version = { key: 'n', deleted: false, dot: { node: B, counter: 4 }, stamp: { lamport: 9, node: B }, deps: {}, value: null };
  const otherDot: Version = { key: 'o', deleted: false, dot: { node: A, counter: 2 }, stamp: { epoch: 0 as Epoch, lamport: 3, node: B }, deps: {}, value: 'x' };
  for (const version of [write, tombstone, base, baseTombstone, noEpoch, otherDot]) {
    for (const copy of [version, JSON.parse(JSON.stringify(version)) as Version]) {
      const stored = pack(copy, table);
      const back = unpack(copy.key, stored);
      assert.deepEqual(back, version);
      assert.equal(stored.deleted, version.deleted);
      assert.equal(storedHash(copy.key, stored), versionHash(version));
      // A write comes back with its fields in the order it was made with, so its JSON is the same.
      if (version.dot !== null) assert.equal(JSON.stringify(back), JSON.stringify(version));
    }
  }
  assert.equal(pack(base, table).deps, EMPTY_SHARD_CLOCKS);
  assert.equal(table.size, 2);
});

test('a replica holds one copy of each address its versions name', () => {
  const b = new Replica({ self: B, shard: SHARD, pendingMax: 10 });
  const decoded = JSON.parse(
    JSON.stringify([
      { key: 'p', deleted: false, dot: { node: A, counter: 1 }, stamp: { epoch: 0, lamport: 1, node: A }, deps: {}, value: 1 },
      { key: 'q', deleted: false, dot: { node: A, counter: 2 }, stamp: { epoch: 0, lamport: 2, node: A }, deps: {}, value: 2 },
    ]),
  ) as Version[];
  assert.equal(b.deliver(decoded).applied, 2);
  assert.equal((b as unknown as { addresses: Interner }).addresses.size, 1);
});
