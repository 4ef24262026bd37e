// The history recorder: what clients call around each request. It keeps each session to one
// operation at a time, records outcomes (inferring found/deleted from statuses), reports operations
// still in flight as unknown, and answers causal-past questions the way the store's sessions work.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkHistory } from '../../harness/check/checker.ts';
import { HistoryError, HistoryRecorder, type OpKind } from '../../harness/check/history.ts';

/** One complete operation at time `t` (1 ms long). */
function op(
  rec: HistoryRecorder,
  t: number,
  client: string,
  kind: OpKind,
  key: string,
  end: { outcome?: 'ok' | 'fail' | 'unknown'; status?: number; readValue?: unknown; value?: unknown } = {},
): number {
  const id = rec.begin({ client, node: '10.10.0.2:8090', kind, key, startMs: t, ...(end.value !== undefined ? { value: end.value } : {}) });
  rec.end(id, {
    endMs: t + 1,
    outcome: end.outcome ?? 'ok',
    ...(end.status !== undefined ? { status: end.status } : {}),
    ...(end.readValue !== undefined ? { readValue: end.readValue } : {}),
  });
  return id;
}

test('begin and end record an operation; found and deleted are inferred from the status', () => {
  const rec = new HistoryRecorder();
  const v = rec.uniqueValue('c1');
  assert.equal(v, 'c1-1');
  assert.equal(rec.uniqueValue('c1'), 'c1-2');
  const put = rec.begin({ client: 'c1', node: 'n1', kind: 'put', key: 'x', value: v, startMs: 10 });
  assert.deepEqual(rec.inFlight, [put]);
  const done = rec.end(put, { endMs: 12, outcome: 'ok', status: 201, metadata: { v: 1 } });
  assert.deepEqual(done, { id: put, client: 'c1', node: 'n1', kind: 'put', key: 'x', value: v, startMs: 10, endMs: 12, outcome: 'ok', status: 201, metadata: { v: 1 } });
  const get = op(rec, 20, 'c1', 'get', 'x', { status: 200, readValue: v });
  const miss = op(rec, 30, 'c1', 'get', 'y', { status: 404 });
  const del = op(rec, 40, 'c1', 'delete', 'x', { status: 200 });
  const delMiss = op(rec, 50, 'c1', 'delete', 'x', { status: 404 });
  const history = rec.history();
  assert.deepEqual(
    history.map((o) => [o.id, o.kind, o.found, o.readValue, o.deleted]),
    [
      [put, 'put', undefined, undefined, undefined],
      [get, 'get', true, v, undefined],
      [miss, 'get', false, undefined, undefined],
      [del, 'delete', undefined, undefined, true],
      [delMiss, 'delete', undefined, undefined, false],
    ],
  );
  // history() hands out copies.
  (history[0] as { key: string }).key = 'changed';
  assert.equal(rec.history()[0]?.key, 'x');
  assert.equal(checkHistory(rec.history()).valid, true);
});

test('a session runs one operation at a time; misuse is refused', () => {
  const rec = new HistoryRecorder();
  const a = rec.begin({ client: 'c1', node: 'n1', kind: 'get', key: 'x', startMs: 0 });
  assert.throws(() => rec.begin({ client: 'c1', node: 'n1', kind: 'get', key: 'y', startMs: 1 }), HistoryError);
  rec.begin({ client: 'c2', node: 'n1', kind: 'get', key: 'y', startMs: 1 }); // another session is fine
  rec.end(a, { endMs: 2, outcome: 'ok', status: 404 });
  assert.throws(() => rec.end(a, { endMs: 3, outcome: 'ok' }), /ended already/);
  assert.throws(() => rec.end(999, { endMs: 3, outcome: 'ok' }), /no operation 999/);
  assert.throws(() => rec.begin({ client: 'c1', node: 'n1', kind: 'put', key: 'x', startMs: 3 }), /needs a value/);
  const p = rec.begin({ client: 'c1', node: 'n1', kind: 'put', key: 'x', value: 'v', startMs: 3 });
  assert.throws(() => rec.end(p, { endMs: 1, outcome: 'ok' }), /before it starts/);
  rec.end(p, { endMs: 4, outcome: 'ok' });
  assert.throws(() => rec.begin({ client: 'c3', node: 'n1', kind: 'put', key: 'z', value: 'v', startMs: 5 }), /unique/);
  assert.notEqual(rec.uniqueValue('c1'), 'v');
});

test('operations still in flight are reported as unknown, ending at the latest time seen', () => {
  const rec = new HistoryRecorder();
  const p = rec.begin({ client: 'c1', node: 'n1', kind: 'put', key: 'x', value: 'v', startMs: 5 });
  op(rec, 20, 'c2', 'get', 'x', { status: 404 });
  const [inFlight] = rec.history();
  assert.equal(inFlight?.id, p);
  assert.equal(inFlight?.outcome, 'unknown');
  assert.equal(inFlight?.endMs, 21);
});

test('causal pasts follow the sessions: own acknowledged writes, reads, and what those depended on', () => {
  const rec = new HistoryRecorder();
  const x1 = op(rec, 0, 'c1', 'put', 'x', { value: 'x1' });
  const y1 = op(rec, 2, 'c1', 'put', 'y', { value: 'y1', outcome: 'unknown' }); // timed out
  const x2 = op(rec, 4, 'c1', 'put', 'x', { value: 'x2' });
  assert.equal(rec.knows(x2, x1), true);
  assert.equal(rec.knows(x2, y1), false); // c1's metadata never got y1
  assert.deepEqual(rec.causalPast(x2), { clients: { c1: 1 }, extra: [] });

  const rx = op(rec, 6, 'c2', 'get', 'x', { readValue: 'x2' });
  const z = op(rec, 8, 'c2', 'put', 'z', { value: 'z1' });
  assert.deepEqual(rec.causalPastIds(rx), []);
  assert.deepEqual(rec.causalPastIds(z), [x1, x2]); // read x2, and x2 depended on x1
  assert.deepEqual(rec.causalPast(z), { clients: { c1: 2 }, extra: [] });

  const ry = op(rec, 10, 'c3', 'get', 'y', { readValue: 'y1' }); // y1 took effect after all
  const w = op(rec, 12, 'c3', 'put', 'w', { value: 'w1' });
  assert.deepEqual(rec.causalPastIds(w), [x1, y1]); // y1, and what c1 knew when writing it
  assert.deepEqual(rec.causalPast(w), { clients: { c1: 1 }, extra: [y1] });
  assert.equal(rec.knows(ry, y1), false);
  assert.equal(rec.knows(w, y1), true);

  // A 404 and failed operations teach nothing.
  op(rec, 14, 'c4', 'get', 'x', { status: 404 });
  op(rec, 16, 'c4', 'get', 'z', { outcome: 'fail', status: 503 });
  const last = op(rec, 18, 'c4', 'put', 'q', { value: 'q1' });
  assert.deepEqual(rec.causalPastIds(last), []);
});

test('a write read while still in flight is known to the reader, and acknowledged afterwards', () => {
  const rec = new HistoryRecorder();
  const p = rec.begin({ client: 'c1', node: 'n1', kind: 'put', key: 'x', value: 'v1', startMs: 0 });
  const r = rec.begin({ client: 'c2', node: 'n2', kind: 'get', key: 'x', startMs: 1 });
  rec.end(r, { endMs: 2, outcome: 'ok', status: 200, readValue: 'v1' });
  rec.end(p, { endMs: 3, outcome: 'ok', status: 201 });
  const after = op(rec, 4, 'c2', 'put', 'y', { value: 'y1' });
  assert.equal(rec.knows(after, p), true);
  assert.deepEqual(rec.causalPast(after), { clients: { c1: 1 }, extra: [] });
});

test('recorded end to end: a stale read is reported with the operations involved', () => {
  const rec = new HistoryRecorder();
  op(rec, 0, 'c1', 'put', 'x', { value: 'x1' });
  const x2 = op(rec, 2, 'c1', 'put', 'x', { value: 'x2' });
  const ry = op(rec, 4, 'c1', 'put', 'y', { value: 'y1' });
  const r1 = op(rec, 6, 'c2', 'get', 'y', { readValue: 'y1' });
  const r2 = op(rec, 8, 'c2', 'get', 'x', { readValue: 'x1' });
  const result = checkHistory(rec.history());
  assert.equal(result.valid, false);
  assert.deepEqual(
    result.causalViolations.map((v) => [v.kind, v.op.id, v.newer?.id, v.via?.id, v.rule]),
    [['stale-read', r2, x2, r1, 'causal']],
  );
  assert.equal(rec.knows(r2, x2), true);
  assert.equal(rec.knows(r2, ry), true);
});
