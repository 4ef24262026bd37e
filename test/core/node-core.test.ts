// NodeCore driven by hand, as the runtime drives it: a few cores of one store, with the Version
// objects they return passed to their peers (through JSON, as over HTTP). Exact statuses and bodies
// of the public API, forwarding, causal waits, and metadata across a reshard.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { NodeCore } from '../../src/core/node-core.ts';
import type { KvDecision, KvMethod, Reply, Transfer } from '../../src/core/node-core.ts';
import { asEpoch, initialShardMap, membersOf, nextEpoch, shardIdFor, shardIds, shardOfKey, shardOfNode } from '../../src/core/shard-map.ts';
import { MESSAGES } from '../../src/core/api-messages.ts';
import { afterPrepare, afterSend, type Holdings, type TransferClaim } from '../../src/core/reshard-participant.ts';
import type { CausalMetadata, Epoch, NodeAddress, ShardId, ShardMap, Version } from '../../src/core/types.ts';
import { nodeAddress } from '../../src/core/address.ts';
import { drive } from '../helpers/core-driver.ts';

const node = (i: number): NodeAddress => nodeAddress(`10.10.0.${i + 2}:8090`);
const nodes = (count: number): NodeAddress[] => Array.from({ length: count }, (_, i) => node(i));

/** What travels over HTTP is JSON. */
function wire<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

function makeCore(self: NodeAddress, view: NodeAddress[], map: ShardMap): NodeCore {
  const core = new NodeCore({ self, pendingMax: 1000, failuresToRemove: 3, holdDownMs: 3000 }, view, wire(map));
  drive(core).ready();
  return core;
}

function cluster(count: number, shardCount: number | null): NodeCore[] {
  const view = nodes(count);
  const map = initialShardMap(view, shardCount);
  return view.map((self) => makeCore(self, view, map));
}

function byAddress(cores: NodeCore[], address: NodeAddress): NodeCore {
  const core = cores.find((c) => c.self === address);
  assert.ok(core, `core ${address}`);
  return core;
}

function replyOf(decision: KvDecision): Reply {
  assert.equal(decision.kind, 'reply', `expected a reply, got ${JSON.stringify(decision)}`);
  return wire((decision as { reply: Reply }).reply);
}

type Replication = { shard: ShardId; peers: NodeAddress[]; version: Version };

function replicationOf(decision: KvDecision): Replication {
  assert.equal(decision.kind, 'reply');
  const replicate = (decision as { replicate?: Replication }).replicate;
  assert.ok(replicate, 'a write to replicate');
  return replicate;
}

/** Pushes a write to the listed peers (or to `only` of them), as the runtime's replicator does. */
function push(cores: NodeCore[], decision: KvDecision, only?: NodeAddress[]): void {
  const { shard, peers, version } = replicationOf(decision);
  for (const peer of peers) {
    if (only && !only.includes(peer)) continue;
    const core = byAddress(cores, peer);
    const result = drive(core).onReplicate(core.map.epoch, shard, wire([version]));
    assert.ok(result.ok, `push to ${peer}`);
  }
}

function kv(core: NodeCore, method: KvMethod, key: string, body: Record<string, unknown>): KvDecision {
  return drive(core).kv(method, key, wire(body));
}

function metadataOf(reply: Reply): CausalMetadata {
  const m = reply.body['causal-metadata'];
  assert.ok(m && typeof m === 'object', `metadata in ${JSON.stringify(reply.body)}`);
  return m as CausalMetadata;
}

/** A core of `shard` (the first by address). */
function memberOf(cores: NodeCore[], shard: ShardId): NodeCore {
  return cores.find((c) => c.shard === shard) as NodeCore;
}

// ------------------------------------------------------------------ statuses and bodies

test('PUT / GET / DELETE: exact statuses and bodies, and replication to the shard peers', () => {
  const cores = cluster(3, null);
  const [a, b, c] = cores as [NodeCore, NodeCore, NodeCore];
  assert.equal(a.map.mode, 'replicated');

  const put = kv(a, 'PUT', 'x', { value: { n: 1 }, 'causal-metadata': null });
  assert.deepEqual(replyOf(put), {
    status: 201,
    body: { result: 'created', 'causal-metadata': { v: 1, e: 0, c: { s0: { [a.self]: 1 } } }, 'shard-id': 's0' },
  });
  assert.deepEqual(replicationOf(put).peers, [b.self, c.self]);
  assert.equal(replicationOf(put).shard, 's0');
  const m1 = metadataOf(replyOf(put));

  assert.deepEqual(replyOf(kv(a, 'GET', 'x', { 'causal-metadata': m1 })), {
    status: 200,
    body: { result: 'found', value: { n: 1 }, 'causal-metadata': { v: 1, e: 0, c: { s0: { [a.self]: 1 } } }, 'shard-id': 's0' },
  });
  // A GET without body: missing body and missing metadata are {} and null.
  assert.equal(replyOf(drive(a).kv('GET', 'x', undefined)).status, 200);
  assert.equal(replyOf(kv(a, 'GET', 'x', {})).status, 200);

  push(cores, put);
  const replaced = kv(b, 'PUT', 'x', { value: 'two', 'causal-metadata': m1 });
  assert.deepEqual(replyOf(replaced), {
    status: 200,
    body: { result: 'replaced', 'causal-metadata': { v: 1, e: 0, c: { s0: { [a.self]: 1, [b.self]: 1 } } }, 'shard-id': 's0' },
  });
  const m2 = metadataOf(replyOf(replaced));
  push(cores, replaced);

  const deleted = kv(c, 'DELETE', 'x', { 'causal-metadata': m2 });
  assert.deepEqual(replyOf(deleted), {
    status: 200,
    body: { result: 'deleted', 'causal-metadata': { v: 1, e: 0, c: { s0: { [a.self]: 1, [b.self]: 1, [c.self]: 1 } } }, 'shard-id': 's0' },
  });
  const m3 = metadataOf(replyOf(deleted));
  push(cores, deleted);

  for (const core of cores) {
    assert.deepEqual(replyOf(kv(core, 'GET', 'x', { 'causal-metadata': m3 })), { status: 404, body: { error: 'Key does not exist' } });
    assert.deepEqual(replyOf(kv(core, 'DELETE', 'x', { 'causal-metadata': m3 })), { status: 404, body: { error: 'Key does not exist' } });
    assert.equal(core.replica?.liveKeyCount(), 0);
  }
  assert.deepEqual(replyOf(kv(a, 'GET', 'never', { 'causal-metadata': null })), { status: 404, body: { error: 'Key does not exist' } });
  assert.deepEqual(replyOf(kv(a, 'DELETE', 'never', { 'causal-metadata': null })), { status: 404, body: { error: 'Key does not exist' } });

  // PUT after a delete creates again.
  const again = kv(a, 'PUT', 'x', { value: 3, 'causal-metadata': m3 });
  assert.equal(replyOf(again).status, 201);
  assert.equal(replyOf(again).body.result, 'created');
});

test('values are any JSON value, stored and returned exactly', () => {
  const cores = cluster(2, null);
  const [a, b] = cores as [NodeCore, NodeCore];
  fc.assert(
    fc.property(fc.jsonValue(), fc.string({ minLength: 1, maxLength: 20 }), (value, key) => {
      const put = kv(a, 'PUT', key, { value, 'causal-metadata': null });
      assert.ok([200, 201].includes(replyOf(put).status));
      push(cores, put);
      const got = replyOf(kv(b, 'GET', key, { 'causal-metadata': metadataOf(replyOf(put)) }));
      assert.equal(got.status, 200);
      assert.deepEqual(got.body.value, wire(value));
    }),
    { numRuns: 200 },
  );
});

test('400s: no value, key too long (51 code points; 50 is fine, multi-byte too), bad metadata', () => {
  const [a] = cluster(2, null) as [NodeCore];
  assert.deepEqual(replyOf(kv(a, 'PUT', 'k', { 'causal-metadata': null })), { status: 400, body: { error: MESSAGES.noValue } });
  assert.deepEqual(replyOf(kv(a, 'PUT', 'k', {})), { status: 400, body: { error: 'PUT request does not specify a value' } });
  // `null` is a value.
  assert.equal(replyOf(kv(a, 'PUT', 'nullish', { value: null })).status, 201);

  for (const unit of ['k', 'é', '中', '😀', '𝄞']) {
    const ok = unit.repeat(50);
    const long = unit.repeat(51);
    const put = replyOf(kv(a, 'PUT', ok, { value: unit, 'causal-metadata': null }));
    assert.equal(put.status, 201, `50 x ${unit} (${ok.length} UTF-16 units) is accepted`);
    const got = replyOf(kv(a, 'GET', ok, { 'causal-metadata': metadataOf(put) }));
    assert.equal(got.body.value, unit);
    for (const method of ['PUT', 'GET', 'DELETE'] as const) {
      assert.deepEqual(replyOf(kv(a, method, long, { value: 1, 'causal-metadata': null })), {
        status: 400,
        body: { error: 'Key is too long' },
      });
    }
  }
  for (const bad of [5, 'x', [], { v: 2, e: 0, c: {} }, { v: 1, e: 0, c: { s0: { [a.self]: 0 } } }]) {
    const decision = replyOf(kv(a, 'GET', 'k', { 'causal-metadata': bad }));
    assert.equal(decision.status, 400, `metadata ${JSON.stringify(bad)}`);
    assert.equal(typeof decision.body.error, 'string');
  }
  for (const body of [[], 'text', 7, null]) {
    const decision = replyOf(drive(a).kv('PUT', 'k', body));
    assert.equal(decision.status, 400);
    assert.equal(typeof decision.body.error, 'string');
  }
});

// ------------------------------------------------------------------ forwarding and causal waits

test('keys of another shard are forwarded to members of that shard; down members are tried last', () => {
  const cores = cluster(6, 2);
  const a = cores[0] as NodeCore;
  assert.equal(a.shard, 's0');
  let forwarded = 0;
  for (let i = 0; i < 50; i++) {
    const key = `key${i}`;
    const shard = shardOfKey(a.map, key);
    const decision = kv(a, 'PUT', key, { value: i, 'causal-metadata': null });
    if (shard === 's0') {
      assert.equal(decision.kind, 'reply');
      continue;
    }
    forwarded++;
    assert.equal(decision.kind, 'forward');
    const { targets } = decision as { shard: ShardId; targets: NodeAddress[] };
    assert.equal((decision as { shard: ShardId }).shard, shard);
    assert.deepEqual([...targets].sort(), [...(membersOf(a.map, shard) as NodeAddress[])].sort());
    assert.ok(!targets.includes(a.self));
    for (const method of ['GET', 'DELETE'] as const) assert.equal(kv(a, method, key, {}).kind, 'forward');
  }
  assert.ok(forwarded > 10);
  // A member found down goes to the end of the list (it may be back).
  const s1 = membersOf(a.map, shardIdFor(1)) as NodeAddress[];
  const down = a.forwardTargets(shardIdFor(1))[0] as NodeAddress;
  drive(a).deleteView(down, 'down');
  const after = a.forwardTargets(shardIdFor(1));
  assert.equal(after[after.length - 1], down);
  assert.deepEqual([...after].sort(), [...s1].sort());
});

test("wait 'causal' until the peer has the write the metadata names, then reply", () => {
  const cores = cluster(3, null);
  const [a, b, c] = cores as [NodeCore, NodeCore, NodeCore];
  const w1 = kv(a, 'PUT', 'x', { value: 1, 'causal-metadata': null });
  const w2 = kv(a, 'PUT', 'y', { value: 2, 'causal-metadata': metadataOf(replyOf(w1)) });
  const m = metadataOf(replyOf(w2));
  for (const method of ['GET', 'PUT', 'DELETE'] as const) {
    assert.deepEqual(kv(b, method, 'y', { value: 0, 'causal-metadata': m }), { kind: 'wait', reason: 'causal', detail: { [a.self]: 2 } });
  }
  // The second write alone is buffered: it depends on the first.
  drive(b).onReplicate(asEpoch(0), shardIdFor(0), wire([replicationOf(w2).version]));
  assert.equal(kv(b, 'GET', 'y', { 'causal-metadata': m }).kind, 'wait');
  drive(b).onReplicate(asEpoch(0), shardIdFor(0), wire([replicationOf(w1).version]));
  assert.deepEqual(replyOf(kv(b, 'GET', 'y', { 'causal-metadata': m })).body.value, 2);
  // Metadata of an older write is satisfied by a peer that has it; a fresh client never waits.
  push(cores, w1, [c.self]);
  assert.equal(replyOf(kv(c, 'GET', 'x', { 'causal-metadata': metadataOf(replyOf(w1)) })).status, 200);
  assert.equal(replyOf(kv(c, 'GET', 'y', { 'causal-metadata': null })).status, 404);
  // Reading x at c gives metadata that names x's write only, not y's.
  assert.deepEqual(metadataOf(replyOf(kv(c, 'GET', 'x', {}))).c, { s0: { [a.self]: 1 } });
});

test('metadata from one shard is accepted by another, which waits only for its own writes', () => {
  const cores = cluster(4, 2);
  const s0 = cores.filter((c) => c.shard === 's0');
  const s1 = cores.filter((c) => c.shard === 's1');
  const k0 = Array.from({ length: 100 }, (_, i) => `k${i}`).find((k) => shardOfKey(cores[0]!.map, k) === 's0') as string;
  const k1 = Array.from({ length: 100 }, (_, i) => `k${i}`).find((k) => shardOfKey(cores[0]!.map, k) === 's1') as string;

  const w0 = kv(s0[0]!, 'PUT', k0, { value: 'zero', 'causal-metadata': null });
  const m0 = metadataOf(replyOf(w0));
  // s1 knows nothing of s0's write and need not: it serves, and carries m0 on.
  const w1 = kv(s1[0]!, 'PUT', k1, { value: 'one', 'causal-metadata': m0 });
  const r1 = replyOf(w1);
  assert.equal(r1.status, 201);
  assert.deepEqual(metadataOf(r1).c, { s0: { [s0[0]!.self]: 1 }, s1: { [s1[0]!.self]: 1 } });
  assert.deepEqual(replicationOf(w1).version.deps, { s0: { [s0[0]!.self]: 1 } });
  // The other s0 member lacks the s0 write the metadata names: it waits, then serves.
  assert.deepEqual(kv(s0[1]!, 'GET', k0, { 'causal-metadata': metadataOf(r1) }), {
    kind: 'wait',
    reason: 'causal',
    detail: { [s0[0]!.self]: 1 },
  });
  push(cores, w0);
  assert.equal(replyOf(kv(s0[1]!, 'GET', k0, { 'causal-metadata': metadataOf(r1) })).body.value, 'zero');
  // A reader of k1 at the other s1 member inherits k1's dependency on k0 (transitively).
  push(cores, w1);
  const read = replyOf(kv(s1[1]!, 'GET', k1, { 'causal-metadata': null }));
  assert.deepEqual(metadataOf(read).c, { s0: { [s0[0]!.self]: 1 }, s1: { [s1[0]!.self]: 1 } });
});

test("metadata of a newer epoch than the node's map waits with reason 'epoch'", () => {
  const [a] = cluster(2, null) as [NodeCore];
  assert.deepEqual(kv(a, 'GET', 'x', { 'causal-metadata': { v: 1, e: 5, c: {} } }), { kind: 'wait', reason: 'epoch' });
  // Older epochs are satisfied: the reshard carried everything over.
  assert.equal(replyOf(kv(a, 'GET', 'x', { 'causal-metadata': { v: 1, e: 0, c: {} } })).status, 404);
});

test("a core that is not ready (rebuilding its copy) answers 'wait syncing' for its shard's keys", () => {
  const view = nodes(2);
  const core = new NodeCore({ self: view[0]!, pendingMax: 10, failuresToRemove: 3, holdDownMs: 3000 }, view, initialShardMap(view, null));
  assert.equal(core.ready, false);
  assert.deepEqual(kv(core, 'GET', 'x', {}), { kind: 'wait', reason: 'syncing' });
  drive(core).ready();
  assert.equal(replyOf(kv(core, 'GET', 'x', {})).status, 404);
});

// ------------------------------------------------------------------ view and shard replies

test('view and shard replies: exact statuses and bodies', () => {
  const cores = cluster(4, 2);
  const a = cores[0] as NodeCore;
  const joiner = nodeAddress('10.10.0.50:8090');
  assert.deepEqual(drive(a).putView(joiner), { status: 201, body: { result: 'added' } });
  assert.deepEqual(drive(a).putView(joiner), { status: 200, body: { result: 'already present' } });
  assert.equal(shardOfNode(a.map, joiner), null, 'a sharded store does not place a joiner by itself');
  assert.deepEqual(drive(a).addMember(shardIdFor(1), joiner), { status: 200, body: { result: 'node added to shard' } });
  assert.equal(shardOfNode(a.map, joiner), shardIdFor(1));
  assert.equal(drive(a).addMember(shardIdFor(9), joiner).status, 404);
  assert.equal(drive(a).addMember(shardIdFor(0), nodeAddress('10.10.0.99:8090')).status, 404);
  assert.deepEqual(drive(a).deleteView(joiner, 'request'), { status: 200, body: { result: 'deleted' } });
  assert.deepEqual(drive(a).deleteView(joiner, 'request'), { status: 404, body: { error: 'View has no such replica' } });
  assert.deepEqual(a.checkReshard(3), { status: 400, body: { error: 'Not enough nodes to provide fault tolerance with requested shard count' } });
  assert.equal(a.checkReshard(2), null);
  assert.equal(a.checkReshard(0)?.status, 400);

  // A replicated store grows with its view.
  const [r] = cluster(2, null) as [NodeCore];
  drive(r).putView(joiner);
  assert.deepEqual(membersOf(r.map, shardIdFor(0)), [...nodes(2), joiner]);
});

// ------------------------------------------------------------------ reshard

interface Model {
  /** Last acknowledged value per key; undefined once deleted. */
  values: Map<string, unknown>;
  /** The metadata each key's last write returned, minted before the reshard. */
  metadata: Map<string, CausalMetadata>;
}

/**
 * Writes `keys` keys (some overwritten at another member, some deleted), replicating each write
 * to only part of the shard, as a lagging store would.
 */
function populate(cores: NodeCore[], keys: number, seed: number): Model {
  const model: Model = { values: new Map(), metadata: new Map() };
  const map = cores[0]!.map;
  for (let i = 0; i < keys; i++) {
    const key = i % 7 === 3 ? `ключ-${i}-😀` : `key${i}`;
    const members = cores.filter((c) => c.shard === shardOfKey(map, key));
    const first = members[(i + seed) % members.length] as NodeCore;
    const put = kv(first, 'PUT', key, { value: { i, v: 1 }, 'causal-metadata': null });
    let m = metadataOf(replyOf(put));
    model.values.set(key, { i, v: 1 });
    // Only one peer hears of it when i is odd: the rest must come from the writer's transfer.
    push(cores, put, i % 2 === 1 ? replicationOf(put).peers.slice(0, 1) : undefined);
    if (i % 3 === 0) {
      // Overwritten at another member that has the first write.
      const other = members.find((c) => c !== first && c.replica?.covers(m.c[c.shard as ShardId] ?? {})) ?? first;
      const over = kv(other, 'PUT', key, { value: { i, v: 2 }, 'causal-metadata': m });
      m = metadataOf(replyOf(over));
      model.values.set(key, { i, v: 2 });
      push(cores, over, i % 2 === 1 ? [] : undefined);
    }
    if (i % 5 === 0) {
      const del = kv(first, 'DELETE', key, { 'causal-metadata': m });
      if (del.kind === 'reply') {
        m = metadataOf(replyOf(del));
        model.values.set(key, undefined);
        push(cores, del, []);
      } else {
        assert.equal(del.kind, 'wait');
      }
    }
    model.metadata.set(key, m);
  }
  return model;
}

function transfersOf(core: NodeCore, epoch: Epoch, holdings?: Holdings): Map<NodeAddress, Transfer> {
  const everyone = new Set([...core.view(), ...Object.values(core.reshardInProgress?.map.shards ?? {}).flat()]);
  const transfers = drive(core).reshardTransfers(epoch, everyone, undefined, holdings === undefined ? undefined : new Map(Object.entries(wire(Object.fromEntries(holdings))) as [NodeAddress, TransferClaim][]));
  assert.ok(transfers, `transfers of ${core.self}`);
  return transfers;
}

function deliverTransfer(to: NodeCore, epoch: Epoch, transfer: Transfer): boolean {
  return drive(to).acceptTransfer(epoch, wire(transfer.versions), wire(transfer.claim));
}

/** Prepare everywhere, then send every core's transfers to their targets. */
function prepareAndTransfer(cores: NodeCore[], plan: ShardMap, coordinator: NodeAddress, sends: (core: NodeCore) => boolean = () => true): void {
  for (const core of cores) assert.equal(drive(core).prepareReshard(wire(plan), coordinator, 0).ok, true);
  for (const core of cores) {
    for (const [to, transfer] of transfersOf(core, plan.epoch)) {
      assert.ok(deliverTransfer(byAddress(cores, to), plan.epoch, transfer), `transfer ${core.self} -> ${to}`);
    }
    // Every transfer delivered: phase 2 is done at this node (the runtime marks it so).
    if (sends(core)) drive(core).markSent(plan.epoch);
  }
}

/**
 * The coordinator's three phases as the runtime sequences them, with the core's rules deciding
 * after each phase whether to go on (afterPrepare, afterSend): every answer is what a node's route
 * would return.
 */
function reshard(cores: NodeCore[], count: number, commitFirst?: (core: NodeCore) => boolean): ShardMap {
  const coordinator = cores[0] as NodeCore;
  assert.equal(coordinator.checkReshard(count), null);
  const plan = wire(coordinator.planReshard(count));
  // Phase 1: every node freezes.
  const holdings = new Map<NodeAddress, TransferClaim>();
  const prepares = cores.map((core) => {
    const prepared = drive(core).prepareReshard(wire(plan), coordinator.self, 1000);
    assert.ok(prepared.ok, `prepare at ${core.self}`);
    assert.ok(core.reshardInProgress);
    if (prepared.holding !== null) holdings.set(core.self, wire(prepared.holding));
    return { status: 200, body: { ok: true } };
  });
  const afterPhase1 = afterPrepare(coordinator.map, plan, cores.map((c) => c.self), prepares);
  assert.equal(afterPhase1.kind, 'send');
  const prepared = afterPhase1.kind === 'send' ? afterPhase1.prepared : [];
  // Phase 2: once all are frozen, each sends what it holds to the nodes that took part, leaving
  // out what the prepare answers show some replica sends anyway (as the runtime does).
  const transfers = new Map<NodeAddress, Map<NodeAddress, Transfer>>();
  for (const core of cores) transfers.set(core.self, transfersOf(core, plan.epoch, holdings));
  const sends = prepared.map((from) => {
    const failed: NodeAddress[] = [];
    for (const [to, transfer] of transfers.get(from) ?? new Map<NodeAddress, Transfer>()) {
      assert.notEqual(to, from);
      if (!deliverTransfer(byAddress(cores, to), plan.epoch, transfer)) failed.push(to);
    }
    if (failed.length === 0) drive(byAddress(cores, from)).markSent(plan.epoch);
    return { status: 200, body: { ok: true, failed } };
  });
  assert.deepEqual(afterSend(prepared, sends), { kind: 'commit' });
  // Phase 3: every node switches epoch.
  const order = commitFirst ? [...cores.filter(commitFirst), ...cores.filter((c) => !commitFirst(c))] : cores;
  for (const core of order) assert.equal(drive(core).commitReshard(plan.epoch).outcome, 'committed');
  return plan;
}

function assertAfterReshard(cores: NodeCore[], model: Model, plan: ShardMap): void {
  for (const core of cores) {
    assert.equal(core.map.epoch, plan.epoch);
    assert.equal(core.reshardInProgress, null);
    assert.ok(core.ready);
  }
  const live = [...model.values.values()].filter((v) => v !== undefined).length;
  let counted = 0;
  for (const shard of shardIds(plan)) {
    const members = cores.filter((c) => c.shard === shard);
    assert.ok(members.length >= 2, `shard ${shard} has ${members.length} members`);
    const counts = members.map((c) => c.replica?.liveKeyCount());
    assert.ok(counts.every((n) => n === counts[0]), `members of ${shard} agree on the key count: ${counts}`);
    counted += counts[0] as number;
  }
  assert.equal(counted, live, 'every live key in exactly one shard');

  for (const [key, value] of model.values) {
    const shard = shardOfKey(plan, key);
    const metadata = model.metadata.get(key) as CausalMetadata;
    for (const core of cores) {
      const decision = kv(core, 'GET', key, { 'causal-metadata': metadata });
      if (core.shard !== shard) {
        assert.equal(decision.kind, 'forward', `${core.self} forwards ${key}`);
        assert.equal((decision as { shard: ShardId }).shard, shard);
        continue;
      }
      const reply = replyOf(decision);
      if (value === undefined) {
        assert.deepEqual(reply, { status: 404, body: { error: 'Key does not exist' } }, `${key} stays deleted at ${core.self}`);
      } else {
        assert.equal(reply.status, 200, `${key} at ${core.self}`);
        assert.deepEqual(reply.body.value, value, `${key} at ${core.self} has the latest value`);
        assert.equal(reply.body['shard-id'], shard);
        assert.equal(metadataOf(reply).e, plan.epoch);
      }
    }
  }
}

for (const [count, from, to] of [
  [6, 2, 3],
  [6, 3, 2],
  [4, null, 2],
  [5, 2, 1],
  [8, 4, 2],
] as const) {
  test(`reshard ${from ?? 'replicated'} -> ${to} over ${count} nodes: every key readable at its new shard with pre-reshard metadata`, () => {
    const cores = cluster(count, from);
    const model = populate(cores, 80, count);
    const plan = reshard(cores, to);
    assertAfterReshard(cores, model, plan);

    // Writes after the reshard win over the carried-over data, and replicate in the new epoch.
    for (const key of [...model.values.keys()].slice(0, 10)) {
      const shard = shardOfKey(plan, key);
      const [first, second] = cores.filter((c) => c.shard === shard) as [NodeCore, NodeCore];
      const put = kv(second, 'PUT', key, { value: 'new', 'causal-metadata': model.metadata.get(key) ?? null });
      const reply = replyOf(put);
      assert.equal(reply.status, model.values.get(key) === undefined ? 201 : 200);
      assert.equal(metadataOf(reply).e, plan.epoch);
      push(cores, put);
      assert.equal(replyOf(kv(first, 'GET', key, { 'causal-metadata': metadataOf(reply) })).body.value, 'new');
    }
  });
}

test("phase 2 sends a version a receiver lacks once, from its old shard's full sender, and nothing it holds already", () => {
  const cores = cluster(6, 2);
  const model = populate(cores, 0, 0);
  // Every write reaches every replica of its shard: the old shards' replicas agree.
  for (let i = 0; i < 60; i++) {
    const key = `key${i}`;
    const members = cores.filter((c) => c.shard === shardOfKey(cores[0]!.map, key));
    const put = kv(members[0]!, 'PUT', key, { value: i, 'causal-metadata': null });
    model.values.set(key, i);
    model.metadata.set(key, metadataOf(replyOf(put)));
    push(cores, put);
  }
  const plan = wire(cores[0]!.planReshard(3));
  const holdings = new Map<NodeAddress, TransferClaim>();
  for (const core of cores) {
    const prepared = drive(core).prepareReshard(wire(plan), cores[0]!.self, 0);
    assert.ok(prepared.ok && prepared.holding !== null);
    assert.equal(prepared.holding.shard, core.shard);
    holdings.set(core.self, prepared.holding);
  }
  const old = cores[0]!.map;
  const fulls = new Set(shardIds(old).map((shard) => [...holdings].filter(([, h]) => h.shard === shard).map(([n]) => n).sort()[0]));
  const received = new Map<NodeAddress, string[]>();
  for (const core of cores) {
    for (const [to, transfer] of transfersOf(core, plan.epoch, holdings)) {
      if (transfer.versions.length > 0) assert.ok(fulls.has(core.self), `${core.self} sends versions though its shard's full sender has them all`);
      received.set(to, [...(received.get(to) ?? []), ...transfer.versions.map((v) => v.key)]);
    }
  }
  for (const core of cores) {
    const next = shardOfNode(plan, core.self);
    const wanted = [...model.values.keys()].filter((key) => shardOfKey(plan, key) === next && shardOfKey(old, key) !== core.shard).sort();
    assert.deepEqual((received.get(core.self) ?? []).sort(), wanted, `${core.self} gets each key it lacks once, and none it holds`);
  }
});

test("a node whose replica was replaced since it prepared refuses phase 2: the others counted on what it declared", () => {
  const cores = cluster(4, 2);
  populate(cores, 20, 4);
  const [a] = cores as [NodeCore];
  const plan = wire(a.planReshard(1));
  assert.ok(drive(a).prepareReshard(plan, a.self, 0).ok);
  // A copy from a peer begins: the replica that prepared is gone.
  drive(a).step({ kind: 'full-sync-begin' });
  assert.equal(drive(a).reshardTransfers(plan.epoch, new Set(nodes(4))), null);
});

test('a node in no shard before the reshard gets one, with its data', () => {
  const cores = cluster(4, 2);
  const joiner = makeCore(nodeAddress('10.10.0.60:8090'), [...nodes(4), nodeAddress('10.10.0.60:8090')], cores[0]!.map);
  for (const core of cores) drive(core).putView(joiner.self);
  assert.equal(joiner.shard, null);
  assert.equal(joiner.replica, null);
  const all = [...cores, joiner];
  // Before: the joiner forwards every key.
  assert.equal(kv(joiner, 'GET', 'key1', {}).kind, 'forward');
  const model = populate(cores, 40, 1);
  const plan = reshard(all, 2);
  assert.notEqual(joiner.shard, null);
  assertAfterReshard(all, model, plan);
});

test("a write during prepare gets wait 'reshard'; reads are still served; abort unfreezes", () => {
  const cores = cluster(4, 2);
  const a = cores[0] as NodeCore;
  const key = Array.from({ length: 100 }, (_, i) => `k${i}`).find((k) => shardOfKey(a.map, k) === a.shard) as string;
  const put = kv(a, 'PUT', key, { value: 1, 'causal-metadata': null });
  const m = metadataOf(replyOf(put));
  const plan = a.planReshard(2);
  assert.ok(drive(a).prepareReshard(plan, a.self, 0).ok);
  assert.deepEqual(kv(a, 'PUT', key, { value: 2, 'causal-metadata': m }), { kind: 'wait', reason: 'reshard' });
  assert.deepEqual(kv(a, 'DELETE', key, { 'causal-metadata': m }), { kind: 'wait', reason: 'reshard' });
  assert.equal(replyOf(kv(a, 'GET', key, { 'causal-metadata': m })).body.value, 1);
  // A second coordinator with another plan is refused while this one is in progress.
  const rival = drive(a).prepareReshard({ ...plan, partitions: [...plan.partitions].reverse() }, cores[1]!.self, 0);
  assert.equal(rival.ok, false);
  // A plan that skips an epoch is refused.
  assert.equal(drive(cores[1]!).prepareReshard({ ...plan, epoch: nextEpoch(plan.epoch) }, a.self, 0).ok, false);
  drive(a).abortReshard(plan.epoch);
  assert.equal(a.reshardInProgress, null);
  assert.equal(replyOf(kv(a, 'PUT', key, { value: 3, 'causal-metadata': m })).status, 200);
});

test("metadata of the new epoch waits with 'epoch' at a node that has not committed yet", () => {
  const cores = cluster(6, 2);
  populate(cores, 20, 0);
  const coordinator = cores[0] as NodeCore;
  const plan = coordinator.planReshard(3);
  prepareAndTransfer(cores, plan, coordinator.self);
  // Only the first node of each new shard commits for now.
  const early = shardIds(plan).map((s) => cores.find((c) => shardOfNode(plan, c.self) === s) as NodeCore);
  for (const core of early) assert.equal(drive(core).commitReshard(plan.epoch).outcome, 'committed');
  const late = cores.filter((c) => !early.includes(c));
  for (const e of early) {
    const key = Array.from({ length: 200 }, (_, i) => `n${i}`).find((k) => shardOfKey(plan, k) === e.shard) as string;
    const put = kv(e, 'PUT', key, { value: 'fresh', 'causal-metadata': null });
    const m = metadataOf(replyOf(put));
    assert.equal(m.e, plan.epoch);
    // An uncommitted node that serves this key under the old map must not answer from the old epoch.
    for (const l of late) {
      const decision = kv(l, 'GET', key, { 'causal-metadata': m });
      if (decision.kind === 'forward') continue;
      assert.deepEqual(decision, { kind: 'wait', reason: 'epoch' }, `${l.self} for ${key}`);
    }
  }
  for (const core of late) assert.equal(drive(core).commitReshard(plan.epoch).outcome, 'committed');
});

test('a write that reaches a peer only during the freeze is carried by that peer, even if its writer sends nothing', () => {
  const cores = cluster(4, 1);
  const [a, b] = cores as [NodeCore, NodeCore];
  const put = kv(a, 'PUT', 'late', { value: 'in flight', 'causal-metadata': null });
  const m = metadataOf(replyOf(put));
  const plan = a.planReshard(2);
  for (const core of cores) assert.equal(drive(core).prepareReshard(wire(plan), a.self, 0).ok, true);
  // The push was in flight when the freeze began; it lands now.
  push(cores, put, [b.self]);
  // Every node but the writer sends its transfers (the writer's are lost, so it is not counted).
  for (const core of cores) {
    const transfers = transfersOf(core, plan.epoch);
    if (core === a) continue;
    for (const [to, transfer] of transfers) deliverTransfer(byAddress(cores, to), plan.epoch, transfer);
    drive(core).markSent(plan.epoch);
  }
  for (const core of cores) assert.equal(drive(core).commitReshard(plan.epoch).outcome, core === a ? 'missed' : 'committed');
  // The writer, not counted, copies its new shard before serving; every other member has the write.
  assert.equal(a.map.epoch, plan.epoch);
  assert.equal(a.ready, a.replica === null);
  const shard = shardOfKey(plan, 'late');
  for (const core of cores.filter((c) => c.shard === shard && c !== a)) {
    assert.equal(replyOf(kv(core, 'GET', 'late', { 'causal-metadata': m })).body.value, 'in flight', `at ${core.self}`);
  }
});

test('adoptMap: a peer that committed the prepared epoch commits this node too', () => {
  const cores = cluster(4, 2);
  const model = populate(cores, 30, 2);
  const coordinator = cores[0] as NodeCore;
  const plan = coordinator.planReshard(2);
  prepareAndTransfer(cores, plan, coordinator.self);
  assert.equal(drive(coordinator).commitReshard(plan.epoch).outcome, 'committed');
  for (const core of cores.slice(1)) {
    drive(core).markSent(plan.epoch);
    assert.deepEqual(drive(core).adoptMap(wire(coordinator.map)), { changed: true, needsFullSync: false, orphaned: null });
  }
  assertAfterReshard(cores, model, plan);
});

test('a node that missed a reshard hands what it held, writes made while cut off included, to the new owners', () => {
  const cores = cluster(6, 2);
  const late = cores[5] as NodeCore;
  const others = cores.slice(0, 5);
  // Cut off, `late` still takes a write of its own shard (availability).
  let key = '';
  for (let i = 0; key === ''; i++) if (shardOfKey(late.map, `cut-${i}`) === late.shard) key = `cut-${i}`;
  assert.equal(replyOf(kv(late, 'PUT', key, { value: 'written while cut off' })).status, 201);
  // The others reshard without it (it is out of their view).
  for (const core of others) drive(core).deleteView(late.self, 'down');
  const coordinator = others[0] as NodeCore;
  const plan = coordinator.planReshard(2);
  assert.ok(!Object.values(plan.shards).flat().includes(late.self), 'the cut-off node is in no shard of the new map');
  prepareAndTransfer(others, plan, coordinator.self);
  for (const core of others) assert.equal(drive(core).commitReshard(plan.epoch).outcome, 'committed');
  // Back, it learns the new map: its old replica is dropped, and its versions come back to it.
  const change = drive(late).adoptMap(wire(coordinator.map));
  assert.ok(change.changed);
  assert.equal(late.replica, null);
  const orphaned = change.changed ? change.orphaned : null;
  assert.ok(orphaned);
  assert.deepEqual(orphaned.versions.map((v) => v.key), [key]);
  const oldShard = shardOfKey(cores[0]?.map as ShardMap, key);
  const oldEpoch = plan.epoch - 1;
  // A client that saw the write (in the old epoch) is not served without it at epoch 1.
  const metadata = { v: 1, e: oldEpoch, c: { [oldShard]: { [late.self]: 1 } } };
  const owners = membersOf(plan, shardOfKey(plan, key)) ?? [];
  for (const owner of owners) {
    const wait = kv(byAddress(cores, owner), 'GET', key, { 'causal-metadata': metadata });
    assert.deepEqual(wait, { kind: 'wait', reason: 'handover' }, `the client waits at ${owner}`);
  }
  // They go to every member of the key's new shard, as base versions of the new epoch; every member
  // of the new map learns what they reflect.
  const transfers = late.lateTransfers(orphaned);
  assert.deepEqual([...transfers.keys()].sort(), Object.values(plan.shards).flat().sort());
  for (const [node, versions] of transfers) {
    const target = byAddress(cores, node);
    if (!owners.includes(node)) {
      assert.deepEqual(versions, []);
      continue;
    }
    assert.deepEqual(
      versions.map((v) => [v.key, v.dot, v.deps, v.past]),
      [[key, null, {}, { [oldEpoch]: { [oldShard]: { [late.self]: 1 } } }]],
      'a base version keeps its old dot in its past',
    );
    assert.equal(drive(target).onRepair(plan.epoch, target.shard as ShardId, wire(versions), wire(orphaned.reflected)), 1);
    const read = replyOf(kv(target, 'GET', key, { 'causal-metadata': metadata }));
    assert.equal(read.body.value, 'written while cut off');
    assert.deepEqual((read.body['causal-metadata'] as { o?: unknown }).o, { [oldEpoch]: { [oldShard]: { [late.self]: 1 } } });
  }
});

test('a transfer whose last part never arrived: clients that depend on its sender wait, until a peer that got it shares its base', () => {
  const cores = cluster(4, 1);
  const [a, b] = cores as [NodeCore, NodeCore];
  // Only a has this write (its push is still in flight) when the store reshards to 2 shards.
  const put = kv(a, 'PUT', 'only-at-a', { value: 'v', 'causal-metadata': null });
  const m = metadataOf(replyOf(put));
  const plan = a.planReshard(2);
  for (const core of cores) assert.equal(drive(core).prepareReshard(wire(plan), a.self, 0).ok, true);
  const owners = cores.filter((c) => (membersOf(plan, shardOfKey(plan, 'only-at-a')) ?? []).includes(c.self));
  const [reached, missed] = owners as [NodeCore, NodeCore];
  for (const core of cores) {
    for (const [to, transfer] of transfersOf(core, plan.epoch)) {
      // a's transfer to `missed` loses its last part: versions and claim.
      if (core === a && to === missed.self) continue;
      assert.ok(deliverTransfer(byAddress(cores, to), plan.epoch, transfer));
    }
    // (The coordinator counts every node here: the core must still make `missed` wait, not serve stale data.)
    drive(core).markSent(plan.epoch);
  }
  for (const core of cores) assert.equal(drive(core).commitReshard(plan.epoch).outcome, 'committed');
  assert.equal(replyOf(kv(reached, 'GET', 'only-at-a', { 'causal-metadata': m })).body.value, 'v');
  assert.deepEqual(kv(missed, 'GET', 'only-at-a', { 'causal-metadata': m }), { kind: 'wait', reason: 'handover' });
  // A client without that dependency is served by `missed` (it has no reason to wait).
  assert.equal(replyOf(kv(missed, 'GET', 'only-at-a', {})).status, 404);
  // `missed` pulls from `reached`, naming what its base reflects: the answer carries the base.
  const shard = missed.shard as ShardId;
  const answer = drive(reached).onSyncRequest(plan.epoch, shard, wire(missed.replica?.applied ?? {}), false, wire(missed.replica?.base ?? {}));
  assert.ok(answer.ok && answer.base, 'the base comes along');
  assert.ok(drive(missed).onSyncResponse(plan.epoch, shard, wire(answer.versions), wire(answer.applied), wire(answer.base)));
  assert.equal(replyOf(kv(missed, 'GET', 'only-at-a', { 'causal-metadata': m })).body.value, 'v');
  // Once the bases agree, a pull carries no base versions.
  const again = drive(reached).onSyncRequest(plan.epoch, shard, wire(missed.replica?.applied ?? {}), false, wire(missed.replica?.base ?? {}));
  assert.ok(again.ok && again.base === undefined);
  assert.deepEqual(again.versions, []);
});

test('two reshards in a row: metadata from two epochs back is still checked, and served', () => {
  const cores = cluster(6, 2);
  const model = populate(cores, 40, 2);
  const first = reshard(cores, 3);
  const second = reshard(cores, 2);
  assert.equal(second.epoch, first.epoch + 1);
  const twoBack = String(first.epoch - 1);
  for (const core of cores) {
    const base = core.replica?.base ?? {};
    // No one wrote in the middle epoch; what was applied two epochs back is still reflected (through
    // the middle epoch's bases, the worst of its old shards counting), so those clients are served...
    assert.ok(base[twoBack] && Object.keys(base[twoBack]).length > 0, `${core.self} reflects epoch ${twoBack}`);
  }
  assertAfterReshard(cores, model, second);
  // ...while a dependency two epochs back that no transfer ever carried still waits.
  const key = [...model.values.keys()][0] as string;
  const member = memberOf(cores, shardOfKey(second, key));
  // (A writer the store knows, with a counter no write of it ever reached.)
  const forged = { v: 1, e: Number(twoBack), c: { s0: { [cores[0]!.self]: 1_000_000 } } };
  assert.deepEqual(kv(member, 'GET', key, { 'causal-metadata': forged }), { kind: 'wait', reason: 'handover' });
});

test('a node that prepared but never sent its data does not commit through a peer: it hands the data over as having missed the reshard', () => {
  const cores = cluster(4, 2);
  populate(cores, 20, 2);
  const coordinator = cores[0] as NodeCore;
  const plan = coordinator.planReshard(2);
  const silent = cores[3] as NodeCore;
  prepareAndTransfer(cores, plan, coordinator.self, (core) => core !== silent);
  assert.equal(drive(coordinator).commitReshard(plan.epoch).outcome, 'committed');
  // `silent` froze, but the coordinator never heard it sent: it did not count it.
  const held = silent.replica?.size ?? 0;
  const change = drive(silent).adoptMap(wire(coordinator.map));
  assert.ok(change.changed && change.needsFullSync, 'it copies its new shard from a peer');
  assert.equal(change.changed && change.orphaned?.versions.length, held, 'and hands over all it held');
  assert.equal(silent.reshardInProgress, null);
});

test('add-member sent to the node being added: it becomes a replica and copies the shard before serving', () => {
  const cores = cluster(4, 2);
  const joiner = makeCore(nodeAddress('10.10.0.60:8090'), [...nodes(4), nodeAddress('10.10.0.60:8090')], cores[0]!.map);
  for (const core of cores) drive(core).putView(joiner.self);
  assert.equal(joiner.shard, null, 'in no shard yet');
  const reply = drive(joiner).addMember(shardIdFor(1), joiner.self);
  assert.deepEqual({ status: reply.status, body: reply.body }, { status: 200, body: { result: MESSAGES.nodeAddedToShard } });
  assert.equal(reply.joined, true);
  assert.equal(joiner.replica?.shard, 's1');
  assert.equal(joiner.ready, false, 'it waits for its copy');
  // Any other node that records the membership has nothing to copy.
  assert.equal(drive(cores[0]!).addMember(shardIdFor(1), joiner.self).joined, undefined);
});

test("tombstones are collected only once this replica has every member's own writes up to its ping", () => {
  const cores = cluster(3, 1);
  const [a, b, c] = cores as [NodeCore, NodeCore, NodeCore];
  const put = kv(b, 'PUT', 'k', { value: 1 });
  push(cores, put);
  const del = kv(b, 'DELETE', 'k', { 'causal-metadata': metadataOf(replyOf(put)) });
  push(cores, del);
  // c wrote another key that a has not received yet when the pings are taken.
  const other = kv(c, 'PUT', 'j', { value: 2 });
  push(cores, other, [b.self]);
  const pings = () => new Map([b, c].map((core) => [core.self, wire(core.pingInfo().applied)]));
  assert.equal(drive(a).collectTombstones(pings()), 0, 'a lacks a write c had made: it waits');
  push(cores, other, [a.self]);
  assert.equal(drive(a).collectTombstones(pings()), 1);
});

test('a restart restores base versions and base clocks together', () => {
  const cores = cluster(4, 2);
  populate(cores, 20, 1);
  const plan = reshard(cores, 2);
  const core = cores[0] as NodeCore;
  const replica = core.replica;
  assert.ok(replica && replica.size > 0 && Object.keys(replica.base).length > 0);
  const saved = wire({
    epoch: plan.epoch,
    shard: replica.shard,
    applied: replica.applied,
    lamport: replica.lamport,
    base: replica.base,
    versions: [...replica.allVersions()],
  });
  const restarted = makeCore(core.self, nodes(4), plan);
  assert.ok(drive(restarted).restoreReplica(saved));
  assert.equal(restarted.replica?.size, replica.size, 'every base version is back');
  assert.deepEqual(restarted.replica?.base, replica.base);
});

test('without a MAC, metadata may name only shards and nodes of the store: forged writers and shards are 400', () => {
  const cores = cluster(4, 2);
  const [s0, s1] = shardIds(cores[0]!.map) as [ShardId, ShardId];
  const at0 = memberOf(cores, s0);
  const member1 = (membersOf(at0.map, s1) ?? [])[0]!;
  const key = Array.from({ length: 100 }, (_, i) => `k${i}`).find((k) => shardOfKey(at0.map, k) === s0)!;
  const epoch = at0.map.epoch;
  const cases: [string, unknown, RegExp][] = [
    ['an unknown writer', { v: 1, e: epoch, c: { [s1]: { '10.66.66.66:8090': 9007199254740991 } } }, /10\.66\.66\.66:8090, which is not a node of this store/],
    ['a shard the store does not have', { v: 1, e: epoch, c: { s7: { [member1]: 1 } } }, /shard s7, which epoch/],
    ['a shard of an epoch it never had, far beyond its size', { v: 1, e: epoch + 5, c: { s40: { [member1]: 1 } } }, /shard s40/],
    ['an unknown writer in an old epoch', { v: 1, e: epoch + 1, c: {}, o: { [String(epoch)]: { [s1]: { '10.66.0.1:8090': 1 } } } }, /10\.66\.0\.1:8090/],
  ];
  for (const [what, metadata, message] of cases) {
    const reply = replyOf(kv(at0, 'PUT', key, { value: 1, 'causal-metadata': metadata }));
    assert.equal(reply.status, 400, what);
    assert.match(String(reply.body.error), message, what);
  }
  // A real writer of the other shard is taken (this shard does not check other shards' counters).
  const real = kv(at0, 'PUT', key, { value: 1, 'causal-metadata': { v: 1, e: epoch, c: { [s1]: { [member1]: 5 } } } });
  assert.equal(replyOf(real).status, 201);
  // With a cluster secret the MAC decides instead: the same forged writer is not refused here.
  const trusting = new NodeCore({ self: at0.self, pendingMax: 1000, failuresToRemove: 3, holdDownMs: 3000, checkMetadataOrigin: false }, nodes(4), wire(at0.map));
  const forged = kv(trusting, 'GET', key, { 'causal-metadata': { v: 1, e: epoch, c: { [s1]: { '10.66.66.66:8090': 1 } } } });
  assert.notEqual(forged.kind === 'reply' ? forged.reply.status : 0, 400);
});
