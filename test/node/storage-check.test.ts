// The paired check of what crosses the disk: each commit stores the replica's store digest with its
// applied clock, and a load recomputes it from the versions it reads. A directory that does not hold
// what was committed (a row lost or changed, a clock row of another commit) is set aside loudly and
// the shard copied from peers; what was committed restores to the same state. The simulator's disk
// keeps the same contract.

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, test } from 'node:test';
import { SimDisk, SimStorage } from '../../harness/sim/disk.ts';
import { InvariantError } from '../../src/core/assert.ts';
import { digestOfVersions, Replica } from '../../src/core/replica.ts';
import type { Timers } from '../../src/node/env.ts';
import { SqliteStorage } from '../../src/node/sqlite-storage.ts';
import { checkCommitted, type ReplicaMeta } from '../../src/node/storage.ts';
import { nodeAddress } from '../../src/core/address.ts';
import { asEpoch, shardIdFor } from '../../src/core/shard-map.ts';
import { recordingLogger } from '../helpers/logger.ts';

const SELF = nodeAddress('10.10.0.2:8090');
const PEER = nodeAddress('10.10.0.3:8090');
const REPLICA = { epoch: asEpoch(1), shard: shardIdFor(0) };
const ROOT = mkdtempSync(join(tmpdir(), 'kvs-storage-check-'));
after(() => rmSync(ROOT, { recursive: true, force: true }));

let dirs = 0;
const freshDir = (): string => join(ROOT, `node-${++dirs}`);

function newReplica(lamport = 0): Replica {
  return new Replica({ self: SELF, shard: REPLICA.shard, epoch: REPLICA.epoch, pendingMax: 100, lamport });
}

/** Stages what changed in `replica`, as the runtime does after each change, and commits it. */
async function persist(storage: SqliteStorage | SimStorage, replica: Replica): Promise<void> {
  storage.stage(replica.takeDirty(), replica.applied, replica.lamport, replica.base, replica.collected);
  await storage.flush();
}

/** A directory holding a replica of a few writes, a replacement and a collected tombstone, closed. */
async function committedDirectory(): Promise<{ dir: string; replica: Replica; firstCommit: ReplicaMeta }> {
  const dir = freshDir();
  const { storage } = SqliteStorage.open(dir, SELF, recordingLogger().log);
  storage.resetReplica(REPLICA);
  const replica = newReplica();
  for (const key of ['a', 'b', 'c', 'd']) replica.write(key, { deleted: false, value: { key } }, {});
  await persist(storage, replica);
  const firstCommit: ReplicaMeta = { ...REPLICA, applied: { ...replica.applied }, lamport: replica.lamport, base: {}, digest: replica.storeDigest() };
  replica.write('b', { deleted: false, value: 'b2' }, {});
  replica.write('c', { deleted: true }, {});
  replica.deliver([{ key: 'e', deleted: false, value: 'from a peer', dot: { node: PEER, counter: 1 }, stamp: { epoch: asEpoch(1), lamport: 1, node: PEER }, deps: {} }]);
  await persist(storage, replica);
  assert.equal(replica.collectTombstones({ ...replica.applied }), 1);
  await persist(storage, replica);
  storage.close();
  // a, b (replaced), d, and e from a peer: c's tombstone was collected.
  assert.equal(replica.size, 4);
  return { dir, replica, firstCommit };
}

function tamper(dir: string, sql: string, ...params: string[]): void {
  const db = new DatabaseSync(join(dir, 'kvs.sqlite'));
  db.prepare(sql).run(...params);
  db.close();
}

function readMeta(dir: string): ReplicaMeta {
  const db = new DatabaseSync(join(dir, 'kvs.sqlite'));
  const row = db.prepare("SELECT value FROM meta WHERE name = 'replica'").get() as { value: string };
  db.close();
  return JSON.parse(row.value) as ReplicaMeta;
}

/** Opens `dir` again and asserts it was set aside as not holding what was committed. */
function assertSetAside(dir: string, what: RegExp): void {
  const { log, errors } = recordingLogger();
  const { storage, saved } = SqliteStorage.open(dir, SELF, log);
  storage.close();
  assert.equal(saved.replica, null, 'nothing of the mismatched directory is served');
  assert.equal(errors.length, 1, `one error logged: ${errors.join('; ')}`);
  assert.match(errors[0] ?? '', /data directory unusable/);
  assert.match(errors[0] ?? '', what);
  const name = dir.split('/').at(-1) ?? '';
  assert.ok(readdirSync(ROOT).some((entry) => entry.startsWith(`${name}.corrupt-`)), 'the directory is kept aside for a person to look at');
}

test('what was committed loads, checked, and restores to the same replica state', async () => {
  const { dir, replica } = await committedDirectory();
  const meta = readMeta(dir);
  assert.deepEqual(meta.digest, replica.storeDigest(), 'the digest of the last commit is stored with its clock');
  const { log, errors } = recordingLogger();
  const { storage, saved } = SqliteStorage.open(dir, SELF, log);
  storage.close();
  assert.deepEqual(errors, []);
  assert.ok(saved.replica);
  const restored = newReplica(saved.replica.lamport);
  restored.mergeState(saved.replica.versions, saved.replica.applied, saved.replica.base);
  restored.checkInvariants();
  assert.deepEqual(restored.storeDigest(), replica.storeDigest());
  assert.deepEqual(restored.digests(), replica.digests());
  assert.deepEqual(restored.applied, replica.applied);
  assert.deepEqual(
    [...restored.allVersions()].sort((x, y) => (x.key < y.key ? -1 : 1)),
    [...replica.allVersions()].sort((x, y) => (x.key < y.key ? -1 : 1)),
  );
});

test('a lost row is noticed: the directory is set aside', async () => {
  const { dir } = await committedDirectory();
  tamper(dir, 'DELETE FROM versions WHERE key = ?', 'a');
  assertSetAside(dir, /3 versions with digest \w+ loaded, 4 with digest \w+ committed/);
});

test('a row left behind (a collected tombstone back) is noticed', async () => {
  const { dir } = await committedDirectory();
  const tombstone = { key: 'c', deleted: true, dot: { node: SELF, counter: 9 }, stamp: { epoch: asEpoch(1), lamport: 6, node: SELF }, deps: {} };
  tamper(dir, 'INSERT INTO versions (key, data) VALUES (?, ?)', 'c', JSON.stringify(tombstone));
  assertSetAside(dir, /5 versions .* loaded, 4 .* committed/);
});

test('a row replaced by another version of its key is noticed', async () => {
  const { dir } = await committedDirectory();
  const older = { key: 'b', deleted: false, value: { key: 'b' }, dot: { node: SELF, counter: 2 }, stamp: { epoch: asEpoch(1), lamport: 2, node: SELF }, deps: {} };
  tamper(dir, 'UPDATE versions SET data = ? WHERE key = ?', JSON.stringify(older), 'b');
  assertSetAside(dir, /not what was committed/);
});

test("a clock row of another commit than the versions (a torn or half-restored directory) is noticed", async () => {
  const { dir, firstCommit } = await committedDirectory();
  // The row of the first commit (four versions too, other ones) with the versions of the last.
  tamper(dir, "UPDATE meta SET value = ? WHERE name = 'replica'", JSON.stringify(firstCommit));
  assertSetAside(dir, /not what was committed/);
});

test('a malformed digest, or a version stamped above the committed Lamport time, is noticed', async () => {
  const first = await committedDirectory();
  tamper(first.dir, "UPDATE meta SET value = json_set(value, '$.digest', 'x') WHERE name = 'replica'");
  assertSetAside(first.dir, /digest committed with the replica is well-formed/);
  const second = await committedDirectory();
  tamper(second.dir, "UPDATE meta SET value = json_set(value, '$.lamport', 1) WHERE name = 'replica'");
  assertSetAside(second.dir, /stamped above the Lamport time committed with it/);
});

test('a directory of an older release (no digest) loads unchecked; its next commit carries one', async () => {
  const { dir, replica } = await committedDirectory();
  tamper(dir, "UPDATE meta SET value = json_remove(value, '$.digest') WHERE name = 'replica'");
  const { log, errors } = recordingLogger();
  const { storage, saved } = SqliteStorage.open(dir, SELF, log);
  assert.deepEqual(errors, []);
  assert.equal(saved.replica?.versions.length, replica.size);
  // The node restores from exactly what it loaded: from now on the disk holds what its replica counts.
  const restored = newReplica(saved.replica?.lamport);
  restored.mergeState(saved.replica?.versions ?? [], saved.replica?.applied ?? {});
  restored.takeDirty();
  restored.write('f', { deleted: false, value: 1 }, {});
  await persist(storage, restored);
  storage.close();
  assert.deepEqual(readMeta(dir).digest, restored.storeDigest());
});

test('a full copy of the same shard keeps the old rows, commits no digest for them, and loads without a false alarm', async () => {
  const dir = freshDir();
  const { storage } = SqliteStorage.open(dir, SELF, recordingLogger().log);
  storage.resetReplica(REPLICA);
  const old = newReplica();
  old.write('only-old', { deleted: false, value: 1 }, {});
  await persist(storage, old);
  // The node copies its shard afresh into a new replica of the same epoch and shard.
  storage.resetReplica(REPLICA);
  const copy = newReplica(old.lamport);
  copy.write('only-new', { deleted: false, value: 2 }, {});
  await persist(storage, copy);
  storage.close();
  assert.equal(readMeta(dir).digest, undefined, 'the disk holds rows the new replica does not count');
  const { log, errors } = recordingLogger();
  const again = SqliteStorage.open(dir, SELF, log);
  again.storage.close();
  assert.deepEqual(errors, []);
  assert.deepEqual(again.saved.replica?.versions.map((v) => v.key).sort(), ['only-new', 'only-old']);
});

test('a fresh replica whose disk was just emptied keeps its digest through a same-shard copy that wrote nothing', async () => {
  const dir = freshDir();
  const { storage } = SqliteStorage.open(dir, SELF, recordingLogger().log);
  storage.resetReplica(REPLICA);
  storage.resetReplica(REPLICA);
  const replica = newReplica();
  replica.write('k', { deleted: false, value: 1 }, {});
  await persist(storage, replica);
  storage.close();
  assert.deepEqual(readMeta(dir).digest, replica.storeDigest());
  const again = SqliteStorage.open(dir, SELF, recordingLogger().log);
  again.storage.close();
  assert.equal(again.saved.replica?.versions.length, 1);
});

test('checkCommitted alone: equal digests pass, any difference throws an InvariantError', () => {
  const replica = newReplica();
  replica.write('x', { deleted: false, value: 1 }, {});
  replica.write('y', { deleted: true }, {});
  const versions = [...replica.allVersions()];
  const meta: ReplicaMeta = { ...REPLICA, applied: { ...replica.applied }, lamport: replica.lamport, digest: replica.storeDigest() };
  checkCommitted(meta, versions);
  checkCommitted({ ...meta, digest: undefined }, []);
  assert.deepEqual(digestOfVersions(versions), replica.storeDigest());
  assert.throws(() => checkCommitted(meta, versions.slice(1)), InvariantError);
  assert.throws(() => checkCommitted(meta, versions.map((v) => ({ ...v, deleted: !v.deleted }))), InvariantError);
});

// ------------------------------------------------------------------ the simulator's disk

function simTimers(): Timers & { run(): void } {
  const queue: (() => void)[] = [];
  return {
    now: () => 0,
    setTimeout: (callback) => queue.push(callback),
    clearTimeout: () => undefined,
    setInterval: () => undefined,
    clearInterval: () => undefined,
    run: () => {
      while (queue.length > 0) queue.shift()?.();
    },
  };
}

test('the simulated disk keeps the contract: what was committed loads; a tampered disk throws on load', async () => {
  const disk = new SimDisk();
  const timers = simTimers();
  const storage = new SimStorage(disk, timers, () => 1);
  storage.resetReplica(REPLICA);
  const replica = newReplica();
  replica.write('a', { deleted: false, value: 1 }, {});
  replica.write('b', { deleted: false, value: 2 }, {});
  storage.stage(replica.takeDirty(), replica.applied, replica.lamport, replica.base, replica.collected);
  const flushed = storage.flush();
  timers.run();
  await flushed;
  assert.deepEqual(disk.replica?.digest, replica.storeDigest());
  const loaded = new SimStorage(disk, timers, () => 1).load();
  assert.equal(loaded.replica?.versions.length, 2);
  disk.versions.delete('a');
  assert.throws(() => new SimStorage(disk, timers, () => 1).load(), /replica on disk is not what was committed/);
  assert.ok(!existsSync(join(ROOT, 'never-created')));
});
