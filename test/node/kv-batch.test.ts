// Forwarded requests in batches (POST /internal/kv-batch): the format both ends speak and what a
// member refuses in it; the member answers each item in its own line as soon as it is served (a
// parked item holds up no other); the sending end gathers one turn's requests to one member, keeps
// each request's own timeout and outcome, and falls back to one request each where batches are not
// served. The streamed answer crosses a real HTTP server and the peer client, line by line.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import type { NodeAddress } from '../../src/core/types.ts';
import { JsonText, realTimers, type PeerCallOptions, type PeerTransport } from '../../src/node/env.ts';
import { ForwardBatcher, type ForwardRequest } from '../../src/node/forward-batch.ts';
import { startHttpServer, type HttpReply, type HttpRequest, type RequestClass } from '../../src/node/http-server.ts';
import { encodeBatch, encodeItem, KV_BATCH_PATH, parseBatch, parseLine, replyLine, serveBatch, type BatchItem } from '../../src/node/kv-batch.ts';
import { FORWARD_BATCH_ITEMS_MAX } from '../../src/node/limits.ts';
import { PeerClient, PeerUnreachableError, type PeerReply } from '../../src/node/peer-client.ts';
import type { PeerHeaders } from '../../src/node/peer-gate.ts';
import { BadRequest, RawJson } from '../../src/node/replies.ts';

const A = '10.0.0.2:8090' as NodeAddress;
const B = '10.0.0.3:8090' as NodeAddress;

test('a batch is read back as it was encoded; what a member refuses in one is refused whole', () => {
  const text = encodeBatch([
    encodeItem('PUT', '/kvs/a%20b', 1, 1_700_000_000_000, '{"value": {"x": [1]}, "causal-metadata": null}'),
    encodeItem('GET', '/kvs/c', 2, 1_700_000_000_001, undefined),
  ]);
  assert.deepEqual(parseBatch(JSON.parse(text)), [
    { method: 'PUT', path: '/kvs/a%20b', hops: 1, deadlineMs: 1_700_000_000_000, body: { value: { x: [1] }, 'causal-metadata': null } },
    { method: 'GET', path: '/kvs/c', hops: 2, deadlineMs: 1_700_000_000_001, body: undefined },
  ]);
  const good = { method: 'GET', path: '/kvs/k', hops: 1, deadline: 5 };
  let deep: unknown = 1;
  for (let i = 0; i < 80; i++) deep = [deep];
  for (const [what, body] of [
    ['not an object', []],
    ['no items', { items: [] }],
    ['too many items', { items: Array.from({ length: FORWARD_BATCH_ITEMS_MAX + 1 }, () => good) }],
    ['an item not an object', { items: [null] }],
    ['an unknown field', { items: [{ ...good, extra: 1 }] }],
    ['a prototype name', { items: [JSON.parse('{"method":"GET","path":"/kvs/k","hops":1,"deadline":5,"__proto__":{"x":1}}')] }],
    ['another method', { items: [{ ...good, method: 'POST' }] }],
    ['another path', { items: [{ ...good, path: '/internal/ping' }] }],
    ['no hop', { items: [{ ...good, hops: 0 }] }],
    ['too many hops', { items: [{ ...good, hops: 4 }] }],
    ['a fraction of a hop', { items: [{ ...good, hops: 1.5 }] }],
    ['a deadline as text', { items: [{ ...good, deadline: '5' }] }],
    ['a negative deadline', { items: [{ ...good, deadline: -1 }] }],
    ['a body too deep', { items: [{ ...good, body: { value: deep } }] }],
  ] as const) {
    assert.throws(() => parseBatch(body), BadRequest, what);
  }
  assert.equal(parseBatch({ items: [{ ...good, deadline: null }] })[0]?.deadlineMs, null);
});

test('an answer line carries the index, the status and the body; a relayed text loses its line breaks', () => {
  assert.equal(replyLine(3, { status: 201, body: { result: 'created' } }), '3 201 {"result":"created"}\n');
  assert.equal(replyLine(0, { status: 200, body: new RawJson('{"a":\n 1}') }), '0 200 {"a":1}\n');
  assert.deepEqual(parseLine('12 404 {"error":"Key does not exist"}'), { index: 12, status: 404, text: '{"error":"Key does not exist"}' });
  for (const bad of ['', '1', '1 200', 'x 200 {}', '1 99 {}', '-1 200 {}', '1 600 {}']) assert.equal(parseLine(bad), undefined, bad);
});

const PEER: PeerHeaders = { hops: 0, deadlineMs: null, downReport: null, from: A, incarnation: 'abc' };
const BATCH_REQUEST: HttpRequest = { method: 'POST', path: KV_BATCH_PATH, headers: {}, body: undefined, remoteAddress: '10.0.0.2' };
const item = (path: string, hops = 1): BatchItem => ({ method: 'GET', path, hops, deadlineMs: 99, body: { 'causal-metadata': null } });

test('the member answers each item in its own line as soon as it is served; lines of one turn go in one write', async () => {
  let releaseSlow!: (reply: HttpReply) => void;
  const seen: Array<{ path: string; peer: PeerHeaders }> = [];
  const errors: unknown[] = [];
  const reply = serveBatch([item('/kvs/fast-0'), item('/kvs/slow', 2), item('/kvs/fast-1'), item('/kvs/broken')], BATCH_REQUEST, PEER, {
    serve: (one, peer) => {
      seen.push({ path: one.path, peer });
      if (one.path === '/kvs/slow') return new Promise((resolve) => (releaseSlow = resolve));
      if (one.path === '/kvs/broken') return Promise.reject(new Error('a bug'));
      return Promise.resolve({ status: 200, body: { value: one.path } });
    },
    onError: (error) => errors.push(error),
    soon: setImmediate,
  });
  assert.equal(reply.status, 200);
  const writes: string[] = [];
  let firstWrite!: () => void;
  const wrote = new Promise<void>((resolve) => (firstWrite = resolve));
  const done = reply.stream!((text) => {
    writes.push(text);
    firstWrite();
  });
  await wrote;
  // The fast items and the broken one, in one write, before the slow one is answered.
  assert.deepEqual(writes, ['0 200 {"value":"/kvs/fast-0"}\n2 200 {"value":"/kvs/fast-1"}\n3 500 {"error":"Internal error"}\n']);
  assert.equal(errors.length, 1);
  releaseSlow({ status: 503, body: { error: 'Unable to satisfy request' } });
  await done;
  assert.deepEqual(writes.slice(1), ['1 503 {"error":"Unable to satisfy request"}\n']);
  // Each item is served with the batch's sender and its own hops and deadline.
  assert.deepEqual(seen.find((s) => s.path === '/kvs/slow')?.peer, { ...PEER, hops: 2, deadlineMs: 99 });
});

test('a streamed answer crosses the HTTP server and the peer client line by line, whatever the chunks', async () => {
  const klass: RequestClass = { name: 'peer', bodyBytesMax: 1 << 20, depthMax: 10, depthMessage: 'deep', inFlight: { requestsMax: 10, bytesMax: 1 << 20 } };
  let second!: () => void;
  const secondAsked = new Promise<void>((resolve) => (second = resolve));
  const server = await startHttpServer({
    host: '127.0.0.1',
    port: 0,
    classify: () => klass,
    handler: async () => ({
      status: 200,
      body: undefined,
      contentType: 'application/x-ndjson',
      stream: async (write) => {
        // A line, then one split across writes in the middle of a two-byte character.
        write('0 200 {"v":"é"}\n1 200 {"v":"');
        await secondAsked;
        write('ü"}');
        write('\n');
      },
    }),
    onError: () => undefined,
    onRefused: () => undefined,
  });
  const client = new PeerClient({ connectTimeoutMs: 1000, requestTimeoutMs: 5000, connectionsPerPeer: 1 });
  try {
    const peer = `127.0.0.1:${(server.address() as AddressInfo).port}` as NodeAddress;
    const lines: string[] = [];
    const reply = await client.call(peer, 'POST', KV_BATCH_PATH, new JsonText('{}'), {
      rawReply: true,
      onLine: (line) => {
        lines.push(line);
        // The first line arrives while the server has not written the second.
        if (lines.length === 1) second();
      },
    });
    assert.equal(reply.status, 200);
    assert.deepEqual(lines, ['0 200 {"v":"é"}', '1 200 {"v":"ü"}']);
    assert.equal(reply.text, '');
  } finally {
    await client.close();
    server.close();
  }
});

/** A transport that records calls and lets the test answer each. */
class HeldPeers implements PeerTransport {
  readonly calls: Array<{ peer: NodeAddress; method: string; path: string; body: unknown; options: PeerCallOptions; answer: (reply: PeerReply) => void; fail: (error: unknown) => void }> = [];
  call(peer: NodeAddress, method: string, path: string, body: unknown, options: PeerCallOptions = {}): Promise<PeerReply> {
    return new Promise((answer, fail) => this.calls.push({ peer, method, path, body, options, answer, fail }));
  }
  async close(): Promise<void> {}
}

const request = (path: string, timeoutMs = 5_000): ForwardRequest => ({ method: 'GET', path, body: new JsonText('{"causal-metadata": null}'), hops: 1, deadlineMs: 1_000, timeoutMs });
const turn = () => new Promise((resolve) => setImmediate(resolve));

test('the requests of one turn to one member go in one batch, and each is resolved by its own line', async () => {
  const peers = new HeldPeers();
  const batcher = new ForwardBatcher(peers, realTimers, setImmediate, { itemsMax: 32, bytesMax: 1 << 20 });
  const first = batcher.call(A, request('/kvs/x'));
  const second = batcher.call(A, request('/kvs/y'));
  const other = batcher.call(B, request('/kvs/z'));
  await turn();
  assert.equal(peers.calls.length, 2);
  const [batch, single] = peers.calls as [HeldPeers['calls'][0], HeldPeers['calls'][0]];
  assert.deepEqual([batch.peer, batch.method, batch.path], [A, 'POST', KV_BATCH_PATH]);
  assert.deepEqual(parseBatch(JSON.parse((batch.body as JsonText).text)).map((one) => one.path), ['/kvs/x', '/kvs/y']);
  // Alone in its turn: sent on its own, as forwarding always has.
  assert.deepEqual([single.peer, single.method, single.path, single.options.headers], [B, 'GET', '/kvs/z', { 'x-kvs-hops': '1', 'x-kvs-deadline': '1000' }]);
  batch.options.onLine!('1 404 {"error":"Key does not exist"}');
  assert.deepEqual(await second, { status: 404, body: undefined, text: '{"error":"Key does not exist"}' });
  batch.options.onLine!('0 503 {"error":"Unable to satisfy request"}');
  assert.deepEqual(await first, { status: 503, body: { error: 'Unable to satisfy request' }, text: '{"error":"Unable to satisfy request"}' });
  batch.answer({ status: 200, body: undefined, text: '' });
  single.answer({ status: 200, body: undefined, text: '{"value":1}' });
  assert.equal((await other).status, 200);
  assert.deepEqual(batcher.counts, { single: 1, batches: 1, batched: 2 });
});

test('a request the answer does not name fails as maybe delivered; a transport failure fails them all', async () => {
  const peers = new HeldPeers();
  const batcher = new ForwardBatcher(peers, realTimers, setImmediate, { itemsMax: 32, bytesMax: 1 << 20 });
  const named = batcher.call(A, request('/kvs/x'));
  const unnamed = batcher.call(A, request('/kvs/y'));
  await turn();
  // A transport with the whole answer at the end (the simulator's) gives the lines in its text.
  peers.calls[0]!.answer({ status: 200, body: '0 200 {"value":1}\n' });
  assert.equal((await named).status, 200);
  await assert.rejects(unnamed, (error: unknown) => error instanceof PeerUnreachableError && error.maybeDelivered);

  const failing = [batcher.call(A, request('/kvs/x')), batcher.call(A, request('/kvs/y'))];
  await turn();
  const cause = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
  peers.calls[1]!.fail(new PeerUnreachableError(A, cause));
  for (const one of failing) await assert.rejects(one, (error: unknown) => error instanceof PeerUnreachableError && !error.maybeDelivered);
});

test('each request keeps its own timeout inside a batch', async () => {
  const peers = new HeldPeers();
  const batcher = new ForwardBatcher(peers, realTimers, setImmediate, { itemsMax: 32, bytesMax: 1 << 20 });
  const quick = batcher.call(A, request('/kvs/x', 20));
  const patient = batcher.call(A, request('/kvs/y', 10_000));
  await turn();
  assert.equal(peers.calls[0]?.options.timeoutMs, 10_000, 'the batch waits as long as its most patient request');
  await assert.rejects(quick, (error: unknown) => error instanceof PeerUnreachableError && error.maybeDelivered && /20 ms/.test(error.message));
  peers.calls[0]!.options.onLine!('1 200 {"value":2}');
  assert.equal((await patient).status, 200);
  peers.calls[0]!.answer({ status: 200, body: undefined, text: '' });
});

test('a member without batches (404) is sent each request on its own; a refusal of the batch is each request\'s answer', async () => {
  const peers = new HeldPeers();
  const batcher = new ForwardBatcher(peers, realTimers, setImmediate, { itemsMax: 32, bytesMax: 1 << 20 });
  const both = [batcher.call(A, request('/kvs/x')), batcher.call(A, request('/kvs/y'))];
  await turn();
  peers.calls[0]!.answer({ status: 404, body: undefined, text: '{"error":"No route for POST /internal/kv-batch"}' });
  await turn();
  assert.deepEqual(peers.calls.slice(1).map((c) => [c.method, c.path]), [['GET', '/kvs/x'], ['GET', '/kvs/y']]);
  for (const c of peers.calls.slice(1)) c.answer({ status: 200, body: undefined, text: '{"value":0}' });
  for (const one of both) assert.equal((await one).status, 200);

  const held = [batcher.call(A, request('/kvs/x')), batcher.call(A, request('/kvs/y'))];
  await turn();
  const refusal = { status: 503, body: { error: 'The link failed', linkHeld: true }, text: '{"error":"The link failed","linkHeld":true}' };
  peers.calls.at(-1)!.answer(refusal);
  for (const one of held) assert.deepEqual(await one, refusal);
});

test('a batch holds at most itemsMax requests and bytesMax bytes; a larger request goes on its own; itemsMax 1 never batches', async () => {
  const peers = new HeldPeers();
  const batcher = new ForwardBatcher(peers, realTimers, setImmediate, { itemsMax: 2, bytesMax: 300 });
  const big: ForwardRequest = { ...request('/kvs/big'), body: new JsonText(`{"value":"${'v'.repeat(400)}","causal-metadata":null}`) };
  const calls = [request('/kvs/a'), request('/kvs/b'), big, request('/kvs/c')].map((one) => batcher.call(A, one));
  await turn();
  assert.deepEqual(
    peers.calls.map((c) => (c.path === KV_BATCH_PATH ? parseBatch(JSON.parse((c.body as JsonText).text)).map((one) => one.path).join('+') : c.path)),
    ['/kvs/a+/kvs/b', '/kvs/big', '/kvs/c'],
  );
  for (const c of peers.calls) c.answer(c.path === KV_BATCH_PATH ? { status: 200, body: undefined, text: '0 200 {}\n1 200 {}\n' } : { status: 200, body: undefined, text: '{}' });
  for (const one of calls) assert.equal((await one).status, 200);

  const alone = new HeldPeers();
  const never = new ForwardBatcher(alone, realTimers, setImmediate, { itemsMax: 1, bytesMax: 1 << 20 });
  const pair = [never.call(A, request('/kvs/a')), never.call(A, request('/kvs/b'))];
  assert.deepEqual(alone.calls.map((c) => c.path), ['/kvs/a', '/kvs/b']);
  for (const c of alone.calls) c.answer({ status: 200, body: undefined, text: '{}' });
  await Promise.all(pair);
});
