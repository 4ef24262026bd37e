// Key-value API (spec section 3) on a replicated-only deployment: 3 nodes, no SHARD_COUNT, so one
// shard holds every node (ports: test/helpers/ports.ts). Each test writes keys of its own.

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { NotYet, pollUntil, retryWhile503 } from '../helpers/cluster.ts';
import {
  Client,
  assertErrorReply,
  call,
  del,
  get,
  getNodeShardId,
  getShardIds,
  getView,
  kvsPath,
  put,
  readShardLayout,
  sortedAddresses,
  type NodeAddress,
  type Reply,
} from '../helpers/http.ts';
import { portsFor } from '../helpers/ports.ts';
import { readValue, useCluster } from '../helpers/store.ts';

/** Spec: in a healthy store every replica has a write within 5 s. */
const SPEC_WINDOW_MS = 5_000;
const MEASURE_SLACK_MS = 250;

describe('kvs on a replicated-only store', () => {
  const store = useCluster({ ports: portsFor(import.meta.url), nodeCount: 3 });
  let nodes: NodeAddress[] = [];
  let A: NodeAddress;
  let B: NodeAddress;
  let C: NodeAddress;
  /** The one shard's id, as node A answers it at the start (the first test checks the others agree). */
  let shardId: string;

  before(async () => {
    nodes = store.nodes;
    [A, B, C] = nodes as [NodeAddress, NodeAddress, NodeAddress];
    const ids = await getShardIds(A);
    assert.equal(ids.length, 1, `shard ids at ${A}: ${ids}`);
    shardId = ids[0]!;
  });

  /** The node still answers and no node has crashed. */
  async function assertHealthy(addr: NodeAddress): Promise<void> {
    assert.deepEqual(sortedAddresses(await getView(addr)), nodes, `${addr} must still answer GET /view`);
    store.cluster.assertNoCrash();
  }

  test('one shard holds every node, and every node says so', async () => {
    const layout = await readShardLayout(A);
    assert.equal(layout.ids.length, 1, `shard ids: ${layout.ids}`);
    assert.equal(layout.ids[0], shardId, 'the same id as at the start');
    assert.equal(typeof shardId, 'string');
    assert.deepEqual(layout.members[shardId], nodes, 'members: every node, sorted');
    for (const addr of nodes) {
      assert.deepEqual(await readShardLayout(addr), layout, `layout at ${addr}`);
      assert.equal(await getNodeShardId(addr), shardId, `node-shard-id at ${addr}`);
    }
  });

  test('PUT: 201 created, then 200 replaced; GET: 200 found with the value', async () => {
    const c = new Client();
    const created = await c.put(A, 'k-basic', 'v1');
    assert.equal(created.status, 201, created.text);
    assert.deepEqual(Object.keys(created.body).sort(), ['causal-metadata', 'result', 'shard-id']);
    assert.equal(created.body.result, 'created');
    assert.equal(created.body['shard-id'], shardId);
    assert.notEqual(created.body['causal-metadata'], undefined);

    const replaced = await c.put(B, 'k-basic', 'v2');
    assert.equal(replaced.status, 200, replaced.text);
    assert.deepEqual(Object.keys(replaced.body).sort(), ['causal-metadata', 'result', 'shard-id']);
    assert.equal(replaced.body.result, 'replaced');
    assert.equal(replaced.body['shard-id'], shardId);

    for (const addr of nodes) {
      const found = await readValue(addr, 'k-basic', c.meta, 'v2', 'after replace');
      assert.deepEqual(Object.keys(found.body).sort(), ['causal-metadata', 'result', 'shard-id', 'value']);
      assert.equal(found.body.result, 'found');
      assert.equal(found.body['shard-id'], shardId);
    }
  });

  test('GET and DELETE of a never-written key: 404 "Key does not exist"', async () => {
    for (const addr of nodes) {
      for (const r of [await get(addr, 'never-written', null), await del(addr, 'never-written', null)]) {
        assert.equal(r.status, 404, r.text);
        assert.deepEqual(r.body, { error: 'Key does not exist' });
      }
    }
  });

  test('DELETE: 200 deleted; afterwards 404 everywhere for a client that saw the delete; PUT creates again', async () => {
    const c = new Client();
    assert.equal((await c.put(A, 'k-del', 'doomed')).status, 201);
    const deleted = await c.del(B, 'k-del');
    assert.equal(deleted.status, 200, deleted.text);
    assert.deepEqual(Object.keys(deleted.body).sort(), ['causal-metadata', 'result', 'shard-id']);
    assert.equal(deleted.body.result, 'deleted');
    assert.equal(deleted.body['shard-id'], shardId);

    for (const addr of nodes) {
      // A client that saw the delete must never read the old value back (503 "try again" is allowed).
      const r = await retryWhile503(`GET k-del at ${addr}`, () => get(addr, 'k-del', c.meta));
      assert.equal(r.status, 404, `GET deleted key at ${addr}: ${r.text}`);
      assert.deepEqual(r.body, { error: 'Key does not exist' });
    }
    const again = await retryWhile503('DELETE k-del again', () => del(C, 'k-del', c.meta));
    assert.equal(again.status, 404, again.text);
    assert.deepEqual(again.body, { error: 'Key does not exist' });

    const recreated = await c.put(C, 'k-del', 'reborn');
    assert.equal(recreated.status, 201, `PUT after delete: the key was absent, so "created": ${recreated.text}`);
    assert.equal(recreated.body.result, 'created');
    await readValue(A, 'k-del', c.meta, 'reborn', 'after re-create');
  });

  test('PUT without a value: 400 "PUT request does not specify a value"', async () => {
    const bodies: (unknown | undefined)[] = [{ 'causal-metadata': null }, {}, undefined /* no body at all */];
    for (const body of bodies) {
      const r = await call('PUT', A, kvsPath('k-novalue'), body);
      assert.equal(r.status, 400, `body ${JSON.stringify(body)}: ${r.text}`);
      assert.deepEqual(r.body, { error: 'PUT request does not specify a value' });
    }
    const r = await get(B, 'k-novalue', null);
    assert.equal(r.status, 404, `a rejected PUT must not create the key: ${r.text}`);
  });

  test('keys: 51 characters is too long (400), 50 is fine', async () => {
    const c = new Client();
    const long = 'k'.repeat(51);
    const tooLong = await c.put(A, long, 'x');
    assert.equal(tooLong.status, 400, tooLong.text);
    assert.deepEqual(tooLong.body, { error: 'Key is too long' });

    const fifty = 'f'.repeat(50);
    const ok = await c.put(A, fifty, 'fifty');
    assert.equal(ok.status, 201, ok.text);
    await readValue(B, fifty, c.meta, 'fifty', 'the 50-char key');
    // 50 characters that take more than 50 bytes in UTF-8 are still 50 characters.
    const fiftyUnicode = 'ж'.repeat(50);
    const u = await c.put(A, fiftyUnicode, 'fifty-unicode');
    assert.equal(u.status, 201, `a 50-character key of 2-byte characters: ${u.text}`);
  });

  test('values of every JSON type round-trip exactly', async () => {
    const values: [string, unknown][] = [
      ['string', 'hello, world'],
      ['empty-string', ''],
      ['unicode-string', 'héllo ✓ ключ 🙂'],
      ['string-looking-like-json', '{"value": 1}'],
      ['integer', 42],
      ['zero', 0],
      ['negative-float', -3.25],
      ['big-number', 1e21],
      ['true', true],
      ['false', false],
      ['null', null],
      ['object', { a: 1, b: [true, null, 'x'], c: { d: { e: 'deep' } } }],
      ['empty-object', {}],
      ['array', [1, 'two', { three: 3 }, [4], null, false]],
      ['empty-array', []],
    ];
    const c = new Client();
    for (const [name, value] of values) {
      const r = await c.put(A, `type-${name}`, value);
      assert.equal(r.status, 201, `PUT ${name}: ${r.text}`);
    }
    for (const [name, value] of values) {
      for (const addr of [A, C]) {
        const r = await readValue(addr, `type-${name}`, c.meta, value, `value of type ${name}`);
        assert.ok('value' in r.body, `GET ${name}: no "value" field: ${r.text}`);
      }
    }
  });

  test('keys with spaces, unicode, slashes and percent signs are stored and read back', async () => {
    const keys = ['a b', 'ключ', 'a/b', 'a%2Fb', '100%', 'q?x=1&y=2#h', 'emoji 🙂', ' leading-and-trailing '];
    const c = new Client();
    for (const [i, key] of keys.entries()) {
      const r = await c.put(A, key, `value-${i}`);
      assert.equal(r.status, 201, `PUT ${JSON.stringify(key)} (path ${kvsPath(key)}): ${r.text}`);
    }
    // Each key is distinct from the others ("a/b" vs "a%2Fb" proves the path is decoded exactly once).
    for (const [i, key] of keys.entries()) {
      for (const addr of [A, B]) {
        await readValue(addr, key, c.meta, `value-${i}`, JSON.stringify(key));
      }
    }
  });

  test('read-your-writes across nodes: never a stale value', async () => {
    const c = new Client();
    for (let i = 0; i < 15; i++) {
      const writer = nodes[i % 3]!;
      const w = await c.put(writer, 'k-ryw', i);
      assert.equal(w.status, i === 0 ? 201 : 200, w.text);
      for (const reader of nodes.filter((n) => n !== writer)) {
        await readValue(reader, 'k-ryw', c.meta, i, `round ${i}: after a write at ${writer}, it must see it`);
      }
    }
  });

  test('replication: every replica serves a write within 5 s, without the client metadata', async () => {
    for (let i = 0; i < 3; i++) {
      const key = `k-repl-${i}`;
      const writer = nodes[i]!;
      const start = performance.now();
      const w = await put(writer, key, { n: i }, null);
      assert.equal(w.status, 201, w.text);
      await pollUntil(
        `every replica serves ${key} (written at ${writer})`,
        async () => {
          for (const addr of nodes) {
            const r = await get(addr, key, null);
            if (r.status !== 200) throw new NotYet(`${addr}: ${r.status} ${r.text}`);
            assert.deepEqual(r.body.value, { n: i }, `${key} at ${addr}`);
          }
        },
        { timeoutMs: SPEC_WINDOW_MS + 1_000 },
      );
      const elapsedMs = performance.now() - start;
      assert.ok(elapsedMs <= SPEC_WINDOW_MS + MEASURE_SLACK_MS, `replication of ${key} took ${Math.round(elapsedMs)} ms`);
    }
  });

  test('concurrent writes of one key at two nodes converge to one value on every replica', async () => {
    for (let i = 0; i < 5; i++) {
      const key = `k-conc-${i}`;
      const [x, y] = i % 2 === 0 ? [A, B] : [B, C];
      const candidates = [`from-${x}-${i}`, `from-${y}-${i}`];
      const start = performance.now();
      const writes = await Promise.all([put(x, key, candidates[0], null), put(y, key, candidates[1], null)]);
      for (const w of writes) assert.ok(w.status === 200 || w.status === 201, `concurrent PUT: ${w.status} ${w.text}`);
      const { value: agreed } = await pollUntil(
        `all replicas agree on ${key}`,
        async () => {
          const seen: unknown[] = [];
          for (const addr of nodes) {
            const r = await get(addr, key, null);
            if (r.status !== 200) throw new NotYet(`${addr}: ${r.status} ${r.text}`);
            assert.ok(candidates.includes(r.body.value), `${key} at ${addr} is ${JSON.stringify(r.body.value)}, not one of the written values`);
            seen.push(r.body.value);
          }
          if (new Set(seen).size !== 1) throw new NotYet(`replicas differ: ${JSON.stringify(seen)}`);
          return seen[0];
        },
        { timeoutMs: SPEC_WINDOW_MS + 1_000 },
      );
      const elapsedMs = performance.now() - start;
      assert.ok(elapsedMs <= SPEC_WINDOW_MS + MEASURE_SLACK_MS, `convergence of ${key} took ${Math.round(elapsedMs)} ms`);
      // Converged means it stays: a second round of reads, with metadata from a read, agrees too.
      const c = new Client();
      for (const addr of nodes) {
        await readValue(addr, key, c, agreed, 'after convergence');
      }
    }
  });

  describe('bad requests get a JSON error, never a 500, and the node keeps answering', () => {
    const path = kvsPath('k-bad');

    before(async () => {
      const r = await put(A, 'k-bad', 'present', null);
      assert.ok(r.status === 201 || r.status === 200, r.text);
      await retryWhile503('k-bad readable at A', () => get(A, 'k-bad', null));
    });

    test('no body at all: it is {} (GET finds, DELETE of an absent key 404s, PUT lacks a value)', async () => {
      const g = await retryWhile503('GET k-bad, no body', () => call('GET', A, path));
      assert.equal(g.status, 200, `GET with no body is GET with {} (metadata null): ${g.text}`);
      assert.equal(g.body.value, 'present');
      const d = await call('DELETE', A, kvsPath('k-bad-absent'));
      assert.equal(d.status, 404, d.text);
      assert.deepEqual(d.body, { error: 'Key does not exist' });
      const p = await call('PUT', A, path);
      assert.equal(p.status, 400, p.text);
      assert.deepEqual(p.body, { error: 'PUT request does not specify a value' });
      await assertHealthy(A);
    });

    test('malformed JSON: 400', async () => {
      for (const method of ['PUT', 'GET', 'DELETE'] as const) {
        for (const raw of ['{"value": ', 'not json', '{"value": 1,}']) {
          const r = await call(method, A, path, undefined, { rawBody: raw });
          assertErrorReply(r, 400, `${method} with body ${JSON.stringify(raw)}`);
        }
      }
      await assertHealthy(A);
    });

    test('wrong types: causal-metadata a number or a string, body an array, a string or a number', async () => {
      const cases: [string, 'PUT' | 'GET' | 'DELETE', unknown][] = [
        ['PUT, metadata a number', 'PUT', { value: 1, 'causal-metadata': 5 }],
        ['PUT, metadata a string', 'PUT', { value: 1, 'causal-metadata': 'abc' }],
        ['GET, metadata a number', 'GET', { 'causal-metadata': 5 }],
        ['DELETE, metadata a number', 'DELETE', { 'causal-metadata': 5 }],
        ['PUT, body an array', 'PUT', [{ value: 1 }]],
        ['GET, body an array', 'GET', []],
        ['PUT, body a string', 'PUT', 'value'],
        ['PUT, body a number', 'PUT', 7],
      ];
      for (const [what, method, body] of cases) {
        const r = await call(method, B, path, body);
        assertErrorReply(r, '4xx', what);
      }
      await assertHealthy(B);
      const r = await get(B, 'k-bad', null);
      assert.equal(r.body?.value, 'present', 'rejected requests must not change the key');
    });

    test('causal metadata that is not ours ({"foo": 1}): 4xx', async () => {
      for (const [method, body] of [
        ['PUT', { value: 'x', 'causal-metadata': { foo: 1 } }],
        ['GET', { 'causal-metadata': { foo: 1 } }],
        ['DELETE', { 'causal-metadata': { foo: 1 } }],
      ] as const) {
        const r = await call(method, C, path, body);
        assertErrorReply(r, '4xx', `${method} with metadata {"foo":1}`);
      }
      await assertHealthy(C);
      const r = await get(C, 'k-bad', null);
      assert.equal(r.body?.value, 'present', 'rejected requests must not change or delete the key');
    });

    test('a 3 MiB body: 413', async () => {
      const huge = JSON.stringify({ value: 'x'.repeat(3 * 1024 * 1024), 'causal-metadata': null });
      let r: Reply;
      try {
        r = await call('PUT', A, kvsPath('k-huge'), undefined, { rawBody: huge });
      } catch (err) {
        assert.fail(`PUT with a 3 MiB body got no HTTP response (expected 413): ${(err as Error).message}`);
      }
      assertErrorReply(r, 413, 'PUT with a 3 MiB body');
      await assertHealthy(A);
      const g = await get(A, 'k-huge', null);
      assert.equal(g.status, 404, `the rejected huge PUT must not create the key: ${g.text}`);
    });
  });
});
