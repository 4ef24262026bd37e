// PeerClient against a local node:http server (no store): answers come back parsed, or as their
// text for a caller that relays them (parsed too for a 503); a peer that does not answer within the
// call's timeout fails the call as maybe delivered, and its connection is not left waiting; a peer
// that refuses connections fails it as never sent.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { JsonText } from '../../src/node/env.ts';
import { PeerClient, PeerUnreachableError, parseReply } from '../../src/node/peer-client.ts';
import type { NodeAddress } from '../../src/core/types.ts';

async function listen(server: Server): Promise<NodeAddress> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `127.0.0.1:${(server.address() as AddressInfo).port}` as NodeAddress;
}

function client(): PeerClient {
  return new PeerClient({ connectTimeoutMs: 2_000, requestTimeoutMs: 10_000, connectionsPerPeer: 2 });
}

test('answers: parsed body, or the text as received with rawReply (parsed as well for a 503)', async () => {
  const seen: { method: string; url: string; body: string; headers: Record<string, unknown> }[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', body, headers: req.headers });
      const status = req.url === '/busy' ? 503 : req.url === '/empty' ? 204 : req.url === '/junk' ? 200 : 200;
      const payload = req.url === '/empty' ? '' : req.url === '/junk' ? 'not json' : req.url === '/busy' ? '{"error":"busy", "x": 1}' : `{"echo": ${body || 'null'}, "n": 1.50}`;
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) });
      res.end(payload);
    });
  });
  const peer = await listen(server);
  const peers = client();
  try {
    assert.deepEqual(await peers.call(peer, 'POST', '/a', { k: 'v' }), { status: 200, body: { echo: { k: 'v' }, n: 1.5 } });
    assert.equal(seen[0]?.body, '{"k":"v"}');
    assert.equal(seen[0]?.headers['content-type'], 'application/json');
    // A body already serialised goes as it is, with the caller's headers.
    const raw = await peers.call(peer, 'GET', '/b', new JsonText('{ "k" : "v" }'), { headers: { 'x-kvs-hops': '1' }, rawReply: true });
    assert.deepEqual(raw, { status: 200, body: undefined, text: '{"echo": { "k" : "v" }, "n": 1.50}' });
    assert.equal(seen[1]?.body, '{ "k" : "v" }');
    assert.equal(seen[1]?.headers['x-kvs-hops'], '1');
    assert.deepEqual(await peers.call(peer, 'GET', '/busy', undefined, { rawReply: true }), { status: 503, body: { error: 'busy', x: 1 }, text: '{"error":"busy", "x": 1}' });
    assert.deepEqual(await peers.call(peer, 'GET', '/empty', undefined), { status: 204, body: undefined });
    assert.deepEqual(await peers.call(peer, 'GET', '/junk', undefined), { status: 200, body: { error: 'peer answered with a body that is not JSON' } });
    // Many at once over the pool's two connections.
    const many = await Promise.all(Array.from({ length: 20 }, (_, i) => peers.call(peer, 'PUT', `/m${i}`, { i })));
    assert.ok(many.every((reply, i) => reply.status === 200 && (reply.body as { echo: { i: number } }).echo.i === i));
  } finally {
    await peers.close();
    server.close();
  }
});

test('no answer within the timeout: the call fails as maybe delivered; a refused connection as never sent', async () => {
  const held: import('node:http').ServerResponse[] = [];
  const server = createServer((_req, res) => held.push(res));
  const peer = await listen(server);
  const peers = client();
  try {
    await assert.rejects(peers.call(peer, 'PUT', '/slow', { a: 1 }, { timeoutMs: 50 }), (error: unknown) => {
      assert.ok(error instanceof PeerUnreachableError);
      assert.equal(error.maybeDelivered, true);
      assert.equal(error.peer, peer);
      return true;
    });
    // Queued behind held requests (both connections busy): bounded all the same.
    const queued = [1, 2, 3].map(() => peers.call(peer, 'GET', '/slow', undefined, { timeoutMs: 50 }));
    for (const call of queued) await assert.rejects(call, PeerUnreachableError);
  } finally {
    for (const res of held) res.destroy();
    await peers.close();
    server.close();
  }
  // Nothing listens there any more.
  const closed = client();
  try {
    await assert.rejects(closed.call(peer, 'GET', '/x', undefined, { timeoutMs: 2_000 }), (error: unknown) => {
      assert.ok(error instanceof PeerUnreachableError);
      assert.equal(error.maybeDelivered, false);
      return true;
    });
  } finally {
    await closed.close();
  }
});

test('an answer over the bound fails the call as unreachable, and is not gathered further', async () => {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(`"${'x'.repeat(5000)}"`);
  });
  const peer = await listen(server);
  const small = new PeerClient({ connectTimeoutMs: 2_000, requestTimeoutMs: 10_000, connectionsPerPeer: 2, answerBytesMax: 1000 });
  const roomy = new PeerClient({ connectTimeoutMs: 2_000, requestTimeoutMs: 10_000, connectionsPerPeer: 2, answerBytesMax: 10_000 });
  try {
    await assert.rejects(small.call(peer, 'GET', '/big', undefined), (error: unknown) => error instanceof PeerUnreachableError && /answer over 1000 bytes/.test(error.message));
    assert.equal(((await roomy.call(peer, 'GET', '/big', undefined)).body as string).length, 5000);
  } finally {
    await small.close();
    await roomy.close();
    server.close();
  }
});

test('a closed client refuses calls as unreachable', async () => {
  const peers = client();
  await peers.close();
  await assert.rejects(peers.call('127.0.0.1:1' as NodeAddress, 'GET', '/x', undefined), PeerUnreachableError);
});

test('parseReply: JSON, nothing, or a stand-in error', () => {
  assert.deepEqual(parseReply('{"a":[1]}'), { a: [1] });
  assert.equal(parseReply(''), undefined);
  assert.deepEqual(parseReply('<html>'), { error: 'peer answered with a body that is not JSON' });
});
