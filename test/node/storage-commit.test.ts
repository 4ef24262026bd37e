// Grouped commits with a writer off the event loop (GroupCommitStorage with an asynchronous
// writeBatch, as SqliteStorage's worker thread): while the writer holds as many batches as it may,
// what is staged meanwhile gathers into the next, handed over once one lands; a flush waits for
// everything staged before it, and for what was handed to the writer outside a batch; a failed
// commit stops the storage (every later write is refused); a batch of a replaced replica sets no clock.
// Then the same through the real worker: what was flushed or closed is on disk for the next open,
// and a writer that is gone refuses writes instead of leaving them waiting.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { nodeAddress } from '../../src/core/address.ts';
import { Replica } from '../../src/core/replica.ts';
import { asEpoch, initialShardMap, shardIdFor } from '../../src/core/shard-map.ts';
import type { Epoch, ShardId, Version } from '../../src/core/types.ts';
import { SqliteStorage } from '../../src/node/sqlite-storage.ts';
import { GroupCommitStorage, type CommitBatch } from '../../src/node/storage.ts';
import { recordingLogger } from '../helpers/logger.ts';

const SELF = nodeAddress('10.10.0.2:8090');
const PEER = nodeAddress('10.10.0.3:8090');
const REPLICA = { epoch: asEpoch(1), shard: shardIdFor(0) };
const OTHER = { epoch: asEpoch(2), shard: shardIdFor(0) };
const ROOT = mkdtempSync(join(tmpdir(), 'kvs-storage-commit-'));
after(() => rmSync(ROOT, { recursive: true, force: true }));
let dirs = 0;
const freshDir = (): string => join(ROOT, `node-${++dirs}`);

/** A writer whose batches land or fail when the test says; commits run when the test says. */
class ManualStorage extends GroupCommitStorage {
  protected override readonly maxInFlight: number;
  constructor(maxInFlight = 1) {
    super();
    this.maxInFlight = maxInFlight;
  }
  readonly written: { batch: CommitBatch; idle: boolean; land: () => void; fail: (error: Error) => void }[] = [];
  readonly resets: ({ epoch: Epoch; shard: ShardId } | null)[] = [];
  readonly failures: unknown[] = [];
  private due: (() => void) | null = null;

  protected writeBatch(batch: CommitBatch, writer: { idle: boolean }): Promise<void> {
    return new Promise((resolve, reject) => this.written.push({ batch, idle: writer.idle, land: resolve, fail: reject }));
  }
  protected writeReset(replica: { epoch: Epoch; shard: ShardId } | null): void {
    this.resets.push(replica);
    this.commitBarrier();
  }
  protected scheduleCommit(commit: () => void): void {
    this.due = commit;
  }
  protected commitFailed(error: Error): void {
    this.failures.push(error);
  }
  /** Runs the scheduled commit, if any. */
  run(): void {
    const due = this.due;
    this.due = null;
    due?.();
  }
  get scheduledNow(): boolean {
    return this.due !== null;
  }
}

function write(replica: Replica, storage: GroupCommitStorage, key: string, value: unknown): void {
  replica.write(key, { deleted: false, value }, {});
  storage.stage(replica.takeDirty(), replica.applied, replica.lamport, replica.base, replica.collected);
}

const keysOf = (batch: CommitBatch): string[] => [...batch.versions.keys()].sort();
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Tracks whether a promise has settled, and how. */
function watch(promise: Promise<void>): { state: () => 'pending' | 'resolved' | 'rejected' } {
  let state: 'pending' | 'resolved' | 'rejected' = 'pending';
  promise.then(
    () => (state = 'resolved'),
    () => (state = 'rejected'),
  );
  return { state: () => state };
}

function manual(): { storage: ManualStorage; replica: Replica } {
  const storage = new ManualStorage();
  storage.resetReplica(REPLICA);
  storage.run();
  const replica = new Replica({ self: SELF, shard: REPLICA.shard, epoch: REPLICA.epoch, pendingMax: 100 });
  return { storage, replica };
}

test('while a batch is in flight, what is staged meanwhile waits and goes in one next batch', async () => {
  const { storage, replica } = manual();
  storage.written.shift()?.land(); // the reset's barrier
  await settle();
  write(replica, storage, 'a', 1);
  const first = watch(storage.flush());
  storage.run();
  assert.equal(storage.written.length, 1);
  assert.deepEqual(keysOf(storage.written[0]!.batch), ['a']);
  write(replica, storage, 'b', 2);
  const second = watch(storage.flush());
  write(replica, storage, 'c', 3);
  storage.run();
  assert.equal(storage.written.length, 1, 'nothing more is handed to the writer while a batch is in flight');
  const appliedAtFirst = storage.written[0]!.batch.meta?.applied;
  storage.written[0]!.land();
  await settle();
  assert.equal(first.state(), 'resolved');
  assert.equal(second.state(), 'pending', 'b and c are not on disk yet');
  assert.deepEqual(storage.durableApplied(), appliedAtFirst);
  assert.ok(storage.scheduledNow, 'the landing schedules the next batch');
  storage.run();
  assert.equal(storage.written.length, 2);
  assert.deepEqual(keysOf(storage.written[1]!.batch), ['b', 'c'], 'one batch for everything staged meanwhile');
  assert.equal(storage.written[0]!.idle, true, 'the first was handed to an idle writer');
  storage.written[1]!.land();
  await settle();
  assert.equal(second.state(), 'resolved');
  assert.deepEqual(storage.durableApplied(), replica.applied);
});

test('a flush with nothing staged waits for the batch in flight', async () => {
  const { storage, replica } = manual();
  storage.written.shift()?.land();
  await settle();
  write(replica, storage, 'a', 1);
  storage.run();
  const empty = watch(storage.flush());
  storage.run();
  await settle();
  assert.equal(empty.state(), 'pending', 'a was staged before this flush and is not on disk yet');
  storage.written[0]!.land();
  await settle();
  storage.run();
  await settle();
  assert.equal(empty.state(), 'resolved');
  assert.equal(storage.written.length, 1, 'and no empty batch was written for it');
});

test('what is handed to the writer outside a batch (a reset) is waited for by the next flush', async () => {
  const storage = new ManualStorage();
  storage.resetReplica(REPLICA);
  const flushed = watch(storage.flush());
  storage.run();
  assert.deepEqual(storage.resets, [REPLICA]);
  assert.equal(storage.written.length, 1, 'a barrier batch follows the reset');
  assert.equal(storage.written[0]!.batch.meta, null);
  assert.equal(storage.written[0]!.idle, false, 'behind a reset the writer is not idle: nothing may overtake it');
  await settle();
  assert.equal(flushed.state(), 'pending');
  storage.written[0]!.land();
  await settle();
  assert.equal(flushed.state(), 'resolved');
});

test('a batch of a replica replaced while it was in flight sets no durable clock', async () => {
  const { storage, replica } = manual();
  storage.written.shift()?.land();
  await settle();
  write(replica, storage, 'a', 1);
  storage.run();
  storage.resetReplica(OTHER);
  assert.deepEqual(storage.durableApplied(), {});
  storage.written[0]!.land();
  await settle();
  assert.deepEqual(storage.durableApplied(), {}, 'the old replica\'s clock is not the new one\'s');
});

test('a failed commit rejects its waiters and every later flush: nothing more is written', async () => {
  const { storage, replica } = manual();
  storage.written.shift()?.land();
  await settle();
  write(replica, storage, 'a', 1);
  const first = watch(storage.flush());
  storage.run();
  write(replica, storage, 'b', 2);
  const second = watch(storage.flush());
  storage.run(); // in flight, at most one here: b waits
  storage.written[0]!.fail(new Error('disk full'));
  await settle();
  storage.run();
  await settle();
  assert.equal(first.state(), 'rejected');
  assert.equal(second.state(), 'rejected', 'what waited behind the failed commit is refused too');
  assert.equal(storage.failures.length, 1, 'said once');
  assert.equal(storage.commitStats().writerFailed, true);
  write(replica, storage, 'c', 3);
  const later = watch(storage.flush());
  storage.run();
  await settle();
  assert.equal(later.state(), 'rejected');
  assert.equal(storage.written.length, 1, 'nothing more handed to the writer');
  assert.deepEqual(storage.durableApplied(), {}, 'no clock of a failed commit counts as durable');
});

test('with several batches in flight, each lands in order, and a flush with nothing staged is answered with the last', async () => {
  const storage = new ManualStorage(3);
  storage.resetReplica(REPLICA);
  storage.run();
  storage.written.shift()?.land();
  await settle();
  const replica = new Replica({ self: SELF, shard: REPLICA.shard, epoch: REPLICA.epoch, pendingMax: 100 });
  const flushes: { state: () => string }[] = [];
  for (const key of ['a', 'b', 'c', 'd']) {
    write(replica, storage, key, key);
    flushes.push(watch(storage.flush()));
    storage.run();
  }
  assert.equal(storage.written.length, 3, 'three in flight; d gathers for the next');
  assert.deepEqual(storage.written.map((one) => one.idle), [true, false, false], 'only the first found the writer idle');
  const empty = watch(storage.flush());
  storage.run();
  storage.written[0]!.land();
  await settle();
  assert.deepEqual(flushes.map((f) => f.state()), ['resolved', 'pending', 'pending', 'pending']);
  storage.run();
  assert.equal(storage.written.length, 4, 'a slot freed: d is handed over');
  assert.deepEqual(keysOf(storage.written[3]!.batch), ['d']);
  // Nothing staged now: this flush waits for d, the last handed over, and no empty batch is written.
  const nothing = watch(storage.flush());
  storage.run();
  storage.written[1]!.land();
  storage.written[2]!.land();
  await settle();
  storage.run();
  assert.equal(empty.state(), 'pending', 'the flush came after d was staged, and d has not landed');
  assert.equal(nothing.state(), 'pending');
  storage.written[3]!.land();
  await settle();
  assert.deepEqual(flushes.map((f) => f.state()), ['resolved', 'resolved', 'resolved', 'resolved']);
  assert.equal(empty.state(), 'resolved');
  assert.equal(nothing.state(), 'resolved');
  storage.run();
  assert.equal(storage.written.length, 4);
  assert.deepEqual(storage.durableApplied(), replica.applied);
});

test('SqliteStorage: flushed writes, the map, and what close() hands over are on disk for the next open', async () => {
  const dir = freshDir();
  const { log, errors } = recordingLogger();
  const { storage } = SqliteStorage.open(dir, SELF, log);
  storage.resetReplica(REPLICA);
  const replica = new Replica({ self: SELF, shard: REPLICA.shard, epoch: REPLICA.epoch, pendingMax: 100 });
  const flushes: Promise<void>[] = [];
  for (let i = 0; i < 50; i++) {
    write(replica, storage, `k${i}`, i);
    if (i % 7 === 0) flushes.push(storage.flush());
  }
  await Promise.all(flushes);
  const map = initialShardMap([SELF, PEER], null);
  storage.saveMap(map);
  await storage.flush();
  // Staged and never flushed: close() writes it before it returns.
  write(replica, storage, 'last', 'at close');
  storage.close();
  assert.deepEqual(errors, []);
  const again = SqliteStorage.open(dir, SELF, log);
  again.storage.close();
  assert.deepEqual(errors, []);
  assert.deepEqual(again.saved.map, map);
  assert.equal(again.saved.replica?.versions.length, 51);
  assert.deepEqual(again.saved.replica?.applied, replica.applied);
  assert.equal(again.saved.replica?.versions.find((v) => v.key === 'last')?.value, 'at close');
});

test('SqliteStorage: a writer that is gone fails every write that waits, and every later one, loudly', async () => {
  const { log, errors } = recordingLogger();
  const { storage } = SqliteStorage.open(freshDir(), SELF, log);
  storage.resetReplica(REPLICA);
  await storage.flush();
  const replica = new Replica({ self: SELF, shard: REPLICA.shard, epoch: REPLICA.epoch, pendingMax: 100 });
  write(replica, storage, 'a', 1);
  await storage.flush();
  await (storage as unknown as { writer: { terminate(): Promise<number> } }).writer.terminate();
  write(replica, storage, 'b', 2);
  await assert.rejects(storage.flush(), /storage writer exited/);
  write(replica, storage, 'c', 3);
  await assert.rejects(storage.flush(), /storage writer exited/);
  assert.equal(errors.filter((message) => /storage commit failed/.test(message)).length, 1, errors.join('; '));
  assert.equal(storage.commitStats().writerFailed, true);
  storage.close();
});

test('SqliteStorage: a lone small group while the writer is idle is written on the node\'s thread; a larger one goes to the writer', async () => {
  const dir = freshDir();
  const { log, errors } = recordingLogger();
  const first = SqliteStorage.open(dir, SELF, log);
  first.storage.resetReplica(REPLICA);
  const replica = new Replica({ self: SELF, shard: REPLICA.shard, epoch: REPLICA.epoch, pendingMax: 100 });
  write(replica, first.storage, 'a', 1);
  await first.storage.flush();
  first.storage.close();
  // Opened again: loading starts no writer, and one version alone is written without one.
  const { storage, saved } = SqliteStorage.open(dir, SELF, log);
  const restored = new Replica({ self: SELF, shard: REPLICA.shard, epoch: REPLICA.epoch, pendingMax: 100, lamport: saved.replica?.lamport ?? 0 });
  restored.mergeState(saved.replica?.versions ?? [], saved.replica?.applied ?? {});
  restored.takeDirty();
  const writerOf = (): unknown => (storage as unknown as { writer: unknown }).writer;
  write(restored, storage, 'b', 2);
  await storage.flush();
  assert.equal(writerOf(), null, 'written on this thread: no writer started');
  restored.write('c', { deleted: false, value: 3 }, {});
  restored.write('d', { deleted: false, value: 4 }, {});
  storage.stage(restored.takeDirty(), restored.applied, restored.lamport, restored.base, restored.collected);
  await storage.flush();
  assert.notEqual(writerOf(), null, 'two versions: handed to the writer');
  storage.close();
  const again = SqliteStorage.open(dir, SELF, log);
  again.storage.close();
  assert.deepEqual(errors, []);
  assert.deepEqual(again.saved.replica?.versions.map((v) => v.key).sort(), ['a', 'b', 'c', 'd']);
  assert.deepEqual(again.saved.replica?.applied, restored.applied);
});
