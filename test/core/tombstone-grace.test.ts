// The tombstone grace and members that never joined (src/core/tombstone-grace.ts,
// ReplicationCore.collectTombstones / onPeerHorizon / onSyncResponse, NodeCore.dropNeverJoined):
// a member not heard from blocks collection for the grace only; a replica that missed what a peer
// collected merges nothing and is copied afresh once its writes are with the live members; a member
// never heard from is dropped from its shard, and a node that finds itself dropped joins again.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GRAVEYARD_MAX } from '../../src/core/graveyard.ts';
import { NodeCore } from '../../src/core/node-core.ts';
import type { PingInfo } from '../../src/core/node-core.ts';
import { AppliedHistory, HISTORY_POINTS_MAX, appliedByKnownMembers, clockMin } from '../../src/core/tombstone-grace.ts';
import { mayCollectWithout } from '../../src/core/replication-core.ts';
import { droppedMembers, initialShardMap, mapDigest, shardIdFor, withoutMember } from '../../src/core/shard-map.ts';
import { nodeAddress } from '../../src/core/address.ts';
import type { Clock, NodeAddress, ShardMap } from '../../src/core/types.ts';
import { drive } from '../helpers/core-driver.ts';

const SHARD = shardIdFor(0);
const A = nodeAddress('10.10.0.2:8090');
const B = nodeAddress('10.10.0.3:8090');
const C = nodeAddress('10.10.0.4:8090');
const GRACE = 4_000;
const VIEW = [A, B, C];

function core(self: NodeAddress, map: ShardMap = initialShardMap(VIEW, null), extra: Record<string, number> = {}): NodeCore {
  const node = new NodeCore({ self, pendingMax: 1000, failuresToRemove: 3, holdDownMs: 3000, tombstoneGraceMs: GRACE, ...extra }, VIEW, structuredClone(map));
  drive(node).ready();
  return node;
}

function ping(from: NodeAddress, node: NodeCore, applied: Clock): PingInfo {
  return { address: from, epoch: node.map.epoch, mapDigest: mapDigest(node.map), shard: SHARD, ready: true, applied, view: [...VIEW] };
}

test('AppliedHistory: checkpoints at least grace/32 apart, at most HISTORY_POINTS_MAX, the clock as it was at a time', () => {
  const history = new AppliedHistory(3200);
  assert.equal(history.spacingMs, 100);
  assert.equal(history.asOf(0), null);
  history.record(0, { [A]: 1 });
  history.record(50, { [A]: 2 }); // too soon: not kept
  history.record(100, { [A]: 3 });
  assert.deepEqual(history.asOf(99), { [A]: 1 });
  assert.deepEqual(history.asOf(100), { [A]: 3 });
  assert.equal(history.asOf(-1), null);
  assert.equal(history.appliedAt(A, 2), 100, 'write 2 was first seen applied at the checkpoint of 100');
  assert.equal(history.appliedAt(A, 4), null);
  for (let t = 200; t < 200 + 100 * HISTORY_POINTS_MAX; t += 100) history.record(t, { [A]: t });
  assert.equal(history.asOf(100), null, 'the oldest checkpoints are dropped past the bound');
  assert.throws(() => new AppliedHistory(0));
});

test('appliedByKnownMembers: the minimum over known members, the unknown ones named, null when a member is ahead on its own writes', () => {
  const known = new Map<NodeAddress, Clock>([[B, { [A]: 3, [B]: 2 }]]);
  assert.deepEqual(appliedByKnownMembers({ [A]: 5, [B]: 2 }, VIEW, A, known), { everywhere: { [A]: 3, [B]: 2 }, missing: [C] });
  assert.equal(appliedByKnownMembers({ [A]: 5, [B]: 1 }, VIEW, A, known), null);
  assert.deepEqual(clockMin({ [A]: 2, [B]: 5 }, { [B]: 3, [C]: 1 }), { [B]: 3 });
});

test('a member not heard from blocks collection for the grace, then tombstones applied at least the grace ago are collected without it', () => {
  const a = core(A);
  const d = drive(a);
  d.kv('PUT', 'k', { value: 1 });
  d.kv('DELETE', 'k', {});
  // B answers with everything; C is never heard from.
  const known = new Map<NodeAddress, Clock>([[B, { ...a.replica?.applied }]]);
  assert.equal(d.step({ kind: 'collect-tombstones', peerApplied: known }, 0), 0);
  assert.deepEqual(a.collectionStatus, { blockedBy: [C], collectingWithout: [], kept: 0, graveyardFull: false, keptMax: GRAVEYARD_MAX });
  assert.equal(d.step({ kind: 'collect-tombstones', peerApplied: known }, GRACE - 1), 0, 'within the grace: nothing');
  assert.equal(a.tombstoneStatus(GRACE - 1).held, 1);
  // A delete made later is younger than the grace when the first is old enough.
  d.nowMs = GRACE - 1;
  d.kv('PUT', 'j', { value: 1 });
  d.kv('DELETE', 'j', {});
  const later = new Map<NodeAddress, Clock>([[B, { ...a.replica?.applied }]]);
  assert.equal(d.step({ kind: 'collect-tombstones', peerApplied: later }, GRACE), 1, 'past the grace: the old tombstone only');
  assert.deepEqual(a.collectionStatus, { blockedBy: [], collectingWithout: [C], kept: 1, graveyardFull: false, keptMax: GRAVEYARD_MAX }, 'collected without C: kept until C is back');
  assert.equal(a.tombstoneStatus(GRACE).held, 1);
  assert.equal(a.replica?.get('k'), undefined);
  assert.ok(a.replica?.get('j')?.deleted);
  assert.ok((a.replica?.collected[A] ?? 0) >= 2, 'the horizon covers the collected delete');
});

test('a round skipped for a live member\'s writes still on their way keeps the last verdict on the members not heard from', () => {
  const a = core(A);
  const d = drive(a);
  d.kv('PUT', 'k', { value: 1 });
  d.kv('DELETE', 'k', {});
  const known = new Map<NodeAddress, Clock>([[B, { ...a.replica?.applied }]]);
  assert.equal(d.step({ kind: 'collect-tombstones', peerApplied: known }, 0), 0);
  assert.equal(d.step({ kind: 'collect-tombstones', peerApplied: known }, GRACE), 1);
  assert.deepEqual(a.collectionStatus, { blockedBy: [], collectingWithout: [C], kept: 1, graveyardFull: false, keptMax: GRAVEYARD_MAX });
  // B has a write of its own A has not applied: the round collects nothing and decides nothing.
  const ahead = new Map<NodeAddress, Clock>([[B, { ...a.replica?.applied, [B]: 1 }]]);
  assert.equal(d.step({ kind: 'collect-tombstones', peerApplied: ahead }, GRACE + 1), 0);
  assert.deepEqual(a.collectionStatus, { blockedBy: [], collectingWithout: [C], kept: 1, graveyardFull: false, keptMax: GRAVEYARD_MAX }, 'C is still reported');
  // Before any round has decided, a skipped one reports nothing either way.
  const fresh = core(A);
  assert.equal(drive(fresh).step({ kind: 'collect-tombstones', peerApplied: ahead }, 0), 0);
  assert.deepEqual(fresh.collectionStatus, { blockedBy: [], collectingWithout: [], kept: 0, graveyardFull: false, keptMax: GRAVEYARD_MAX });
});

test('a replica that has not applied what a peer collected is stale: it merges nothing, pulls nothing, pushes nothing, and is copied once handed off', () => {
  const b = core(B);
  const d = drive(b);
  d.kv('PUT', 'k', { value: 'old' });
  const epoch = b.map.epoch;
  const horizon = { [A]: 7 };
  // A pull answer from A with a horizon B has not applied: refused, and B is stale.
  assert.equal(d.step({ kind: 'sync-response', epoch, shard: SHARD, versions: [], applied: { [A]: 7 }, lamport: 9, collected: horizon, peer: A }, 10), 'stale');
  assert.deepEqual(b.stale, { sinceMs: 10, peer: A });
  assert.equal(b.replica?.get('k')?.value, 'old', 'nothing merged');
  assert.equal(d.step({ kind: 'sync-response', epoch, shard: SHARD, versions: [], applied: { [A]: 7 }, lamport: 9, peer: C }, 11), 'stale', 'no pull merges while stale');
  assert.equal(b.repairPlan(epoch, SHARD, A, [0], { cursor: 0, exchangesMax: 1, nowMs: 11 }), null, 'no anti-entropy pushes');
  assert.equal(d.onPingAnswer(A, ping(A, b, { [A]: 9 }), 12, true).pull, null, 'no pulls');
  assert.equal(d.step({ kind: 'collect-tombstones' }, 13), 0);
  // Handed off once every member heard from covers what B applied.
  const mine = { ...b.replica?.applied };
  d.onPingAnswer(A, ping(A, b, { [A]: 9 }), 14, true);
  assert.equal(b.staleHandedOff(), false, 'A has not applied B\'s write yet');
  d.onPingAnswer(A, ping(A, b, { [A]: 9, ...mine }), 15, true);
  d.onPingAnswer(C, ping(C, b, { ...mine }), 15, true);
  assert.equal(b.staleHandedOff(), true);
  // The copy: a new replica, not stale, that takes a full answer and the peer's horizon.
  d.step({ kind: 'full-sync-begin' }, 16);
  assert.equal(b.stale, null);
  assert.equal(d.step({ kind: 'sync-response', epoch, shard: SHARD, versions: [], applied: { [A]: 9, ...mine }, lamport: 9, collected: horizon, full: true, peer: A }, 17), 'merged');
  assert.deepEqual(b.replica?.collected, horizon);
  assert.equal(b.replica?.get('k'), undefined);
});

test('a peer horizon the replica covers changes nothing; from a digest answer it is checked the same way', () => {
  const b = core(B);
  const d = drive(b);
  d.kv('PUT', 'k', { value: 1 });
  const epoch = b.map.epoch;
  assert.equal(d.step({ kind: 'peer-horizon', peer: A, epoch, shard: SHARD, collected: { ...b.replica?.applied } }, 1), false);
  assert.equal(d.step({ kind: 'peer-horizon', peer: A, epoch: epoch + 1 as typeof epoch, shard: SHARD, collected: { [A]: 5 } }, 1), false, 'another epoch: not ours to judge');
  assert.equal(d.step({ kind: 'peer-horizon', peer: A, epoch, shard: SHARD, collected: { [A]: 5 } }, 2), true);
  assert.equal(b.stale?.peer, A);
});

test('the planted bug stale-replica-merge merges a stale replica as before', () => {
  const b = new NodeCore({ self: B, pendingMax: 1000, failuresToRemove: 3, holdDownMs: 3000, plantedBugs: new Set(['stale-replica-merge']) }, VIEW, initialShardMap(VIEW, null));
  drive(b).ready();
  const out = drive(b).step({ kind: 'sync-response', epoch: b.map.epoch, shard: SHARD, versions: [], applied: { [A]: 7 }, lamport: 9, collected: { [A]: 7 }, peer: A }, 1);
  assert.equal(out, 'merged');
  assert.equal(b.stale, null);
});

test('a member never heard from, out of the view and named by no peer is dropped after MEMBER_JOIN_GRACE_MS; one heard from is not', () => {
  const phantom = nodeAddress('10.10.0.9:8090');
  const a = core(A, initialShardMap([...VIEW, phantom], null), { memberJoinGraceMs: 1000 });
  const d = drive(a);
  // B and C answer; the phantom never does.
  for (const peer of [B, C]) d.step({ kind: 'link', event: { type: 'probe-answered', peer, sentTo: null, incarnation: `${peer}-1` } }, 0);
  assert.deepEqual(d.step({ kind: 'drop-never-joined' }, 0), []);
  assert.deepEqual(d.step({ kind: 'drop-never-joined' }, 999), []);
  assert.deepEqual(d.step({ kind: 'drop-never-joined' }, 1000), [{ shard: SHARD, node: phantom }]);
  assert.deepEqual(a.map.shards[SHARD], VIEW);
  assert.deepEqual(droppedMembers(a.map), [{ shard: SHARD, node: phantom }]);
  // A peer whose ping names a member keeps it.
  const b = core(B, initialShardMap([...VIEW, phantom], null), { memberJoinGraceMs: 1000 });
  const db = drive(b);
  for (const peer of [A, C]) db.step({ kind: 'link', event: { type: 'probe-answered', peer, sentTo: null, incarnation: `${peer}-1` } }, 0);
  db.onPingAnswer(A, { ...ping(A, b, {}), view: [...VIEW, phantom] }, 0, true);
  db.step({ kind: 'drop-never-joined' }, 0);
  assert.deepEqual(db.step({ kind: 'drop-never-joined' }, 5000), [], 'a peer still has it in its view');
});

test('a node that finds itself dropped in a peer\'s map joins again and keeps its replica', () => {
  const c = core(C);
  const d = drive(c);
  d.kv('PUT', 'mine', { value: 1 });
  const dropped = withoutMember(c.map, SHARD, C);
  d.adoptMap(structuredClone(dropped));
  assert.deepEqual(c.map.shards[SHARD], VIEW, 'a member again');
  assert.equal(c.map.membershipCounts?.[SHARD]?.[C], 3);
  assert.equal(c.replica?.get('mine')?.value, 1, 'its replica and its write are kept');
});

test('only a majority of the shard (or half with its first member) collects without the members it does not hear from', () => {
  const D = nodeAddress('10.10.0.5:8090');
  assert.equal(mayCollectWithout([A, B, C], [C]), true);
  assert.equal(mayCollectWithout([A, B, C], [B, C]), false, 'one of three: the other side may be collecting');
  assert.equal(mayCollectWithout([A, B], [B]), true, 'half, with the first member');
  assert.equal(mayCollectWithout([A, B], [A]), false, 'half, without the first member');
  assert.equal(mayCollectWithout([A, B, C, D], [C, D]), true);
  assert.equal(mayCollectWithout([A, B, C, D], [A, B]), false);
  // In a core: one member of three, cut off from both others, never collects without them.
  const a = core(A);
  const d = drive(a);
  d.kv('PUT', 'k', { value: 1 });
  d.kv('DELETE', 'k', {});
  d.step({ kind: 'collect-tombstones', peerApplied: new Map() }, 0);
  assert.equal(d.step({ kind: 'collect-tombstones', peerApplied: new Map() }, 10 * GRACE), 0);
  assert.deepEqual(a.collectionStatus, { blockedBy: [B, C], collectingWithout: [], kept: 0, graveyardFull: false, keptMax: GRAVEYARD_MAX });
});

test('a stale replica is no copy source, says so in its pings, and does not wait for members that are stale too', () => {
  const b = core(B);
  const d = drive(b);
  d.kv('PUT', 'k', { value: 1 });
  const epoch = b.map.epoch;
  d.step({ kind: 'peer-horizon', peer: A, epoch, shard: SHARD, collected: { [A]: 5 } }, 1);
  assert.equal(b.pingInfo().stale, true);
  const full = d.onSyncRequest(epoch, SHARD, {}, true);
  assert.equal(full.ok, false, 'no full copy from a stale replica');
  assert.equal(d.onSyncRequest(epoch, SHARD, {}, false).ok, true, 'a pull of its writes is answered');
  const mine = { ...b.replica?.applied };
  d.onPingAnswer(A, ping(A, b, { [A]: 5, ...mine }), 2, true);
  d.onPingAnswer(C, { ...ping(C, b, {}), stale: true }, 2, true);
  assert.equal(b.staleHandedOff(), true, 'C is stale too: A holding our writes is enough');
});
