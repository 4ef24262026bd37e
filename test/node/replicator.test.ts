// The replicator's pace, on a fake clock and a fake transport: the first write after a quiet spell
// goes at once; the writes that arrive while a batch is out, or within the pace of the last
// request, go together in the next request; nothing is lost or reordered; without timers there is
// no pacing; while batches carry several versions, the pace is the longer busy one. Hints for a
// peer that is paused while a batch waits for its pace are kept.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Epoch, NodeAddress, ShardId, Version } from '../../src/core/types.ts';
import { JsonText, type PeerTransport, type Timers } from '../../src/node/env.ts';
import type { PeerReply } from '../../src/node/peer-client.ts';
import { Replicator, type Hint } from '../../src/node/replicator.ts';

const PEER = '10.0.0.2:8090' as NodeAddress;
const SHARD = 's0' as ShardId;
const EPOCH = 1 as Epoch;

/** A clock that moves only when told, with its timers. */
class FakeTimers implements Timers {
  ms = 0;
  private timers: { at: number; callback: () => void; id: number }[] = [];
  private ids = 0;
  now(): number {
    return this.ms;
  }
  setTimeout(callback: () => void, ms: number): unknown {
    const id = ++this.ids;
    this.timers.push({ at: this.ms + ms, callback, id });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((timer) => timer.id !== handle);
  }
  setInterval(): unknown {
    throw new Error('not used');
  }
  clearInterval(): void {}
  async advance(ms: number): Promise<void> {
    this.ms += ms;
    for (;;) {
      const due = this.timers.filter((timer) => timer.at <= this.ms).sort((a, b) => a.at - b.at)[0];
      if (due === undefined) break;
      this.timers = this.timers.filter((timer) => timer !== due);
      due.callback();
      await settle();
    }
    await settle();
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Requests held until answered by the test. */
class HeldTransport implements PeerTransport {
  sent: { keys: string[]; answer: (reply: PeerReply) => void }[] = [];
  call(_peer: NodeAddress, _method: string, _path: string, body: unknown): Promise<PeerReply> {
    const versions = (JSON.parse((body as JsonText).text) as { versions: Version[] }).versions;
    return new Promise((resolve) => this.sent.push({ keys: versions.map((v) => v.key), answer: resolve }));
  }
  async close(): Promise<void> {}
}

function version(key: string): Version {
  return { key, value: 1, deleted: false, dot: null, stamp: { lamport: 1, node: 'n' }, deps: {} } as unknown as Version;
}

function replicator(transport: PeerTransport, timers: Timers | undefined, paceMs: number, hints: Hint[] = [], busyPaceMs?: number): Replicator {
  const noop = () => undefined;
  const log = { debug: noop, info: noop, warn: noop, error: noop } as never;
  return new Replicator(
    { self: '10.0.0.1:8090' as NodeAddress, batchMax: 100, batchBytesMax: 1 << 20, queueMax: 1000, queueBytesMax: 1 << 24, timeoutMs: 1000, paceMs, ...(busyPaceMs === undefined ? {} : { busyPaceMs }) },
    transport,
    log,
    {
      onUnreachable: noop,
      isUp: () => true,
      hintLog: { add: (_peer, list) => hints.push(...list), drop: noop },
      run: (_task, work) => void work(),
      ...(timers === undefined ? {} : { timers }),
    },
  );
}

const OK: PeerReply = { status: 200, body: { applied: 1 } };

test('paced: the first write goes at once, the next ones wait for the pace and go together', async () => {
  const timers = new FakeTimers();
  const transport = new HeldTransport();
  const rep = replicator(transport, timers, 4);
  rep.enqueue([PEER], EPOCH, SHARD, version('a'));
  await settle();
  assert.deepEqual(transport.sent.map((s) => s.keys), [['a']], 'after a quiet spell: at once');
  rep.enqueue([PEER], EPOCH, SHARD, version('b'));
  rep.enqueue([PEER], EPOCH, SHARD, version('c'));
  await timers.advance(1);
  transport.sent[0]!.answer(OK);
  await settle();
  assert.equal(transport.sent.length, 1, 'answered within the pace: the next batch waits');
  rep.enqueue([PEER], EPOCH, SHARD, version('d'));
  await timers.advance(2);
  assert.equal(transport.sent.length, 1);
  await timers.advance(1);
  assert.deepEqual(transport.sent.map((s) => s.keys), [['a'], ['b', 'c', 'd']], 'one request for what came meanwhile, in order');
  // Answered after the pace: the next write goes at once.
  await timers.advance(10);
  transport.sent[1]!.answer(OK);
  await settle();
  assert.equal(rep.liveQueued(PEER), 0);
  rep.enqueue([PEER], EPOCH, SHARD, version('e'));
  await settle();
  assert.deepEqual(transport.sent.at(-1)?.keys, ['e']);
  transport.sent.at(-1)!.answer(OK);
  await settle();
  assert.equal(rep.snapshot().sent, 5);
});

test('while a peer is written to steadily (its last batch carried several versions) the pace is the busy one; a lone write brings it back', async () => {
  const timers = new FakeTimers();
  const transport = new HeldTransport();
  const rep = replicator(transport, timers, 4, [], 10);
  rep.enqueue([PEER], EPOCH, SHARD, version('a'));
  rep.enqueue([PEER], EPOCH, SHARD, version('b'));
  await settle();
  transport.sent[0]!.answer(OK);
  await timers.advance(4);
  // The first batch carried one version: the usual pace.
  assert.deepEqual(transport.sent.map((s) => s.keys), [['a'], ['b']]);
  rep.enqueue([PEER], EPOCH, SHARD, version('c'));
  rep.enqueue([PEER], EPOCH, SHARD, version('d'));
  transport.sent[1]!.answer(OK);
  await timers.advance(4);
  assert.deepEqual(transport.sent.at(-1)?.keys, ['c', 'd']);
  // Two versions in that batch: the next waits the busy pace.
  rep.enqueue([PEER], EPOCH, SHARD, version('e'));
  transport.sent[2]!.answer(OK);
  await timers.advance(9);
  assert.equal(transport.sent.length, 3, 'within the busy pace: waits');
  await timers.advance(1);
  assert.deepEqual(transport.sent.at(-1)?.keys, ['e']);
  // A batch of one: back to the usual pace.
  rep.enqueue([PEER], EPOCH, SHARD, version('f'));
  transport.sent[3]!.answer(OK);
  await timers.advance(4);
  assert.deepEqual(transport.sent.at(-1)?.keys, ['f']);
  transport.sent[4]!.answer(OK);
  await settle();
  assert.equal(rep.snapshot().sent, 6);
});

test('without timers or with pace 0: sent at once, one request in flight', async () => {
  for (const timers of [undefined, new FakeTimers()]) {
    const transport = new HeldTransport();
    const rep = replicator(transport, timers, timers === undefined ? 4 : 0);
    rep.enqueue([PEER], EPOCH, SHARD, version('a'));
    rep.enqueue([PEER], EPOCH, SHARD, version('b'));
    await settle();
    assert.deepEqual(transport.sent.map((s) => s.keys), [['a']]);
    transport.sent[0]!.answer(OK);
    await settle();
    assert.deepEqual(transport.sent.map((s) => s.keys), [['a'], ['b']]);
    transport.sent[1]!.answer(OK);
    await settle();
    assert.equal(rep.snapshot().sent, 2);
  }
});

test('a peer paused while its batch waits for the pace keeps it as hints, sent in order on resume', async () => {
  const timers = new FakeTimers();
  const transport = new HeldTransport();
  const hints: Hint[] = [];
  const rep = replicator(transport, timers, 4, hints);
  rep.enqueue([PEER], EPOCH, SHARD, version('a'));
  await settle();
  transport.sent[0]!.answer(OK);
  await settle();
  rep.enqueue([PEER], EPOCH, SHARD, version('b'));
  rep.enqueue([PEER], EPOCH, SHARD, version('c'));
  rep.pause(PEER);
  await timers.advance(10);
  assert.equal(transport.sent.length, 1, 'nothing sent while paused');
  assert.deepEqual(hints.map((h) => h.version.key), ['b', 'c'], 'kept as hints');
  assert.deepEqual(rep.snapshot().hints, 2);
  rep.resume(PEER);
  await settle();
  assert.deepEqual(transport.sent.at(-1)?.keys, ['b', 'c']);
});
