// Protocol rules that the runtime used to decide itself, now decisions of the core: parked waits
// and their release, the forwarding failover rule, a late forwarded write, the coordinator's
// abandon rules, what a ping answer leads to, and the reshard timeout.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MESSAGES } from '../../src/core/api-messages.ts';
import { afterForwardAttempt, noMemberServed } from '../../src/core/forward-rules.ts';
import { NodeCore, type KvDecision, type KvRequest, type PingInfo } from '../../src/core/node-core.ts';
import { afterPrepare, afterSend } from '../../src/core/reshard-participant.ts';
import { asEpoch, initialShardMap, nextEpoch, shardIdFor } from '../../src/core/shard-map.ts';
import type { CausalMetadata, NodeAddress, ShardMap, Version } from '../../src/core/types.ts';
import { nodeAddress } from '../../src/core/address.ts';
import { drive } from '../helpers/core-driver.ts';

const A = nodeAddress('10.10.0.2:8090');
const B = nodeAddress('10.10.0.3:8090');
const C = nodeAddress('10.10.0.4:8090');

function replicated(self: NodeAddress, view = [A, B]): NodeCore {
  const core = new NodeCore({ self, pendingMax: 100, failuresToRemove: 3, holdDownMs: 3000, causalWaitMs: 1000, reshardWaitMs: 4000 }, view, initialShardMap(view, null));
  drive(core).ready();
  return core;
}

function request(core: NodeCore, method: 'GET' | 'PUT' | 'DELETE', key: string, body: Record<string, unknown>, deadlineMs: number | null = null): KvRequest {
  const parsed = core.parseKv(method, key, body, deadlineMs);
  assert.ok(parsed.ok, JSON.stringify(parsed));
  return parsed.request;
}

/** A write at `core`: its metadata and the version to replicate. */
function write(core: NodeCore, key: string, value: unknown, metadata: unknown = null): { metadata: CausalMetadata; version: Version } {
  const decision = drive(core).kv('PUT', key, { value, 'causal-metadata': metadata });
  assert.equal(decision.kind, 'reply');
  const reply = decision as Extract<KvDecision, { kind: 'reply' }>;
  assert.ok(reply.replicate);
  return { metadata: reply.reply.body['causal-metadata'] as CausalMetadata, version: JSON.parse(JSON.stringify(reply.replicate.version)) as Version };
}

test('a request lacking a write is parked, released in the step of the apply that brings it, and its body is not parsed again', () => {
  const a = replicated(A);
  const b = replicated(B);
  const { metadata, version } = write(a, 'k', 'v1');
  const parked = b.step({ kind: 'kv', request: request(b, 'GET', 'k', { 'causal-metadata': metadata }) }, 0);
  assert.equal(parked.out.kind, 'parked');
  assert.equal(b.parkedCount, 1);
  // A step that changes nothing a parked request waits on releases nothing, and says so.
  assert.equal(b.step({ kind: 'link', event: { type: 'answered', peer: A } }, 10).wake, null);
  // One that changes the view looks again, and tells what the parked request still lacks.
  const viewChanged = b.step({ kind: 'view-put', node: C }, 10);
  assert.deepEqual(viewChanged.wake?.released, []);
  assert.deepEqual(viewChanged.wake?.lacking, { [A]: 1 });
  const applied = b.step({ kind: 'replicate', epoch: b.map.epoch, shard: shardIdFor(0), versions: [version] }, 20);
  assert.equal(applied.out.ok, true);
  // The step that applied the write persists it and releases the request.
  assert.equal(applied.persist?.replica?.changes.versions.length, 1);
  const released = applied.wake?.released ?? [];
  assert.equal(released.length, 1);
  const decision = released[0]?.decision;
  assert.equal(decision?.kind, 'reply');
  assert.equal(decision?.kind === 'reply' ? decision.reply.body.value : undefined, 'v1');
  assert.equal(b.parkedCount, 0);
});

test('a parked request that still lacks another write is filed again under it, and released only when both arrived', () => {
  const a = replicated(A, [A, B, C]);
  const c = replicated(C, [A, B, C]);
  const b = replicated(B, [A, B, C]);
  const first = write(a, 'x', 1);
  // c applies a's write, then writes after it.
  assert.equal(drive(c).onReplicate(asEpoch(0), shardIdFor(0), [first.version]).ok, true);
  const second = write(c, 'y', 2, first.metadata);
  const parked = b.step({ kind: 'kv', request: request(b, 'GET', 'y', { 'causal-metadata': second.metadata }) }, 0);
  assert.equal(parked.out.kind, 'parked');
  // Buffered: it depends on a's write, so the clock does not move and nothing is looked at again.
  const buffered = b.step({ kind: 'replicate', epoch: asEpoch(0), shard: shardIdFor(0), versions: [second.version] }, 1);
  assert.equal(buffered.out.ok, true);
  assert.equal(buffered.wake, null);
  const both = b.step({ kind: 'replicate', epoch: asEpoch(0), shard: shardIdFor(0), versions: [first.version] }, 2);
  const released = both.wake?.released ?? [];
  assert.equal(released.length, 1);
  const decision = released[0]?.decision;
  assert.equal(decision?.kind === 'reply' ? decision.reply.body.value : undefined, 2);
});

test('a parked request gets its 503 at its deadline, not before; a released one has no deadline left', () => {
  const a = replicated(A);
  const b = replicated(B);
  const { metadata } = write(a, 'k', 'v1');
  const parked = b.step({ kind: 'kv', request: request(b, 'GET', 'k', { 'causal-metadata': metadata }) }, 100).out;
  assert.ok(parked.kind === 'parked');
  assert.equal(parked.deadlineMs, 1100);
  assert.deepEqual(b.step({ kind: 'expire', ticket: parked.ticket }, 1099).out, { kind: 'later', deadlineMs: 1100 });
  const expired = b.step({ kind: 'expire', ticket: parked.ticket }, 1100).out;
  assert.equal(expired?.kind, 'expired');
  assert.deepEqual(expired?.kind === 'expired' ? expired.reply : null, { status: 503, body: { error: MESSAGES.causalUnavailable } });
  assert.equal(b.step({ kind: 'expire', ticket: parked.ticket }, 1200).out, null);
  assert.equal(b.parkedCount, 0);
});

test('a write parked behind a reshard gets the reshard budget, and is applied in the step that abandons the reshard', () => {
  const a = replicated(A);
  const plan: ShardMap = { ...a.map, epoch: nextEpoch(a.map.epoch) };
  assert.equal(drive(a).prepareReshard(plan, A, 0).ok, true);
  const parked = a.step({ kind: 'kv', request: request(a, 'PUT', 'k', { value: 1 }) }, 0).out;
  assert.ok(parked.kind === 'parked');
  assert.equal(parked.wait.reason, 'reshard');
  assert.equal(parked.deadlineMs, 4000);
  const aborted = a.step({ kind: 'reshard-abort', epoch: plan.epoch }, 5);
  const released = aborted.wake?.released ?? [];
  assert.equal(released.length, 1);
  const decision = released[0]?.decision;
  assert.equal(decision?.kind === 'reply' ? decision.reply.status : 0, 201);
  assert.ok(decision?.kind === 'reply' && decision.replicate, 'the released write is to be replicated');
  // ... and it is in what the same step asks the disk to hold, before the runtime acknowledges it.
  assert.deepEqual(aborted.persist?.replica?.changes.versions.map((v) => v.key), ['k']);
});

test('closing the node answers every parked request 503', () => {
  const a = replicated(A);
  const b = replicated(B);
  const { metadata } = write(a, 'k', 1);
  for (let i = 0; i < 3; i++) b.step({ kind: 'kv', request: request(b, 'GET', 'k', { 'causal-metadata': metadata }) }, 0);
  const all = b.step({ kind: 'close' }, 0).out;
  assert.equal(all.length, 3);
  assert.ok(all.every((r) => r.reply.status === 503));
  assert.equal(b.parkedCount, 0);
});

test('a step persists only what changed: nothing for a read, the write and its clock for a write, the map once', () => {
  const a = replicated(A);
  const read = a.step({ kind: 'kv', request: request(a, 'GET', 'k', {}) }, 0);
  assert.equal(read.persist, null);
  const put = a.step({ kind: 'kv', request: request(a, 'PUT', 'k', { value: 1 }) }, 0);
  assert.deepEqual(put.persist?.replica?.changes.versions.map((v) => v.key), ['k']);
  assert.deepEqual(put.persist?.replica?.applied, { [A]: 1 });
  assert.equal(put.persist?.map, undefined);
  const added = a.step({ kind: 'view-put', node: C }, 0);
  // Replicated mode: the new node joins the only shard, and the new map is persisted.
  assert.deepEqual(added.persist?.map?.shards[shardIdFor(0)], [A, B, C]);
  assert.equal(a.step({ kind: 'view-put', node: C }, 0).persist, null);
});

test('a forwarded write that arrives after its deadline is refused, and a read is not', () => {
  const a = replicated(A);
  const late = drive(a).decide(request(a, 'PUT', 'k', { value: 1 }, 1000), 1001);
  assert.equal(late.kind, 'reply');
  assert.equal(late.kind === 'reply' ? late.reply.status : 0, 503);
  assert.equal(late.kind === 'reply' ? late.lateMs : 0, 1);
  assert.equal(drive(a).kv('GET', 'k', {}).kind, 'reply');
  const onTime = drive(a).decide(request(a, 'PUT', 'k', { value: 1 }, 1000), 1000);
  assert.equal(onTime.kind === 'reply' ? onTime.reply.status : 0, 201);
});

test('forwarding: a write fails over only when it provably never left; any request fails over from a causal 503', () => {
  const answered = { kind: 'answered' as const, reply: { status: 200, body: { result: 'found' } } };
  assert.deepEqual(afterForwardAttempt('PUT', shardIdFor(0), answered), { kind: 'reply', reply: answered.reply });
  const lacking = { kind: 'answered' as const, reply: { status: 503, body: { error: MESSAGES.causalUnavailable } } };
  assert.deepEqual(afterForwardAttempt('PUT', shardIdFor(0), lacking), { kind: 'next', lacking: lacking.reply });
  assert.deepEqual(afterForwardAttempt('PUT', shardIdFor(0), { kind: 'unreachable', maybeDelivered: false }), { kind: 'next', lacking: null });
  const unknown = afterForwardAttempt('PUT', shardIdFor(0), { kind: 'unreachable', maybeDelivered: true });
  assert.equal(unknown.kind, 'reply');
  assert.match(String(unknown.kind === 'reply' ? unknown.reply.body.error : ''), /may or may not have been applied/);
  assert.deepEqual(afterForwardAttempt('GET', shardIdFor(0), { kind: 'unreachable', maybeDelivered: true }), { kind: 'next', lacking: null });
  // Another 503 (overload, a reshard) is the member's answer: given to the client.
  const busy = { kind: 'answered' as const, reply: { status: 503, body: { error: 'A reshard is in progress; try again later' } } };
  assert.equal(afterForwardAttempt('GET', shardIdFor(0), busy).kind, 'reply');
  assert.deepEqual(noMemberServed(shardIdFor(1), null), { status: 503, body: { error: 'No member of shard s1 is reachable' } });
  assert.deepEqual(noMemberServed(shardIdFor(1), lacking.reply), lacking.reply);
});

test('reshard coordinator: a refusal, a shard with no member taking part, or an incomplete transfer abandons', () => {
  const view = [A, B, C, nodeAddress('10.10.0.5:8090')];
  const current = initialShardMap(view, 2);
  const next: ShardMap = { ...initialShardMap(view, 1), epoch: nextEpoch(current.epoch) };
  const ok = { status: 200, body: { ok: true } };
  const away = { status: 200, body: { unreachable: true } };
  assert.deepEqual(afterPrepare(current, next, view, [ok, ok, ok, ok]), { kind: 'send', prepared: view });
  // One node away: its shard still has a member taking part.
  const members = (shard: string) => current.shards[shard] ?? [];
  const [s0a] = members('s0');
  const oneAway = view.map((n) => (n === s0a ? away : ok));
  assert.equal(afterPrepare(current, next, view, oneAway).kind, 'send');
  // Every member of s0 away: its keys could not move.
  const s0Away = view.map((n) => (members(shardIdFor(0)).includes(n) ? away : ok));
  const stranded = afterPrepare(current, next, view, s0Away);
  assert.equal(stranded.kind, 'abandon');
  assert.match(String(stranded.kind === 'abandon' ? stranded.reply.body.error : ''), /No member of shard s0 \(epoch/);
  const refused = afterPrepare(current, next, view, [ok, { status: 409, body: { error: 'another reshard' } }, ok, ok]);
  assert.equal(refused.kind === 'abandon' ? refused.reply.body.error : '', 'Another reshard is in progress; try again later');
  assert.deepEqual(afterSend([A, B], [ok, { status: 200, body: { ok: true, failed: [] } }]), { kind: 'commit' });
  const incomplete = afterSend([A, B], [ok, { status: 200, body: { ok: true, failed: [C] } }]);
  assert.equal(incomplete.kind, 'abandon');
  assert.deepEqual(incomplete.kind === 'abandon' ? incomplete.detail : null, { incomplete: [B] });
  assert.equal(afterSend([A, B], [ok, away]).kind, 'abandon');
  // Phase 2 within half the freeze commits; longer abandons (a commit could come after a participant gave up).
  assert.deepEqual(afterSend([A], [ok], { phaseMs: 15_000, freezeMs: 30_000 }), { kind: 'commit' });
  const slow = afterSend([A], [ok], { phaseMs: 15_001, freezeMs: 30_000 });
  assert.equal(slow.kind === 'abandon' ? slow.why : '', 'transfers too slow to commit safely');
});

test('a ping answer: pull only what the peer had one ping ago, never over a held link, and fetch a differing map', () => {
  const a = replicated(A);
  const b = replicated(B);
  write(a, 'k', 1);
  const info = (): PingInfo => ({ ...a.pingInfo(), incarnation: 'i1' });
  // First answer: nothing to compare with, so no pull yet.
  assert.deepEqual(drive(b).onPingAnswer(A, info(), 0, true), { learned: [], fetchMap: false, pull: null });
  // Second answer: the peer had the write one ping ago.
  assert.equal(drive(b).onPingAnswer(A, info(), 1, true).pull, 'behind peer');
  // Still pushing it to us: no pull.
  assert.equal(drive(b).onPingAnswer(A, { ...info(), replicating: 1 }, 2, true).pull, null);
  // Over a link held down: no pull.
  assert.equal(drive(b).onPingAnswer(A, info(), 3, false).pull, null);
  // A node named in the peer's view is learned (probed before it is admitted); a differing map is fetched.
  const answer = drive(b).onPingAnswer(A, { ...info(), view: [A, B, C], mapDigest: 'other' }, 4, true);
  assert.deepEqual(answer.learned, [C]);
  assert.equal(answer.fetchMap, true);
  // The peer that has what a waiting request lacks.
  assert.equal(b.peerWithAny({ [A]: 1 }, () => true), A);
  assert.equal(b.peerWithAny({ [A]: 2 }, () => true), null);
  assert.equal(b.peerWithAny({ [A]: 1 }, () => false), null);
});

test('a prepared reshard without a commit times out after the timeout, counted from phase 2 once it came', () => {
  const a = replicated(A);
  const plan: ShardMap = { ...a.map, epoch: nextEpoch(a.map.epoch) };
  drive(a).prepareReshard(plan, B, 1000);
  assert.equal(a.reshardTimedOut(31_000, 30_000), null);
  assert.equal(a.reshardTimedOut(31_001, 30_000), plan.epoch);
  // Phase 2 reaches it at 31 s: the freeze now runs until 61 s.
  assert.ok(drive(a).reshardTransfers(plan.epoch, new Set([B]), 31_000));
  assert.equal(a.reshardTimedOut(61_000, 30_000), null);
  assert.equal(a.reshardTimedOut(61_001, 30_000), plan.epoch);
});

test('a node that prepared but was not counted (it never got phase 2) does not commit an empty shard: it missed the reshard', () => {
  const view = [A, B, C];
  const cores = view.map((self) => replicated(self, view));
  const [a, b, c] = cores as [NodeCore, NodeCore, NodeCore];
  write(a, 'k', 1);
  const plan: ShardMap = { ...initialShardMap(view, 1), epoch: nextEpoch(a.map.epoch) };
  for (const core of cores) assert.equal(drive(core).prepareReshard(plan, A, 0).ok, true);
  // Phase 2 among a and b only (c's prepare answer came too late).
  for (const core of [a, b]) {
    assert.ok(drive(core).reshardTransfers(plan.epoch, new Set([A, B]), 0));
    drive(core).markSent(plan.epoch);
  }
  assert.equal(drive(a).commitReshard(plan.epoch).outcome, 'committed');
  const late = drive(c).commitReshard(plan.epoch);
  assert.equal(late.outcome, 'missed');
  assert.ok(late.outcome === 'missed' && late.change.changed && late.change.needsFullSync, 'it copies its shard from a peer');
  assert.equal(c.ready, false, 'and does not serve until it has');
  assert.equal(c.reshardInProgress, null);
  assert.equal(drive(c).commitReshard(plan.epoch).outcome, 'committed', 'a repeated commit finds it in the epoch');
});
