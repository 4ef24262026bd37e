// What `kvs status` prints for a person (src/cli/operator.ts statusTable): one row per node with its
// tombstones, and a line for what holds tombstone collection back, goes on without a member, or
// left a replica stale.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { StoreNodeStatus, StoreNodeTombstones, StoreStatus } from '../../src/client/client.ts';
import { allUp, statusTable } from '../../src/cli/operator.ts';
import { nodeAddress } from '../../src/core/address.ts';
import { shardIdFor } from '../../src/core/shard-map.ts';

const [A, B, C] = ['127.0.0.1:8090', '127.0.0.1:8091', '127.0.0.1:8092'].map(nodeAddress) as [ReturnType<typeof nodeAddress>, ReturnType<typeof nodeAddress>, ReturnType<typeof nodeAddress>];
const S0 = shardIdFor(0);

function tombstones(extra: Partial<StoreNodeTombstones> = {}): StoreNodeTombstones {
  return { held: 0, oldestAgeSeconds: null, oldestAgeAtLeast: false, blockedBy: [], collectingWithout: [], stale: null, ...extra };
}

function row(address: StoreNodeStatus['address'], extra: Partial<StoreNodeStatus> = {}): StoreNodeStatus {
  return {
    address,
    shard: S0,
    state: 'up',
    keys: 10,
    replicationBacklog: { versions: 0, bytes: 0 },
    hintBacklog: { versions: 0, bytes: 0 },
    secondsSinceInSync: 0.5,
    requests: null,
    uptimeSeconds: 60,
    tombstones: tombstones(),
    ...extra,
  };
}

function store(nodes: StoreNodeStatus[]): StoreStatus {
  return { answeredBy: A, epoch: 1, mode: 'replicated', shards: [{ id: S0, members: [A, B, C], keys: 10 }], nodes, reshard: null };
}

test('kvs status: a TOMBSTONES column, and nothing more said while collection is free', () => {
  const text = statusTable(store([row(A, { tombstones: tombstones({ held: 12 }) }), row(B), row(C)]));
  const lines = text.split('\n');
  assert.match(lines[1] ?? '', /IN SYNC\s+TOMBSTONES$/);
  assert.match(text, /^127\.0\.0\.1:8090 .* 12$/m);
  assert.ok(!/tombstone collection|collected without|stale/.test(text), text);
  assert.match(lines.at(-1) ?? '', /every node is up and ready/);
});

test('kvs status: a dead member shows once as blocking (or collected without) with the nodes that say so; a stale replica is named', () => {
  const waiting = statusTable(store([row(A, { tombstones: tombstones({ held: 3, blockedBy: [C] }) }), row(B, { tombstones: tombstones({ held: 3, blockedBy: [C] }) }), row(C, { state: 'down', keys: null, tombstones: null })]));
  assert.match(waiting, /^tombstone collection waits for 127\.0\.0\.1:8092 \(at 127\.0\.0\.1:8090, 127\.0\.0\.1:8091\)$/m);
  assert.match(waiting, /^127\.0\.0\.1:8092 .*down.* -$/m, 'no tombstones known of a node that does not answer');
  assert.equal(allUp(store([row(A), row(C, { state: 'down' })])), false);

  const without = statusTable(store([row(A, { tombstones: tombstones({ collectingWithout: [C] }) }), row(B, { tombstones: tombstones({ collectingWithout: [C] }) }), row(C, { tombstones: tombstones({ held: 7, stale: { forSeconds: 4.2, peer: A, handedOff: false } }) })]));
  assert.match(without, /^tombstones are collected without 127\.0\.0\.1:8092, not heard from for longer than the grace \(at 127\.0\.0\.1:8090, 127\.0\.0\.1:8091\)$/m);
  assert.match(without, /^127\.0\.0\.1:8092 .* 7 stale$/m);
  assert.match(without, /^127\.0\.0\.1:8092: replica stale for 4 s \(it missed tombstones collected without it; it hands its writes to the live members first\)$/m);
});

test('kvs status: a node of an older release without tombstones in its status shows a dash', () => {
  const old = row(B);
  delete (old as Partial<StoreNodeStatus>).tombstones;
  const text = statusTable(store([row(A), old]));
  assert.match(text, /^127\.0\.0\.1:8091 .*\s-$/m);
});
