// What the simulator found about versions that arrive late, pinned down in the core: the epoch
// orders versions before the Lamport stamp, and a collected tombstone keeps older versions (and
// itself) from coming back through anti-entropy, replication or a late transfer.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { asBase, Replica } from '../../src/core/replica.ts';
import { supersedes } from '../../src/core/version-order.ts';
import type { Version } from '../../src/core/types.ts';
import { nodeAddress } from '../../src/core/address.ts';
import { asEpoch, asShardId, shardIdFor } from '../../src/core/shard-map.ts';

const A = nodeAddress('10.10.0.2:8090');
const B = nodeAddress('10.10.0.3:8090');

test('a version of a later epoch wins over an old-epoch one whatever their Lamport stamps', () => {
  const old: Version = { key: 'k', deleted: true, dot: null, stamp: { epoch: asEpoch(1), lamport: 900, node: B }, deps: {} };
  const newer: Version = { key: 'k', deleted: false, value: 'v', dot: { node: A, counter: 1 }, stamp: { epoch: asEpoch(2), lamport: 3, node: A }, deps: {} };
  assert.equal(supersedes(old, newer), false);
  assert.equal(supersedes(newer, old), true);
  // Without an epoch (data from before epochs were stamped) the epoch counts as 0.
  const { epoch: _drop, ...unstamped } = old.stamp;
  assert.equal(supersedes({ ...old, stamp: unstamped }, newer), false);
});

test('after a tombstone is collected, an older version of the key arriving late is refused, a newer one taken', () => {
  const a = new Replica({ self: A, shard: shardIdFor(0), pendingMax: 10, epoch: asEpoch(2) });
  const put = a.write('k', { deleted: false, value: 'old' }, {});
  a.write('k', { deleted: true }, {});
  assert.equal(a.collectTombstones({ ...a.applied }), 1);
  assert.equal(a.get('k'), undefined);
  // The late copy of the old value (a node that missed a reshard hands it over): refused.
  assert.equal(a.repair([{ ...put, dot: null, deps: {} }]), 0);
  assert.equal(a.get('k'), undefined);
  // The tombstone itself, from a peer that has not collected it yet: not taken back.
  assert.equal(a.repair([{ key: 'k', deleted: true, dot: { node: A, counter: 2 }, stamp: { epoch: asEpoch(2), lamport: 2, node: A }, deps: {} }]), 0);
  assert.equal(a.size, 0);
  // A write made after the delete is news: taken.
  assert.equal(a.repair([{ key: 'k', deleted: false, value: 'new', dot: { node: B, counter: 1 }, stamp: { epoch: asEpoch(2), lamport: 5, node: B }, deps: {} }]), 1);
  assert.equal(a.get('k')?.value, 'new');
});

test('a write concurrent with a delete, arriving after the tombstone was collected, is not stored', () => {
  // B deletes k; A wrote k concurrently (a lower stamp) but its push reaches B only after B collected
  // the tombstone (collection waits for the tombstone to be everywhere, not for concurrent writes).
  const a = new Replica({ self: A, shard: shardIdFor(0), pendingMax: 10, epoch: asEpoch(1) });
  const b = new Replica({ self: B, shard: shardIdFor(0), pendingMax: 10, epoch: asEpoch(1) });
  const seed = b.write('k', { deleted: false, value: 'first' }, {});
  a.deliver([seed]);
  const concurrent = a.write('k', { deleted: false, value: 'concurrent' }, {});
  const del = b.write('k', { deleted: true }, {});
  assert.ok(supersedes(del, concurrent), 'the delete wins over the concurrent write');
  a.deliver([del]);
  assert.equal(a.get('k')?.deleted, true);
  // Everyone reflects the delete: B collects it, then the concurrent write arrives.
  assert.equal(b.collectTombstones({ [B]: del.dot?.counter as number }), 1);
  assert.equal(b.deliver([concurrent]).applied, 1, 'applied: the clock moves on');
  assert.equal(b.get('k'), undefined, 'but the key stays deleted, as at A');
  assert.deepEqual(b.covers({ [A]: 1 }), true);
});

test('a copy from a peer that collected a tombstone carries its Lamport clock: the next write still wins over the delete', () => {
  const a = new Replica({ self: A, shard: shardIdFor(0), pendingMax: 10, epoch: asEpoch(1) });
  a.write('k', { deleted: false, value: 'v' }, {});
  const del = a.write('k', { deleted: true }, {});
  assert.equal(a.collectTombstones({ ...a.applied }), 1);
  // B copies A (a new member): no version of k comes along, only A's clock and Lamport time.
  const b = new Replica({ self: B, shard: shardIdFor(0), pendingMax: 10, epoch: asEpoch(1) });
  b.mergeState(a.versionsSince({}, { base: true }), { ...a.applied }, undefined, a.lamport);
  const put = b.write('k', { deleted: false, value: 'after the delete' }, { s0: { ...a.applied } });
  assert.ok(supersedes(put, del), 'a write that causally follows the delete wins over it on replicas that still hold it');
});

test('a late base version whose write the base already reflects is dropped, with no graveyard (after a restart)', () => {
  // The old epoch: A wrote k, then deleted it. The reshard carried only the tombstone, which the new
  // epoch's replica later collected; then it restarted (its graveyard is gone, its base clocks are not).
  const old = new Replica({ self: A, shard: shardIdFor(0), pendingMax: 10, epoch: asEpoch(1) });
  const put = old.write('k', { deleted: false, value: 'old' }, {});
  const base = { '1': { s0: { ...old.applied } } };
  const restarted = new Replica({ self: B, shard: asShardId('t0'), pendingMax: 10, epoch: asEpoch(2) });
  restarted.mergeState([], {}, base);
  // A node that missed the reshard hands its copy of the old write over, late.
  const late = asBase(put, shardIdFor(0));
  assert.deepEqual(late.origin, { epoch: asEpoch(1), shard: 's0', node: A, counter: 1 });
  assert.equal(restarted.repair([late]), 0, 'old news: not stored');
  assert.equal(restarted.get('k'), undefined);
  // A base version the base does not reflect yet is taken.
  const newer = old.write('j', { deleted: false, value: 'unseen' }, {});
  assert.equal(restarted.repair([asBase(newer, shardIdFor(0))]), 1);
});

test('a pull from a peer that collected a tombstone brings the tombstone to a replica still holding the older version', () => {
  // B holds k; A deletes it and collects the tombstone without counting B (a member it did not know
  // of yet). B then pulls from A and takes A's clock: it must not keep serving the old value.
  const a = new Replica({ self: A, shard: shardIdFor(0), pendingMax: 10, epoch: asEpoch(1) });
  const b = new Replica({ self: B, shard: shardIdFor(0), pendingMax: 10, epoch: asEpoch(1) });
  const put = a.write('k', { deleted: false, value: 'old' }, {});
  b.deliver([put]);
  a.write('k', { deleted: true }, {});
  assert.equal(a.collectTombstones({ ...a.applied }), 1);
  b.mergeState(a.versionsSince(b.applied, { base: false, collected: true }), { ...a.applied }, undefined, a.lamport);
  assert.equal(b.get('k')?.deleted, true, 'the delete reached B with the clock that claims it');
  // A full copy into an empty replica needs no collected tombstones.
  assert.deepEqual(a.versionsSince({}, { base: true, collected: false }), []);
});
