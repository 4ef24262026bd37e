// The consistency checker on hand-written histories (each kind of anomaly is caught, with the
// right operations named; legal histories pass), then properties: histories of a sequentially
// consistent model never fail; making one read stale is always caught; the compact causal
// representation agrees with a brute-force one built from explicit sets; and a 100k-operation
// history is checked in a few seconds.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { buildCausalIndex } from '../../harness/check/causal.ts';
import { checkHistory, formatReport, type CheckResult, type ReplicaState } from '../../harness/check/checker.ts';
import { HistoryError, isAbsentRead, isValueRead, isWrite, valueKey, type Operation, type Outcome } from '../../harness/check/history.ts';

// ------------------------------------------------------------------ a script for hand-written histories

// Each call appends one operation starting after the previous one ended (unless told otherwise),
// so a test reads as the sequence of what the clients did.
const ABSENT: unique symbol = Symbol('absent');

interface Timing {
  outcome?: Outcome;
  node?: string;
  startMs?: number;
  endMs?: number;
}

class Script {
  readonly ops: Operation[] = [];
  #t = 0;
  #nextId = 1;

  #add(fields: Pick<Operation, 'client' | 'kind' | 'key'> & Partial<Operation>, timing: Timing): Operation {
    const startMs = timing.startMs ?? this.#t;
    const endMs = timing.endMs ?? startMs + 1;
    this.#t = Math.max(this.#t, endMs) + 1;
    const op: Operation = { id: this.#nextId++, node: timing.node ?? 'n1', startMs, endMs, outcome: timing.outcome ?? 'ok', ...fields };
    this.ops.push(op);
    return op;
  }

  put(client: string, key: string, value: unknown, timing: Timing = {}): Operation {
    const outcome = timing.outcome ?? 'ok';
    return this.#add({ client, kind: 'put', key, value, ...(outcome === 'ok' ? { status: 200 } : {}) }, timing);
  }

  /** A get that returned `value`, or 404 for ABSENT; with outcome fail/unknown the value is ignored. */
  get(client: string, key: string, value: unknown, timing: Timing = {}): Operation {
    if ((timing.outcome ?? 'ok') !== 'ok') return this.#add({ client, kind: 'get', key }, timing);
    if (value === ABSENT) return this.#add({ client, kind: 'get', key, found: false, status: 404 }, timing);
    return this.#add({ client, kind: 'get', key, found: true, status: 200, readValue: value }, timing);
  }

  /** A delete; `deleted: false` is a delete answered 404. */
  del(client: string, key: string, timing: Timing & { deleted?: boolean } = {}): Operation {
    const outcome = timing.outcome ?? 'ok';
    if (outcome !== 'ok') return this.#add({ client, kind: 'delete', key }, timing);
    const deleted = timing.deleted ?? true;
    return this.#add({ client, kind: 'delete', key, deleted, status: deleted ? 200 : 404 }, timing);
  }
}

const replica = (node: string, data: Record<string, unknown>, shard = 's0'): ReplicaState => ({ node, shard, data });
const ids = (list: readonly { id: number }[]): number[] => list.map((o) => o.id);

function assertClean(result: CheckResult): void {
  assert.equal(result.valid, true, formatReport(result));
}

// ------------------------------------------------------------------ hand-written histories

test('a clean history passes: reads, deletes, 404s, concurrent clients, consistent replicas', () => {
  const s = new Script();
  s.get('c3', 'z', ABSENT); // never written
  s.put('c1', 'x', 'x1');
  s.put('c1', 'y', 'y1', { node: 'n2' });
  s.get('c2', 'y', 'y1');
  s.get('c2', 'x', 'x1');
  s.get('c2', 'x', 'x1', { node: 'n2' });
  s.del('c2', 'x');
  s.get('c2', 'x', ABSENT);
  s.del('c2', 'x', { deleted: false }); // 404: still absent
  s.get('c1', 'x', 'x1'); // c1 has not seen the delete: its own write is still fine
  s.get('c1', 'x', ABSENT); // and the delete (causally later) is fine too
  s.put('c1', 'x', 'x2');
  s.get('c1', 'x', 'x2');
  s.get('c3', 'x', 'x2');
  const result = checkHistory(s.ops, [replica('n1', { x: 'x2', y: 'y1' }), { node: 'n2', shard: 's0', data: new Map([['x', 'x2'], ['y', 'y1']]) }]);
  assertClean(result);
  assert.equal(result.ops, s.ops.length);
  assert.equal(result.ok, s.ops.length);
  assert.equal(result.failed + result.unknown, 0);
});

test('read-your-writes: a read older than the client’s own write', () => {
  const s = new Script();
  const a1 = s.put('c1', 'x', 'a1');
  const a2 = s.put('c1', 'x', 'a2');
  const r = s.get('c1', 'x', 'a1', { node: 'n2' });
  const { causalViolations: v } = checkHistory(s.ops);
  assert.equal(v.length, 1);
  const [only] = v;
  assert.equal(only?.kind, 'stale-read');
  assert.equal(only?.rule, 'read-your-writes');
  assert.equal(only?.op.id, r.id);
  assert.equal(only?.op.node, 'n2');
  assert.equal(only?.returned?.id, a1.id);
  assert.equal(only?.newer?.id, a2.id);
  assert.equal(only?.via?.id, a2.id);
  assert.match(only?.explanation ?? '', /client c1 get "x" \(op 3 at n2\) returned "a1".*"a2" \(op 2 by c1\).*read-your-writes/);
});

test('monotonic reads: a read older than what the client read before', () => {
  const s = new Script();
  s.put('c1', 'x', 'a1');
  const a2 = s.put('c1', 'x', 'a2');
  const r1 = s.get('c2', 'x', 'a2');
  const r2 = s.get('c2', 'x', 'a1');
  const [v, ...rest] = checkHistory(s.ops).causalViolations;
  assert.equal(rest.length, 0);
  assert.equal(v?.op.id, r2.id);
  assert.equal(v?.newer?.id, a2.id);
  assert.equal(v?.via?.id, r1.id);
  assert.equal(v?.rule, 'monotonic-reads');
});

test('a stale read through a transitive dependency across two keys (and shards) is caught', () => {
  const s = new Script();
  const x0 = s.put('c1', 'x', 'x0', { node: 'shard0-a' });
  const x1 = s.put('c1', 'x', 'x1', { node: 'shard0-a' });
  s.put('c1', 'y', 'y1', { node: 'shard1-a' });
  const ry = s.get('c2', 'y', 'y1', { node: 'shard1-b' });
  const rx = s.get('c2', 'x', 'x0', { node: 'shard0-b' });
  const { causalViolations: v } = checkHistory(s.ops);
  assert.equal(v.length, 1);
  assert.equal(v[0]?.kind, 'stale-read');
  assert.equal(v[0]?.op.id, rx.id);
  assert.equal(v[0]?.returned?.id, x0.id);
  assert.equal(v[0]?.newer?.id, x1.id);
  assert.equal(v[0]?.via?.id, ry.id);
  assert.equal(v[0]?.rule, 'causal');
  assert.match(v[0]?.explanation ?? '', /through op 4 \(get "y" returned "y1", which depended on op 2\)/);
});

test('a dependency carried through a third client’s write is caught (transitive past of a write)', () => {
  const s = new Script();
  const x1 = s.put('c1', 'x', 'x1');
  s.get('c2', 'x', 'x1');
  s.put('c2', 'y', 'y2'); // depends on x1
  const ry = s.get('c3', 'y', 'y2');
  const rx = s.get('c3', 'x', ABSENT);
  const { causalViolations: v } = checkHistory(s.ops);
  assert.equal(v.length, 1);
  assert.equal(v[0]?.kind, 'stale-absent');
  assert.equal(v[0]?.op.id, rx.id);
  assert.equal(v[0]?.newer?.id, x1.id);
  assert.equal(v[0]?.via?.id, ry.id);
});

test('a 404 for a key whose put is in the past is caught, for a get and for a delete', () => {
  const s = new Script();
  const p = s.put('c1', 'x', 'v1');
  const g = s.get('c1', 'x', ABSENT);
  const d = s.del('c1', 'x', { deleted: false });
  const { causalViolations: v } = checkHistory(s.ops);
  assert.deepEqual(
    v.map((x) => [x.kind, x.op.id, x.newer?.id]),
    [
      ['stale-absent', g.id, p.id],
      ['stale-absent', d.id, p.id],
    ],
  );
});

test('after a delete the value is gone: 404 is fine, the deleted value is stale', () => {
  const s = new Script();
  const p = s.put('c1', 'x', 'v1');
  const d = s.del('c1', 'x');
  s.get('c1', 'x', ABSENT);
  const r = s.get('c1', 'x', 'v1');
  const { causalViolations: v } = checkHistory(s.ops);
  assert.deepEqual(v.map((x) => [x.kind, x.op.id, x.returned?.id, x.newer?.id]), [['stale-read', r.id, p.id, d.id]]);
});

test('a 404 explained by another client’s delete (concurrent or later) is not a violation; a failed delete explains nothing', () => {
  const s = new Script();
  s.put('c1', 'x', 'v1');
  s.get('c2', 'x', 'v1');
  s.del('c3', 'x'); // concurrent with the put: c3 never saw it
  s.get('c2', 'x', ABSENT);
  assertClean(checkHistory(s.ops));

  const f = new Script();
  f.put('c1', 'x', 'v1');
  f.get('c2', 'x', 'v1');
  f.del('c3', 'x', { outcome: 'fail' });
  const r = f.get('c2', 'x', ABSENT);
  assert.deepEqual(checkHistory(f.ops).causalViolations.map((x) => [x.kind, x.op.id]), [['stale-absent', r.id]]);

  const u = new Script();
  u.put('c1', 'x', 'v1');
  u.get('c2', 'x', 'v1');
  u.del('c3', 'x', { outcome: 'unknown' }); // may have happened
  u.get('c2', 'x', ABSENT);
  assertClean(checkHistory(u.ops));

  const late = new Script();
  late.put('c1', 'x', 'v1');
  late.get('c2', 'x', 'v1');
  const r2 = late.get('c2', 'x', ABSENT);
  late.del('c3', 'x'); // begins after the read ended: cannot explain it
  assert.deepEqual(checkHistory(late.ops).causalViolations.map((x) => [x.kind, x.op.id]), [['stale-absent', r2.id]]);
});

test('an unknown write read by one client travels in the past of that client’s writes', () => {
  const s = new Script();
  s.put('c1', 'x', 'a');
  const u = s.put('c1', 'x', 'u', { outcome: 'unknown' });
  s.get('c2', 'x', 'u');
  s.put('c2', 'y', 'y2'); // depends on u
  const ry = s.get('c3', 'y', 'y2');
  const rx = s.get('c3', 'x', 'a');
  const { causalViolations: v } = checkHistory(s.ops);
  assert.deepEqual(v.map((x) => [x.kind, x.op.id, x.newer?.id, x.via?.id, x.rule]), [['stale-read', rx.id, u.id, ry.id, 'causal']]);
});

test('with a frozen clock, a client’s own later delete does not explain its 404', () => {
  const s = new Script();
  const at = { startMs: 0, endMs: 0 };
  const p = s.put('c1', 'x', 'v', at);
  const r = s.get('c1', 'x', ABSENT, at);
  s.del('c1', 'x', at);
  assert.deepEqual(checkHistory(s.ops).causalViolations.map((x) => [x.kind, x.op.id, x.newer?.id]), [['stale-absent', r.id, p.id]]);
});

test('phantom values: never written, written to another key, written by a failed put, written after the read', () => {
  const s = new Script();
  const never = s.get('c1', 'x', 'nobody-wrote-this');
  const y = s.put('c2', 'y', 'vy');
  const other = s.get('c1', 'x', 'vy');
  const failed = s.put('c2', 'x', 'vf', { outcome: 'fail' });
  const readFailed = s.get('c1', 'x', 'vf');
  const early = s.get('c3', 'x', 'vlate', { startMs: 100, endMs: 101 });
  const late = s.put('c2', 'x', 'vlate', { startMs: 200, endMs: 201 });
  const { causalViolations: v } = checkHistory(s.ops);
  assert.deepEqual(
    v.map((x) => [x.kind, x.op.id, x.returned?.id]),
    [
      ['phantom', never.id, undefined],
      ['phantom', other.id, y.id],
      ['phantom', readFailed.id, failed.id],
      ['phantom', early.id, late.id],
    ],
  );
  assert.match(v[0]?.explanation ?? '', /no operation wrote/);
  assert.match(v[1]?.explanation ?? '', /written to key "y"/);
  assert.match(v[2]?.explanation ?? '', /failed/);
  assert.match(v[3]?.explanation ?? '', /after this read ended/);
});

test('concurrent writes are not violations, in any read order', () => {
  const s = new Script();
  s.put('c1', 'x', 'a');
  s.put('c2', 'x', 'b');
  s.get('c3', 'x', 'a');
  s.get('c3', 'x', 'b');
  s.get('c3', 'x', 'a');
  s.del('c4', 'x');
  s.get('c3', 'x', ABSENT);
  s.get('c3', 'x', 'b');
  // Both replicas settled on one of the concurrent writes: nothing is lost.
  assertClean(checkHistory(s.ops, [replica('n1', { x: 'b' }), replica('n2', { x: 'b' })]));
  assertClean(checkHistory(s.ops, [replica('n1', {}), replica('n2', {})]));
});

test('unknown-outcome writes: in nobody’s past until read, then binding', () => {
  const s = new Script();
  s.put('c1', 'x', 'a');
  const b = s.put('c1', 'x', 'b', { outcome: 'unknown' }); // timed out
  s.put('c1', 'y', 'c'); // does not depend on b: c1's metadata never got it
  s.get('c2', 'y', 'c');
  s.get('c2', 'x', 'a'); // fine: b is not in c2's past
  s.get('c1', 'x', 'a'); // fine: not even in c1's own past
  const rb = s.get('c3', 'x', 'b'); // b took effect after all
  const ra = s.get('c3', 'x', 'a'); // a is older than b, which c3 now knows
  const { causalViolations: v } = checkHistory(s.ops);
  assert.deepEqual(v.map((x) => [x.kind, x.op.id, x.newer?.id, x.via?.id, x.rule]), [['stale-read', ra.id, b.id, rb.id, 'monotonic-reads']]);
});

test('an unknown write that was never read may vanish; one that was read must survive', () => {
  const s = new Script();
  s.put('c1', 'x', 'a');
  s.put('c1', 'x', 'b', { outcome: 'unknown' });
  s.put('c1', 'y', 'u', { outcome: 'unknown' });
  assertClean(checkHistory(s.ops, [replica('n1', { x: 'a' }), replica('n2', { x: 'a' })]));

  const r = new Script();
  const a = r.put('c1', 'x', 'a');
  const b = r.put('c1', 'x', 'b', { outcome: 'unknown' });
  r.get('c2', 'x', 'b');
  const result = checkHistory(r.ops, [replica('n1', { x: 'a' }), replica('n2', { x: 'a' })]);
  assert.deepEqual(result.causalViolations, []);
  assert.deepEqual(
    result.lostWrites.map((l) => [l.write.id, l.replicas.map((f) => [f.node, f.write?.id])]),
    [
      [
        b.id,
        [
          ['n1', a.id],
          ['n2', a.id],
        ],
      ],
    ],
  );
  assert.match(result.lostWrites[0]?.explanation ?? '', /read by a client/);
});

test('lost writes: an acknowledged write older on one replica, or absent with no delete to explain it', () => {
  const s = new Script();
  const a1 = s.put('c1', 'x', 'a1');
  const a2 = s.put('c1', 'x', 'a2');
  const y = s.put('c2', 'y', 'y1');
  const result = checkHistory(s.ops, [replica('n1', { x: 'a2', y: 'y1' }), replica('n2', { x: 'a1' })]);
  assert.deepEqual(result.causalViolations, []);
  assert.deepEqual(
    result.lostWrites.map((l) => [l.write.id, l.replicas.map((f) => `${f.node}:${f.present ? String(f.value) : 'absent'}`)]),
    [
      [a2.id, ['n2:a1']],
      [y.id, ['n2:absent']],
    ],
  );
  assert.equal(result.lostWrites[0]?.replicas[0]?.write?.id, a1.id);
  assert.match(result.lostWrites[0]?.explanation ?? '', /put "x" = "a2" \(op 2 by c1\) \(acknowledged\) is lost: n2 = "a1" \(op 1\)/);
  // The same disagreement is a divergence.
  assert.deepEqual(result.divergentKeys.map((d) => [d.kind, d.key]), [
    ['replicas-disagree', 'x'],
    ['replicas-disagree', 'y'],
  ]);
});

test('lost writes: superseded by a causally later write or delete is fine; an older value or a resurrection is not', () => {
  const s = new Script();
  const a = s.put('c1', 'x', 'a');
  s.get('c2', 'x', 'a');
  const b = s.put('c2', 'x', 'b'); // causally after a
  const finalB = [replica('n1', { x: 'b' }), replica('n2', { x: 'b' })];
  assertClean(checkHistory(s.ops, finalB));
  const finalA = checkHistory(s.ops, [replica('n1', { x: 'a' }), replica('n2', { x: 'a' })]);
  assert.deepEqual(finalA.lostWrites.map((l) => l.write.id), [b.id]);
  assert.deepEqual(finalA.divergentKeys, []);

  const d = new Script();
  d.put('c1', 'x', 'a');
  const del = d.del('c1', 'x');
  assertClean(checkHistory(d.ops, [replica('n1', {}), replica('n2', {})]));
  const resurrected = checkHistory(d.ops, [replica('n1', {}), replica('n2', { x: 'a' })]);
  assert.deepEqual(resurrected.lostWrites.map((l) => [l.write.id, l.write.kind, l.replicas.map((f) => f.node)]), [[del.id, 'delete', ['n2']]]);
  assert.equal(a.id, 1);

  const phantom = checkHistory(d.ops, [replica('n1', { x: 'zz' }), replica('n2', { x: 'zz' })]);
  assert.deepEqual(phantom.lostWrites.map((l) => l.write.id).sort(), [1, del.id].sort());
  assert.match(phantom.lostWrites[0]?.explanation ?? '', /never written/);
});

test('divergence: replicas of one shard that disagree after quiescence, and keys in two shards', () => {
  const s = new Script();
  const a = s.put('c1', 'x', 'a');
  const b = s.put('c2', 'x', 'b'); // concurrent with a: either may win, but all replicas must agree
  s.put('c1', 'k', 'k1');
  const result = checkHistory(s.ops, [
    replica('n1', { x: 'a', k: 'k1' }),
    replica('n2', { x: 'b', k: 'k1' }),
    replica('n3', { k: 'k1' }, 's1'),
    replica('n4', { k: 'k1' }, 's1'),
  ]);
  assert.deepEqual(result.causalViolations, []);
  assert.deepEqual(result.lostWrites, []);
  const disagree = result.divergentKeys.filter((d) => d.kind === 'replicas-disagree');
  assert.equal(disagree.length, 1);
  assert.equal(disagree[0]?.key, 'x');
  assert.deepEqual(disagree[0]?.shards, ['s0']);
  assert.deepEqual(disagree[0]?.replicas.map((f) => [f.node, f.write?.id]), [
    ['n1', a.id],
    ['n2', b.id],
  ]);
  assert.match(disagree[0]?.explanation ?? '', /replicas of shard s0 disagree on "x": n1 = "a" \(op 1\), n2 = "b" \(op 2\)/);
  const placement = result.divergentKeys.filter((d) => d.kind === 'shard-placement');
  assert.deepEqual(placement.map((d) => [d.key, d.shards]), [['k', ['s0', 's1']]]);

  // With the shard map given, a key is judged on its own shard only, and a copy elsewhere is reported.
  const withMap = checkHistory(s.ops, [replica('n1', { x: 'a' }), replica('n2', { x: 'a' }), replica('n3', { k: 'k1' }, 's1'), replica('n4', { k: 'k1' }, 's1')], {
    shardOf: () => 's0',
  });
  assert.deepEqual(withMap.lostWrites.map((l) => [l.write.key, l.replicas.map((f) => f.node)]), [['k', ['n1', 'n2']]]);
  assert.deepEqual(withMap.divergentKeys.map((d) => [d.kind, d.key]), [['shard-placement', 'k']]);
});

test('a read whose value depends on the read itself is a cycle', () => {
  // All at one instant (a frozen simulated clock), so no timestamp rules it out.
  const s = new Script();
  const at = { startMs: 0, endMs: 0 };
  s.get('c1', 'x', 'b', at);
  s.put('c1', 'y', 'a', at);
  const ry = s.get('c2', 'y', 'a', at);
  s.put('c2', 'x', 'b', at);
  const { causalViolations: v } = checkHistory(s.ops);
  assert.deepEqual(v.map((x) => [x.kind, x.op.id]), [['cyclic', ry.id]]);
});

test('histories that cannot be checked are refused with a reason', () => {
  const dupValue = new Script();
  dupValue.put('c1', 'x', 'v');
  dupValue.put('c2', 'y', 'v');
  assert.throws(() => checkHistory(dupValue.ops), (e: unknown) => e instanceof HistoryError && /written by operations 1 and 2/.test(e.message));
  const dupId = new Script();
  dupId.put('c1', 'x', 'v');
  const copy = [...dupId.ops, { ...(dupId.ops[0] as Operation), value: 'w' }];
  assert.throws(() => checkHistory(copy), /operation id 1 appears twice/);
  const overlap = new Script();
  overlap.put('c1', 'x', 'v', { startMs: 0, endMs: 10 });
  overlap.get('c1', 'x', 'v', { startMs: 5, endMs: 6 });
  assert.throws(() => checkHistory(overlap.ops), /overlap/);
});

test('the order of the input does not matter, only each session’s timestamps', () => {
  const s = new Script();
  s.put('c1', 'x', 'x0');
  s.put('c1', 'x', 'x1');
  s.put('c1', 'y', 'y1');
  s.get('c2', 'y', 'y1');
  s.get('c2', 'x', 'x0');
  const forward = checkHistory(s.ops);
  const backward = checkHistory([...s.ops].reverse());
  assert.deepEqual(backward, forward);
  assert.equal(forward.causalViolations.length, 1);
});

// ------------------------------------------------------------------ generated histories

const CLIENTS = 4;
const KEYS = ['a', 'b', 'c'];
const REPLICAS = ['n1', 'n2', 'n3'];

interface Command {
  client: number;
  kind: 'put' | 'get' | 'delete';
  key: number;
  /** ok, or how a non-ok outcome went: unknown (applied or not), fail. */
  fate: 'ok' | 'unknown-applied' | 'unknown-lost' | 'fail';
  /** For arbitrary histories: which state a read returns, whether a delete found the key. */
  pick: number;
}

const commandArbWith = (fates: Command['fate'][]): fc.Arbitrary<Command> =>
  fc.record({
    client: fc.integer({ min: 0, max: CLIENTS - 1 }),
    kind: fc.constantFrom('put', 'put', 'get', 'get', 'get', 'delete'),
    key: fc.integer({ min: 0, max: KEYS.length - 1 }),
    fate: fc.constantFrom(...fates),
    pick: fc.nat({ max: 1000 }),
  });
const commandArb = commandArbWith(['ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'unknown-applied', 'unknown-lost', 'fail']);
/** More timeouts and failures, for arbitrary histories where reads often return them. */
const roughCommandArb = commandArbWith(['ok', 'ok', 'ok', 'unknown-applied', 'unknown-lost', 'fail']);

function outcomeOf(fate: Command['fate']): Outcome {
  return fate === 'ok' ? 'ok' : fate === 'fail' ? 'fail' : 'unknown';
}

/**
 * Runs commands against one global store, one at a time (sequentially consistent, hence causal):
 * every read returns the latest applied write. Timed-out writes may or may not apply.
 */
function sequentialHistory(commands: readonly Command[]): { ops: Operation[]; final: Map<string, unknown> } {
  const store = new Map<string, unknown>();
  const ops: Operation[] = [];
  commands.forEach((c, i) => {
    const client = `c${c.client}`;
    const key = KEYS[c.key] as string;
    const outcome = outcomeOf(c.fate);
    const base = { id: i + 1, client, node: REPLICAS[c.pick % REPLICAS.length] as string, key, startMs: 2 * i, endMs: 2 * i + 1, outcome };
    const applies = c.fate === 'ok' || c.fate === 'unknown-applied';
    if (c.kind === 'put') {
      const value = `${client}-${i}`;
      if (applies) store.set(key, value);
      ops.push({ ...base, kind: 'put', value });
    } else if (c.kind === 'delete') {
      const present = store.has(key);
      if (applies) store.delete(key);
      ops.push(outcome === 'ok' ? { ...base, kind: 'delete', deleted: present, status: present ? 200 : 404 } : { ...base, kind: 'delete' });
    } else {
      const found = store.has(key);
      ops.push(
        outcome !== 'ok'
          ? { ...base, kind: 'get' }
          : found
            ? { ...base, kind: 'get', found, readValue: store.get(key) }
            : { ...base, kind: 'get', found },
      );
    }
  });
  return { ops, final: store };
}

/** Arbitrary histories (mostly not causal): reads return any state of the key ever written, 404, or junk. */
function arbitraryHistory(commands: readonly Command[]): Operation[] {
  const ops: Operation[] = [];
  const puts = new Map<string, string[]>();
  commands.forEach((c, i) => {
    const client = `c${c.client}`;
    const key = KEYS[c.key] as string;
    const outcome = outcomeOf(c.fate);
    const base = { id: i + 1, client, node: 'n1', key, startMs: 2 * i, endMs: 2 * i + 1, outcome };
    if (c.kind === 'put') {
      const value = `${client}-${i}`;
      puts.set(key, [...(puts.get(key) ?? []), value]);
      ops.push({ ...base, kind: 'put', value });
    } else if (c.kind === 'delete') {
      ops.push(outcome === 'ok' ? { ...base, kind: 'delete', deleted: c.pick % 3 !== 0 } : { ...base, kind: 'delete' });
    } else if (outcome !== 'ok') {
      ops.push({ ...base, kind: 'get' });
    } else {
      const mine = puts.get(key) ?? [];
      const other = [...puts.values()].flat();
      const choice = c.pick % (mine.length + 3);
      if (choice < mine.length) ops.push({ ...base, kind: 'get', found: true, readValue: mine[mine.length - 1 - choice] });
      else if (choice === mine.length || choice === mine.length + 1) ops.push({ ...base, kind: 'get', found: false });
      else ops.push({ ...base, kind: 'get', found: true, readValue: other.length > 0 ? other[c.pick % other.length] : 'junk' });
    }
  });
  return ops;
}

/**
 * The checker's rules again, brute force over explicit sets of write ids, processing operations in
 * the order they were generated (real time). Returns the same summary the checker's result gives.
 */
function oracle(ops: readonly Operation[], finals: readonly ReplicaState[]): Summary {
  const byValue = new Map<string, Operation>();
  for (const op of ops) if (op.kind === 'put' && op.value !== undefined) byValue.set(valueKey(op.value), op);
  const known = new Map<string, Set<number>>();
  const past = new Map<number, Set<number>>();
  const observed = new Set<number>();
  const byId = new Map(ops.map((op) => [op.id, op]));
  const keyOf = (id: number): string => (byId.get(id) as Operation).key;
  const violations: string[] = [];
  for (const op of ops) {
    let mine = known.get(op.client);
    if (mine === undefined) known.set(op.client, (mine = new Set()));
    if (isWrite(op)) {
      past.set(op.id, new Set(mine));
      if (op.outcome === 'ok') mine.add(op.id);
      continue;
    }
    if (isValueRead(op)) {
      const w = byValue.get(valueKey(op.readValue));
      if (w === undefined || w.key !== op.key) {
        violations.push(`phantom:${op.id}`);
        continue;
      }
      if (w.outcome === 'fail') violations.push(`phantom:${op.id}`);
      else if ([...mine].some((y) => y !== w.id && keyOf(y) === op.key && (past.get(y) as Set<number>).has(w.id))) violations.push(`stale-read:${op.id}`);
      for (const x of past.get(w.id) as Set<number>) mine.add(x);
      mine.add(w.id);
      observed.add(w.id);
    } else if (isAbsentRead(op)) {
      const ofKey = [...mine].filter((y) => keyOf(y) === op.key);
      if (ofKey.length === 0) continue;
      const newest = ofKey.filter((x) => !ofKey.some((y) => y !== x && (past.get(y) as Set<number>).has(x)));
      if (newest.some((x) => (byId.get(x) as Operation).kind === 'delete')) continue;
      const explained = ops.some((d) => d.kind === 'delete' && d.key === op.key && isWrite(d) && d.outcome !== 'fail' && d.startMs <= op.endMs && !mine.has(d.id));
      if (!explained) violations.push(`stale-absent:${op.id}`);
    }
  }
  const lost = new Set<number>();
  const divergent = new Set<string>();
  for (const key of KEYS) {
    const states = finals.map((r) => (r.data as Record<string, unknown>)[key]);
    if (new Set(states.map((v) => (v === undefined ? '-' : valueKey(v)))).size > 1) divergent.add(key);
    for (const w of ops) {
      if (w.key !== key || !isWrite(w) || !(w.outcome === 'ok' || observed.has(w.id))) continue;
      const wPast = past.get(w.id) as Set<number>;
      for (const v of states) {
        if (v === undefined) {
          const deleteNotOlder = ops.some((d) => d.kind === 'delete' && d.key === key && isWrite(d) && d.outcome !== 'fail' && !wPast.has(d.id));
          if (w.kind === 'put' && !deleteNotOlder) lost.add(w.id);
        } else {
          const x = byValue.get(valueKey(v));
          if (x === undefined || x.key !== key || wPast.has(x.id)) lost.add(w.id);
        }
      }
    }
  }
  return { violations: violations.sort(), lost: [...lost].sort((a, b) => a - b), divergent: [...divergent].sort() };
}

interface Summary {
  violations: string[];
  lost: number[];
  divergent: string[];
}

function summarize(result: CheckResult): Summary {
  return {
    violations: result.causalViolations.map((v) => `${v.kind}:${v.op.id}`).sort(),
    lost: result.lostWrites.map((l) => l.write.id).sort((a, b) => a - b),
    divergent: [...new Set(result.divergentKeys.map((d) => d.key))].sort(),
  };
}

const replicasOf = (data: Map<string, unknown>): ReplicaState[] => REPLICAS.map((node) => ({ node, shard: 's0', data }));

test('property: histories of a sequentially consistent store never fail the check, in any input order', () => {
  fc.assert(
    fc.property(fc.array(commandArb, { maxLength: 80, size: 'max' }), fc.nat(), (commands, seed) => {
      const { ops, final } = sequentialHistory(commands);
      const result = checkHistory(ops, replicasOf(final));
      assert.equal(result.valid, true, formatReport(result));
      const shuffled = fc.sample(fc.shuffledSubarray(ops, { minLength: ops.length }), { seed, numRuns: 1 })[0] as Operation[];
      assert.deepEqual(summarize(checkHistory(shuffled, replicasOf(final))), summarize(result));
    }),
    { numRuns: 300 },
  );
});

/** The write ids each read's session knew before it (explicit sets), for a history processed in order. */
function knownBeforeReads(ops: readonly Operation[]): Map<number, { known: Set<number>; past: Map<number, Set<number>> }> {
  const byValue = new Map<string, Operation>();
  for (const op of ops) if (op.kind === 'put') byValue.set(valueKey(op.value), op);
  const known = new Map<string, Set<number>>();
  const past = new Map<number, Set<number>>();
  const out = new Map<number, { known: Set<number>; past: Map<number, Set<number>> }>();
  for (const op of ops) {
    const mine = known.get(op.client) ?? new Set<number>();
    known.set(op.client, mine);
    if (isWrite(op)) {
      past.set(op.id, new Set(mine));
      if (op.outcome === 'ok') mine.add(op.id);
    } else if (isValueRead(op)) {
      out.set(op.id, { known: new Set(mine), past });
      const w = byValue.get(valueKey(op.readValue)) as Operation;
      for (const x of past.get(w.id) as Set<number>) mine.add(x);
      mine.add(w.id);
    }
  }
  return out;
}

test('property: turning one read into an older value of its key from the client’s past is always caught', () => {
  let mutated = 0;
  fc.assert(
    fc.property(fc.array(commandArb, { minLength: 5, maxLength: 80, size: 'max' }), fc.nat(), (commands, choice) => {
      const { ops } = sequentialHistory(commands);
      const byId = new Map(ops.map((op) => [op.id, op]));
      // Every (read, older write) pair where the older write is in the reader's past and some
      // other write of the key in that past depends on it.
      const pairs: [Operation, Operation][] = [];
      for (const [readId, { known, past }] of knownBeforeReads(ops)) {
        const read = byId.get(readId) as Operation;
        const ofKey = [...known].filter((w) => (byId.get(w) as Operation).key === read.key);
        for (const old of ofKey) {
          const o = byId.get(old) as Operation;
          if (o.kind !== 'put' || o.value === read.readValue) continue;
          if (ofKey.some((y) => y !== old && (past.get(y) as Set<number>).has(old))) pairs.push([read, o]);
        }
      }
      fc.pre(pairs.length > 0);
      const [read, old] = pairs[choice % pairs.length] as [Operation, Operation];
      const bad = ops.map((op) => (op.id === read.id ? { ...op, readValue: old.value } : op));
      const { causalViolations: v } = checkHistory(bad);
      assert.deepEqual(
        v.map((x) => [x.kind, x.op.id, x.returned?.id]),
        [['stale-read', read.id, old.id]],
      );
      mutated++;
    }),
    { numRuns: 300 },
  );
  assert.ok(mutated > 100, `only ${mutated} histories had a read to make stale`);
});

test('property: on arbitrary histories the checker agrees with a brute-force model over explicit sets', () => {
  let flagged = 0;
  fc.assert(
    fc.property(fc.array(roughCommandArb, { maxLength: 60, size: 'max' }), fc.array(fc.nat(), { minLength: 9, maxLength: 9 }), (commands, picks) => {
      const ops = arbitraryHistory(commands);
      const puts = ops.filter((op) => op.kind === 'put');
      // Final states: per replica and key, absent or any value ever written (or junk).
      const finals: ReplicaState[] = REPLICAS.map((node, r) => {
        const data: Record<string, unknown> = {};
        KEYS.forEach((key, k) => {
          const pick = picks[r * KEYS.length + k] as number;
          const ofKey = puts.filter((p) => p.key === key);
          const choice = pick % (ofKey.length + 3);
          if (choice < ofKey.length) data[key] = (ofKey[ofKey.length - 1 - choice] as Operation).value;
          else if (choice === ofKey.length + 2) data[key] = pick % 7 === 0 ? 'junk' : (puts[pick % Math.max(1, puts.length)]?.value ?? 'junk');
        });
        return { node, shard: 's0', data };
      });
      const expected = oracle(ops, finals);
      assert.deepEqual(summarize(checkHistory(ops, finals)), expected);
      if (expected.violations.length > 0) flagged++;
    }),
    { numRuns: 1000 },
  );
  assert.ok(flagged > 200, `only ${flagged} generated histories had violations`);
});

test('property: the compact past of every operation is exactly the explicit set of writes its session knew', () => {
  fc.assert(
    fc.property(fc.array(roughCommandArb, { maxLength: 60, size: 'max' }), (commands) => {
      const ops = arbitraryHistory(commands);
      const byValue = new Map<string, Operation>();
      for (const op of ops) if (op.kind === 'put') byValue.set(valueKey(op.value), op);
      const known = new Map<string, Set<number>>();
      const past = new Map<number, Set<number>>();
      const expected: number[][] = [];
      for (const op of ops) {
        const mine = known.get(op.client) ?? new Set<number>();
        known.set(op.client, mine);
        expected.push([...mine].sort((a, b) => a - b));
        past.set(op.id, new Set(mine));
        if (isWrite(op)) {
          if (op.outcome === 'ok') mine.add(op.id);
        } else if (isValueRead(op)) {
          const w = byValue.get(valueKey(op.readValue));
          if (w === undefined || w.key !== op.key) continue;
          for (const x of past.get(w.id) as Set<number>) mine.add(x);
          mine.add(w.id);
        }
      }
      const index = buildCausalIndex(ops);
      assert.deepEqual(
        ops.map((_, i) => index.pastWriteIds(i)),
        expected,
      );
    }),
    { numRuns: 1000 },
  );
});

// ------------------------------------------------------------------ speed

/** mulberry32: a small deterministic PRNG for the synthetic history. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A sequentially consistent synthetic history: `clients` sessions over `keys` keys, 40% puts, 10% deletes, 50% gets. */
function syntheticHistory(n: number, clients: number, keys: number, seed: number): { ops: Operation[]; final: Map<string, unknown> } {
  const random = prng(seed);
  const store = new Map<string, unknown>();
  const ops: Operation[] = [];
  for (let i = 0; i < n; i++) {
    const client = `c${Math.floor(random() * clients)}`;
    const key = `k${Math.floor(random() * keys)}`;
    const r = random();
    const outcome: Outcome = r < 0.98 ? 'ok' : r < 0.99 ? 'unknown' : 'fail';
    const base = { id: i + 1, client, node: `10.10.0.${2 + (i % 6)}:8090`, key, startMs: 2 * i, endMs: 2 * i + 1, outcome };
    const kind = random();
    if (kind < 0.4) {
      const value = `${client}-${i}`;
      if (outcome === 'ok' || (outcome === 'unknown' && random() < 0.5)) store.set(key, value);
      ops.push({ ...base, kind: 'put', value });
    } else if (kind < 0.5) {
      const present = store.has(key);
      if (outcome !== 'fail') store.delete(key);
      ops.push(outcome === 'ok' ? { ...base, kind: 'delete', deleted: present } : { ...base, kind: 'delete' });
    } else if (outcome !== 'ok') {
      ops.push({ ...base, kind: 'get' });
    } else {
      const found = store.has(key);
      ops.push(found ? { ...base, kind: 'get', found, readValue: store.get(key) } : { ...base, kind: 'get', found });
    }
  }
  return { ops, final: store };
}

test('speed: a 100k-operation history is checked in a few seconds', (t) => {
  for (const [clients, keys] of [
    [50, 1000],
    [200, 100],
  ] as const) {
    const { ops, final } = syntheticHistory(100_000, clients, keys, 7);
    const finals: ReplicaState[] = REPLICAS.map((node) => ({ node, shard: 's0', data: final }));
    let start = performance.now();
    const result = checkHistory(ops, finals);
    const clean = performance.now() - start;
    assert.equal(result.valid, true, formatReport(result, 5));

    // The same history with one read in a hundred turned to the oldest value its key ever had.
    const firstValue = new Map<string, unknown>();
    for (const op of ops) if (op.kind === 'put' && !firstValue.has(op.key)) firstValue.set(op.key, op.value);
    let stale = 0;
    const bad = ops.map((op, i) => {
      if (i % 100 !== 0 || !isValueRead(op) || firstValue.get(op.key) === op.readValue) return op;
      stale++;
      return { ...op, readValue: firstValue.get(op.key) };
    });
    start = performance.now();
    const badResult = checkHistory(bad, finals);
    const broken = performance.now() - start;
    assert.ok(badResult.causalViolations.length >= stale / 2, `${badResult.causalViolations.length} violations for ${stale} stale reads`);
    t.diagnostic(
      `100000 ops, ${clients} clients, ${keys} keys, 3 replicas: clean ${clean.toFixed(0)} ms; ` +
        `with ${stale} stale reads ${broken.toFixed(0)} ms (${badResult.causalViolations.length} violations, ${badResult.lostWrites.length} lost writes)`,
    );
  }
});
