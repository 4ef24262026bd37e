// Forwarding relays a member's answer as it came: the text the member sent is what the client
// gets (RawJson), a causal 503 fails over to the next member (its body read), and a transport that
// only has parsed bodies (the simulator's) is relayed as before. The HTTP server sends a RawJson
// body as it is, with the headers a JSON body gets.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MESSAGES } from '../../src/core/api-messages.ts';
import type { NodeAddress, ShardId } from '../../src/core/types.ts';
import type { NodeContext } from '../../src/node/context.ts';
import { JsonText, type PeerCallOptions, type PeerTransport } from '../../src/node/env.ts';
import { Forwarding } from '../../src/node/forwarding.ts';
import { startHttpServer, type RequestClass } from '../../src/node/http-server.ts';
import type { PeerReply } from '../../src/node/peer-client.ts';
import { json, RawJson } from '../../src/node/replies.ts';

const A = '10.0.0.2:8090' as NodeAddress;
const B = '10.0.0.3:8090' as NodeAddress;
const SHARD = 's1' as ShardId;

function forwarding(answers: Record<string, PeerReply>, calls: { peer: NodeAddress; body: unknown; options: PeerCallOptions | undefined }[]): Forwarding {
  const peers: PeerTransport = {
    call: async (peer, _method, _path, body, options) => {
      calls.push({ peer, body, options });
      return answers[peer] as PeerReply;
    },
    close: async () => undefined,
  };
  const ctx = { config: { requestTimeoutMs: 1000 }, timers: { now: () => 0 }, peers } as unknown as NodeContext;
  return new Forwarding(ctx, () => undefined);
}

test('the member\'s answer is relayed as its text; the client\'s body goes on as it came', async () => {
  const calls: { peer: NodeAddress; body: unknown; options: PeerCallOptions | undefined }[] = [];
  const text = '{"result":"created","causal-metadata":{"m":"x"},"shard-id":"s1"}';
  const fw = forwarding({ [A]: { status: 201, body: undefined, text } }, calls);
  const body = new JsonText('{"value": 1, "causal-metadata": null}');
  const reply = await fw.forward('PUT', '/kvs/k', body, SHARD, [A, B], 0, null);
  assert.equal(reply.status, 201);
  assert.ok(reply.body instanceof RawJson);
  assert.equal(JSON.stringify(reply.body), text, 'serialises to what the member sent');
  assert.equal(calls.length, 1);
  assert.equal(calls[0]?.body, body);
  assert.equal(calls[0]?.options?.rawReply, true);
  assert.equal(calls[0]?.options?.headers?.['x-kvs-hops'], '1');
});

test('a causal 503 fails over to the next member; the last one\'s 503 is the answer when none has the writes', async () => {
  const causal = { error: MESSAGES.causalUnavailable };
  const calls: { peer: NodeAddress; body: unknown; options: PeerCallOptions | undefined }[] = [];
  const fw = forwarding({ [A]: { status: 503, body: causal, text: JSON.stringify(causal) }, [B]: { status: 200, body: undefined, text: '{"value":1}' } }, calls);
  const reply = await fw.forward('GET', '/kvs/k', undefined, SHARD, [A, B], 0, null);
  assert.deepEqual(calls.map((c) => c.peer), [A, B]);
  assert.equal(reply.status, 200);
  assert.equal(JSON.stringify(reply.body), '{"value":1}');
  const none = forwarding({ [A]: { status: 503, body: causal, text: JSON.stringify(causal) }, [B]: { status: 503, body: causal } }, []);
  assert.deepEqual(await none.forward('GET', '/kvs/k', undefined, SHARD, [A, B], 0, null), { status: 503, body: causal });
});

test('a transport with parsed bodies only is relayed as before', async () => {
  const fw = forwarding({ [A]: { status: 404, body: { error: 'Key does not exist' } } }, []);
  assert.deepEqual(await fw.forward('GET', '/kvs/k', { 'causal-metadata': null }, SHARD, [A], 0, null), { status: 404, body: { error: 'Key does not exist' } });
});

test('the HTTP server sends a RawJson body as it is, with the headers of a JSON body', async () => {
  const klass: RequestClass = { name: 'client', bodyBytesMax: 1 << 20, depthMax: 10, depthMessage: 'deep', inFlight: { requestsMax: 10, bytesMax: 1 << 20 } };
  const server = await startHttpServer({
    host: '127.0.0.1',
    port: 0,
    classify: () => klass,
    handler: async (req) => (req.path === '/raw' ? json(200, new RawJson('{"a": [1, 2.50]}')) : json(200, { a: [1, 2.5] })),
    onError: () => undefined,
    onRefused: () => undefined,
  });
  const port = (server.address() as AddressInfo).port;
  const get = (path: string) =>
    new Promise<{ headers: Record<string, unknown>; body: string }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path, method: 'GET', agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ headers: res.headers, body }));
      });
      req.on('error', reject);
      req.end();
    });
  try {
    const raw = await get('/raw');
    const plain = await get('/plain');
    assert.equal(raw.body, '{"a": [1, 2.50]}');
    assert.equal(plain.body, '{"a":[1,2.5]}');
    assert.equal(raw.headers['content-type'], 'application/json');
    assert.equal(raw.headers['content-length'], String(Buffer.byteLength(raw.body)));
    assert.deepEqual(Object.keys(raw.headers).sort(), Object.keys(plain.headers).sort());
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});
