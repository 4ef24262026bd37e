// Anti-entropy in the replica: partition digests find exactly the partitions where two replicas'
// stores differ, even when their clocks agree (a lost version the clocks cannot show), and one
// exchange of those partitions converges them. Tombstones are collected only once every member
// reflects them.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Replica } from '../../src/core/replica.ts';
import { differingPartitions, versionsByPartition } from '../../src/core/anti-entropy.ts';
import { partitionOfKey, shardIdFor } from '../../src/core/shard-map.ts';
import type { NodeAddress, Version } from '../../src/core/types.ts';
import { nodeAddress } from '../../src/core/address.ts';

const SHARD = shardIdFor(0);
const A = nodeAddress('10.10.0.2:8090');
const B = nodeAddress('10.10.0.3:8090');

function replica(self: NodeAddress): Replica {
  return new Replica({ self, shard: SHARD, pendingMax: 1000 });
}

function storeOf(r: Replica): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of r.allVersions()) out[v.key] = JSON.stringify([v.deleted, v.value, v.stamp]);
  return out;
}

/** One anti-entropy round between two replicas, as the runtime runs it over HTTP. */
function exchange(x: Replica, y: Replica): number[] {
  const differing = differingPartitions(y.digests(), x.digests());
  x.repair([...versionsByPartition(y, differing).values()].flat());
  y.repair([...versionsByPartition(x, differing).values()].flat());
  return differing;
}

test('equal stores have equal digests however their versions arrived', () => {
  const a = replica(A);
  const b = replica(B);
  const writes: Version[] = [];
  for (let i = 0; i < 50; i++) writes.push(a.write(`k${i % 17}`, { deleted: false, value: i }, {}));
  b.mergeState([...a.allVersions()], a.applied);
  assert.deepEqual(b.digests(), a.digests());
  assert.deepEqual(differingPartitions(b.digests(), a.digests()), []);
  assert.equal(writes.length, 50);
});

test('digests find versions the clocks cannot show, and one exchange converges both replicas', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ key: fc.string({ minLength: 1, maxLength: 6 }), at: fc.constantFrom(A, B), del: fc.boolean(), lose: fc.boolean() }), {
        minLength: 1,
        maxLength: 60,
      }),
      (ops) => {
        const a = replica(A);
        const b = replica(B);
        let lost = 0;
        for (const op of ops) {
          const writer = op.at === A ? a : b;
          const other = op.at === A ? b : a;
          const version = writer.write(op.key, op.del ? { deleted: true } : { deleted: false, value: op.key.length }, {});
          if (op.lose) {
            // The push is lost, but the other replica's clock is advanced anyway (as after a sync
            // that raced a crash): clocks agree, stores do not.
            other.mergeState([], writer.applied);
            lost++;
          } else {
            other.deliver([version]);
          }
        }
        const before = new Set(differingPartitions(b.digests(), a.digests()));
        // Every key whose versions differ lies in a partition the digests flag.
        const sa = storeOf(a);
        const sb = storeOf(b);
        for (const key of new Set([...Object.keys(sa), ...Object.keys(sb)])) {
          if (sa[key] !== sb[key]) assert.ok(before.has(partitionOfKey(key)), `key ${key} differs but its partition is not flagged`);
        }
        exchange(a, b);
        assert.deepEqual(storeOf(a), storeOf(b));
        assert.deepEqual(a.digests(), b.digests());
        assert.deepEqual(exchange(a, b), [], 'a second round finds nothing');
        return lost >= 0;
      },
    ),
    { numRuns: 300 },
  );
});

test('repair keeps the clock and the version order: an older version never replaces a newer one', () => {
  const a = replica(A);
  const b = replica(B);
  const old = a.write('k', { deleted: false, value: 'old' }, {});
  b.deliver([old]);
  const newer = b.write('k', { deleted: false, value: 'new' }, {});
  const appliedBefore = { ...b.applied };
  assert.equal(b.repair([old]), 0);
  assert.equal(b.get('k')?.value, 'new');
  assert.deepEqual(b.applied, appliedBefore);
  assert.equal(a.repair([newer]), 1);
  assert.equal(a.get('k')?.value, 'new');
});

test('a tombstone is collected only when every member reflects it, and the removal is reported', () => {
  const a = replica(A);
  const put = a.write('gone', { deleted: false, value: 1 }, {});
  const del = a.write('gone', { deleted: true }, {});
  a.takeDirty();
  // b has only the put: the tombstone must stay, or anti-entropy would bring the value back.
  assert.equal(a.collectTombstones({ [A]: (put.dot?.counter ?? 0) }), 0);
  assert.equal(a.get('gone')?.deleted, true);
  // Everyone has the delete: collected, and the key is reported removed for the disk.
  assert.equal(a.collectTombstones({ [A]: del.dot?.counter ?? 0 }), 1);
  assert.equal(a.get('gone'), undefined);
  const taken = a.takeDirty();
  assert.deepEqual({ versions: taken.versions, removed: taken.removed }, { versions: [], removed: ['gone'] });
  // The store digest handed to the disk with the change is that of an empty store again.
  assert.deepEqual(taken.digest, { count: 0, sum: 0 });
  // The digest is back to that of an empty partition.
  assert.deepEqual(a.digests(), replica(B).digests());
});
