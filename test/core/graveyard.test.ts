// The graveyard: collected tombstones remembered so a late version cannot bring a deleted key back.
// Entries collected without a member are kept (never forgotten for room, handed to the disk, and
// restored after a restart) until every member is heard from again; the rest are forgotten oldest
// first. Then the same through both disks (SQLite and the simulator's): what was kept is on disk
// with the commit that collected it, and comes back with the replica; a node started with a lower
// GRAVEYARD_MAX than its disk keeps says so.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { SimDisk, SimStorage } from '../../harness/sim/disk.ts';
import { nodeAddress } from '../../src/core/address.ts';
import { InvariantError } from '../../src/core/assert.ts';
import { Graveyard } from '../../src/core/graveyard.ts';
import { Replica } from '../../src/core/replica.ts';
import { asEpoch, initialShardMap, shardIdFor } from '../../src/core/shard-map.ts';
import type { Version } from '../../src/core/types.ts';
import { loadConfig } from '../../src/node/config.ts';
import type { Timers } from '../../src/node/env.ts';
import { KvsNode } from '../../src/node/node.ts';
import { SqliteStorage } from '../../src/node/sqlite-storage.ts';
import type { Storage } from '../../src/node/storage.ts';
import { recordingLogger } from '../helpers/logger.ts';

const SELF = nodeAddress('10.10.0.2:8090');
const PEER = nodeAddress('10.10.0.3:8090');
const REPLICA = { epoch: asEpoch(1), shard: shardIdFor(0) };
const ROOT = mkdtempSync(join(tmpdir(), 'kvs-graveyard-'));
after(() => rmSync(ROOT, { recursive: true, force: true }));

function tombstone(key: string, counter: number): Version {
  return { key, deleted: true, value: null, dot: { node: PEER, counter }, stamp: { epoch: asEpoch(1), lamport: counter, node: PEER }, deps: {} } as Version;
}

test('kept entries are never forgotten for room; the others go oldest first', () => {
  const graveyard = new Graveyard(3);
  graveyard.remember('a', tombstone('a', 1), true);
  graveyard.remember('b', tombstone('b', 2), false);
  graveyard.remember('c', tombstone('c', 3), false);
  assert.equal(graveyard.room, 2);
  graveyard.remember('d', tombstone('d', 4), false);
  assert.equal(graveyard.stampOf('b'), undefined, 'the oldest forgettable entry made room');
  assert.equal(graveyard.stampOf('a')?.lamport, 1, 'the kept entry, older still, stays');
  graveyard.remember('e', tombstone('e', 5), true);
  graveyard.remember('f', tombstone('f', 6), true);
  assert.equal(graveyard.room, 0);
  assert.deepEqual(['a', 'c', 'd', 'e', 'f'].map((k) => graveyard.stampOf(k)?.lamport ?? null), [1, null, null, 5, 6]);
  assert.throws(() => graveyard.remember('g', tombstone('g', 7), true), InvariantError, 'no kept entry beyond the bound');
  graveyard.check(10);
});

test('a later tombstone of a kept key stays kept; release makes every entry forgettable', () => {
  const graveyard = new Graveyard(10);
  graveyard.remember('a', tombstone('a', 1), true);
  graveyard.takeKeptChanges();
  graveyard.remember('a', tombstone('a', 4), false);
  assert.equal(graveyard.kept, 1);
  assert.deepEqual([...graveyard.takeKeptChanges()].map(([k, t]) => [k, t?.stamp.lamport ?? null]), [['a', 4]], 'the disk gets the newer tombstone');
  graveyard.remember('b', tombstone('b', 5), true);
  graveyard.release();
  assert.equal(graveyard.kept, 0);
  assert.equal(graveyard.room, 10);
  assert.deepEqual([...graveyard.takeKeptChanges()].sort(([x], [y]) => (x < y ? -1 : 1)), [['a', null], ['b', null]], 'the disk drops both');
  assert.equal(graveyard.stampOf('b')?.lamport, 5, 'released entries are still remembered');
  graveyard.check(10);
});

test('a replica collects without a member only into room it has, and hands what it keeps to the runtime', () => {
  const replica = new Replica({ self: SELF, shard: REPLICA.shard, epoch: REPLICA.epoch, pendingMax: 10, graveyardMax: 1 });
  replica.write('a', { deleted: true }, {});
  replica.write('b', { deleted: true }, {});
  replica.takeDirty();
  const everywhere = { ...replica.applied };
  assert.equal(replica.collectable(everywhere), 2);
  assert.throws(() => replica.collectTombstones(everywhere, { kept: true }), InvariantError, 'two do not fit in room for one: the graveyard refuses the second');
  const roomy = new Replica({ self: SELF, shard: REPLICA.shard, epoch: REPLICA.epoch, pendingMax: 10, graveyardMax: 5 });
  roomy.write('a', { deleted: true }, {});
  roomy.takeDirty();
  assert.equal(roomy.collectTombstones({ ...roomy.applied }, { kept: true }), 1);
  const changes = roomy.takeDirty();
  assert.deepEqual(changes.removed, ['a']);
  assert.deepEqual(changes.kept.map((t) => t.key), ['a'], 'the kept tombstone goes to disk with the removal');
  // A late version of the key, no newer than the tombstone, loses to it.
  const late: Version = { key: 'a', deleted: false, value: 'late', dot: { node: PEER, counter: 1 }, stamp: { epoch: REPLICA.epoch, lamport: 0, node: PEER }, deps: {} } as Version;
  roomy.repair([late]);
  assert.equal(roomy.get('a'), undefined);
});

/** Both disks: a kept tombstone is written with its collection, loaded with the replica, dropped when released. */
async function roundTrip(open: () => { storage: Storage & { resetReplica: Storage['resetReplica'] }; reopen: () => Storage }): Promise<void> {
  const { storage, reopen } = open();
  storage.resetReplica(REPLICA);
  const replica = new Replica({ self: SELF, shard: REPLICA.shard, epoch: REPLICA.epoch, pendingMax: 10 });
  replica.write('a', { deleted: true }, {});
  replica.write('b', { deleted: false, value: 1 }, {});
  const stage = async (): Promise<void> => {
    storage.stage(replica.takeDirty(), replica.applied, replica.lamport, replica.base, replica.collected);
    await storage.flush();
  };
  await stage();
  replica.collectTombstones({ ...replica.applied }, { kept: true });
  await stage();
  storage.close();
  const again = reopen();
  const saved = again.load().replica;
  assert.ok(saved);
  assert.deepEqual(saved.versions.map((v) => v.key), ['b']);
  assert.deepEqual(saved.graveyard?.map((t) => [t.key, t.deleted]), [['a', true]], 'the kept tombstone came back');
  // Released (every member heard from): no longer on disk.
  replica.graveyard.release();
  again.stage(replica.takeDirty(), replica.applied, replica.lamport, replica.base, replica.collected);
  await again.flush();
  again.close();
  assert.deepEqual(reopen().load().replica?.graveyard, []);
}

test('SQLite keeps what the graveyard keeps, across a restart', async () => {
  const dir = join(ROOT, 'sqlite');
  await roundTrip(() => ({
    storage: SqliteStorage.open(dir, SELF, recordingLogger().log).storage,
    reopen: () => SqliteStorage.open(dir, SELF, recordingLogger().log).storage,
  }));
});

test("the simulator's disk keeps it too", async () => {
  const disk = new SimDisk();
  const timers = { setTimeout: (fn: () => void) => queueMicrotask(fn) } as unknown as Timers;
  await roundTrip(() => ({ storage: new SimStorage(disk, timers, () => 0), reopen: () => new SimStorage(disk, timers, () => 0) }));
});

test('a node whose disk keeps more tombstones than GRAVEYARD_MAX allows says so at start', async () => {
  const disk = new SimDisk();
  const timers = { setTimeout: (fn: () => void) => queueMicrotask(fn) } as unknown as Timers;
  const storage = new SimStorage(disk, timers, () => 0);
  const map = initialShardMap([SELF, PEER], 1);
  storage.saveMap(map);
  storage.resetReplica({ epoch: map.epoch, shard: shardIdFor(0) });
  const replica = new Replica({ self: SELF, shard: shardIdFor(0), epoch: map.epoch, pendingMax: 10 });
  for (const key of ['a', 'b', 'c']) replica.write(key, { deleted: true }, {});
  replica.collectTombstones({ ...replica.applied }, { kept: true });
  storage.stage(replica.takeDirty(), replica.applied, replica.lamport, replica.base, replica.collected);
  await storage.flush();
  const reopened = new SimStorage(disk, timers, () => 0);
  const { log, errors } = recordingLogger();
  const config = loadConfig({ SOCKET_ADDRESS: SELF, VIEW: `${SELF},${PEER}`, GRAVEYARD_MAX: '2' });
  const node = new KvsNode(config, log, { storage: { storage: reopened, saved: reopened.load() }, transport: { call: () => Promise.reject(new Error('no network')), close: async () => {} } });
  assert.deepEqual(errors.filter((e) => e.startsWith('GRAVEYARD_MAX is below')).length, 1, `one error: ${errors.join('; ')}`);
  assert.equal((node.status().tombstones as { kept: number }).kept, 2, 'GRAVEYARD_MAX of them restored');
  await node.close();
});
