// The client's own behaviour, against tiny fake nodes that record what they receive: metadata
// carrying, bodies on GET and DELETE, failover, error codes. The real store is tested elsewhere.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KvsClient, KvsError } from '../../src/client/client.ts';
import type { KvsErrorCode } from '../../src/client/client.ts';

type Received = { method: string; url: string; contentType: string | undefined; authorization: string | undefined; body: Record<string, unknown> };
type Reply = { status: number; body: unknown } | 'hang' | 'destroy';
type FakeNode = { address: string; received: Received[]; connectionCount(): number; close(): Promise<void> };

async function startFakeNode(reply: (request: Received) => Reply): Promise<FakeNode> {
  const received: Received[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const request: Received = {
        method: req.method ?? '',
        url: req.url ?? '',
        contentType: req.headers['content-type'],
        authorization: req.headers.authorization,
        body: text === '' ? {} : JSON.parse(text),
      };
      received.push(request);
      const answer = reply(request);
      if (answer === 'hang') return;
      if (answer === 'destroy') {
        req.socket.destroy();
        return;
      }
      res.writeHead(answer.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer.body));
    });
  });
  let connections = 0;
  server.on('connection', () => (connections += 1));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    received,
    connectionCount: () => connections,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

// An address where nothing listens: a port that was just free.
async function deadAddress(): Promise<string> {
  const node = await startFakeNode(() => ({ status: 500, body: {} }));
  await node.close();
  return node.address;
}

async function rejectsWithCode(promise: Promise<unknown>, code: KvsErrorCode): Promise<KvsError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof KvsError, `expected a KvsError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected a KvsError ${code}`);
}

const keyAbsent = { status: 404, body: { error: 'Key does not exist' } };
const causal503 = { status: 503, body: { error: 'Causal dependencies not satisfied; try again later' } };

test('carries causal metadata: null first, then whatever the last answer held', async (t) => {
  let counter = 0;
  const node = await startFakeNode((request) => {
    counter += 1;
    if (request.method === 'PUT') return { status: 201, body: { result: 'created', 'causal-metadata': { n: counter }, 'shard-id': 's0' } };
    if (request.url === '/view') return { status: 200, body: { view: [] } };
    return { status: 200, body: { result: 'found', value: 'v', 'causal-metadata': { n: counter }, 'shard-id': 's1' } };
  });
  t.after(() => node.close());
  const client = new KvsClient({ nodes: [node.address] });
  t.after(() => client.close());

  assert.equal(client.metadata, null);
  assert.deepEqual(await client.put('k', { nested: [1, 'two'] }), { result: 'created', shardId: 's0' });
  assert.deepEqual(client.metadata, { n: 1 });
  assert.deepEqual(await client.get('k'), { found: true, value: 'v', shardId: 's1' });
  assert.deepEqual(client.metadata, { n: 2 });
  // An answer without metadata leaves the session as it was.
  assert.deepEqual(await client.view(), []);
  assert.deepEqual(client.metadata, { n: 2 });

  assert.deepEqual(
    node.received.map((r) => [r.method, r.body]),
    [
      ['PUT', { value: { nested: [1, 'two'] }, 'causal-metadata': null }],
      ['GET', { 'causal-metadata': { n: 1 } }],
      ['GET', { 'causal-metadata': { n: 2 } }],
    ],
  );
  assert.ok(node.received.every((r) => r.contentType === 'application/json'));
});

test('GET and DELETE with bodies reuse one kept-alive connection', async (t) => {
  const node = await startFakeNode(() => keyAbsent);
  t.after(() => node.close());
  const client = new KvsClient({ nodes: [node.address] });
  t.after(() => client.close());
  for (let i = 0; i < 5; i += 1) {
    await client.get('k');
    await client.delete('k');
  }
  assert.equal(node.received.length, 10);
  // undici's Pool may open a second connection while the first finishes an answer; a connection per
  // request (what undici does for a GET with a body unless told reset: false) would make 10.
  assert.ok(node.connectionCount() <= 2, `${node.connectionCount()} connections for 10 requests`);
});

test('metadata can be handed from one session to another', async (t) => {
  const node = await startFakeNode(() => keyAbsent);
  t.after(() => node.close());
  const first = new KvsClient({ nodes: [node.address], metadata: { from: 'constructor' } });
  t.after(() => first.close());
  await first.get('a');
  first.metadata = { from: 'setter' };
  await first.delete('a');
  assert.deepEqual(
    node.received.map((r) => [r.method, r.body]),
    [
      ['GET', { 'causal-metadata': { from: 'constructor' } }],
      ['DELETE', { 'causal-metadata': { from: 'setter' } }],
    ],
  );
});

test('keys are URL-encoded; absent keys are answers, not errors', async (t) => {
  const node = await startFakeNode((request) =>
    request.method === 'DELETE' && request.url === '/kvs/there'
      ? { status: 200, body: { result: 'deleted', 'causal-metadata': 1, 'shard-id': 's0' } }
      : keyAbsent,
  );
  t.after(() => node.close());
  const client = new KvsClient({ nodes: [node.address] });
  t.after(() => client.close());

  assert.deepEqual(await client.get('a b/c?d#é'), { found: false });
  assert.equal(node.received[0]!.url, '/kvs/a%20b%2Fc%3Fd%23%C3%A9');
  assert.deepEqual(await client.delete('gone'), { deleted: false });
  assert.deepEqual(await client.delete('there'), { deleted: true, shardId: 's0' });
});

test('view and shard requests map to their answers', async (t) => {
  const node = await startFakeNode((request) => {
    const address = request.body['socket-address'];
    switch (`${request.method} ${request.url}`) {
      case 'PUT /view':
        return address === 'new:1' ? { status: 201, body: { result: 'added' } } : { status: 200, body: { result: 'already present' } };
      case 'DELETE /view':
        return address === 'old:1' ? { status: 200, body: { result: 'deleted' } } : { status: 404, body: { error: 'View has no such replica' } };
      case 'GET /shard/ids':
        return { status: 200, body: { 'shard-ids': ['s0', 's1'] } };
      case 'GET /shard/node-shard-id':
        return { status: 200, body: { 'node-shard-id': null } };
      case 'GET /shard/members/s%2F1':
        return { status: 200, body: { 'shard-members': ['a:1', 'b:1'] } };
      case 'GET /shard/key-count/s0':
        return { status: 200, body: { 'shard-key-count': 42 } };
      case 'PUT /shard/add-member/s0':
        return { status: 200, body: { result: 'node added to shard' } };
      case 'PUT /shard/reshard':
        return request.body['shard-count'] === 9
          ? { status: 400, body: { error: 'Not enough nodes to provide fault tolerance with requested shard count' } }
          : { status: 200, body: { result: 'resharded' } };
      case 'GET /status':
        return { status: 200, body: { address: 'x:1', ready: true, shard: 's0', view: [], epoch: 3 } };
      default:
        return { status: 404, body: { error: 'no such shard' } };
    }
  });
  t.after(() => node.close());
  const client = new KvsClient({ nodes: [node.address] });
  t.after(() => client.close());

  assert.deepEqual(await client.addToView('new:1'), { added: true });
  assert.deepEqual(await client.addToView('old:1'), { added: false });
  assert.deepEqual(await client.removeFromView('old:1'), { removed: true });
  assert.deepEqual(await client.removeFromView('new:1'), { removed: false });
  assert.deepEqual(await client.shardIds(), ['s0', 's1']);
  assert.equal(await client.nodeShardId(), null);
  assert.deepEqual(await client.shardMembers('s/1'), ['a:1', 'b:1']);
  assert.equal(await client.shardKeyCount('s0'), 42);
  await rejectsWithCode(client.shardKeyCount('s7'), 'not_found');
  await client.addMember('s0', 'a:1');
  assert.deepEqual(node.received.at(-1)!.body, { 'socket-address': 'a:1', 'causal-metadata': null });
  await client.reshard(1);
  const refused = await rejectsWithCode(client.reshard(9), 'bad_request');
  assert.equal(refused.status, 400);
  assert.match(refused.message, /Not enough nodes/);
  assert.deepEqual(await client.status(node.address), { address: 'x:1', ready: true, shard: 's0', view: [], epoch: 3 });
});

test('error answers become typed errors with stable codes', async (t) => {
  const node = await startFakeNode((request) => {
    if (request.url === '/kvs/causal') return causal503;
    if (request.url === '/kvs/long') return { status: 400, body: { error: 'Key is too long' } };
    if (request.url === '/kvs/big') return { status: 413, body: { error: 'Request body is larger than 2097152 bytes' } };
    if (request.url === '/kvs/down') return { status: 503, body: { error: 'shutting down' } };
    if (request.url === '/shard/add-member/s1') return { status: 409, body: { error: 'Node is already a member of shard s0' } };
    return { status: 200, body: { unexpected: true } };
  });
  const other = await startFakeNode(() => ({ status: 200, body: {} }));
  t.after(() => Promise.all([node.close(), other.close()]));
  const client = new KvsClient({ nodes: [node.address, other.address], metadata: 'm' });
  t.after(() => client.close());

  const causal = await rejectsWithCode(client.get('causal'), 'causal_unavailable');
  assert.equal(causal.status, 503);
  assert.equal(causal.node, node.address);
  assert.equal(client.metadata, 'm', 'a 503 leaves the session metadata as it was');
  await rejectsWithCode(client.put('long', 1), 'bad_request');
  await rejectsWithCode(client.put('big', 1), 'payload_too_large');
  const conflict = await rejectsWithCode(client.addMember('s1', 'a:1'), 'conflict');
  assert.equal(conflict.status, 409);
  await rejectsWithCode(client.get('down'), 'unavailable');
  await rejectsWithCode(client.get('odd'), 'bad_response');
  assert.equal(other.received.length, 0, 'a node that answers is never bypassed');
});

test('a node that refuses connections is skipped, and the next one stays preferred', async (t) => {
  const dead = await deadAddress();
  const node = await startFakeNode(() => ({ status: 201, body: { result: 'created', 'causal-metadata': 7, 'shard-id': 's0' } }));
  t.after(() => node.close());
  const client = new KvsClient({ nodes: [dead, node.address] });
  t.after(() => client.close());

  assert.deepEqual(await client.put('k', 1), { result: 'created', shardId: 's0' });
  assert.equal(client.metadata, 7);
  await client.put('k', 2);
  assert.equal(node.received.length, 2);
});

test('when every node is down, each is tried once and the error says unavailable', async (t) => {
  const client = new KvsClient({ nodes: [await deadAddress(), await deadAddress(), await deadAddress()] });
  t.after(() => client.close());
  const err = await rejectsWithCode(client.get('k'), 'unavailable');
  assert.match(err.message, /tried .*, .*, /);
});

test('a connection dropped after the request was sent: reads move on, writes do not', async (t) => {
  const dropper = await startFakeNode(() => 'destroy');
  const node = await startFakeNode((request) =>
    request.method === 'GET' ? keyAbsent : { status: 201, body: { result: 'created', 'causal-metadata': 1, 'shard-id': 's0' } },
  );
  t.after(() => Promise.all([dropper.close(), node.close()]));
  const client = new KvsClient({ nodes: [dropper.address, node.address] });
  t.after(() => client.close());

  await rejectsWithCode(client.put('k', 1), 'unavailable');
  assert.equal(node.received.length, 0, 'a write that may have been applied is not sent twice');
  assert.deepEqual(await client.get('k'), { found: false });
  assert.equal(dropper.received.length, 2);
  assert.equal(node.received.length, 1);
});

test('a node that never answers times out within timeoutMs', async (t) => {
  const hanging = await startFakeNode(() => 'hang');
  const node = await startFakeNode(() => keyAbsent);
  t.after(() => Promise.all([hanging.close(), node.close()]));
  const client = new KvsClient({ nodes: [hanging.address, node.address], timeoutMs: 200 });
  t.after(() => client.close());

  const startedMs = performance.now();
  await rejectsWithCode(client.delete('k'), 'timeout');
  const elapsedMs = performance.now() - startedMs;
  assert.ok(elapsedMs >= 150 && elapsedMs < 2_000, `took ${elapsedMs} ms`);
  assert.equal(node.received.length, 0);
  // A read is safe to repeat, so it moves on to the next node.
  assert.deepEqual(await client.get('k'), { found: false });
  assert.equal(node.received.length, 1);

  const only = new KvsClient({ nodes: [hanging.address], timeoutMs: 100 });
  t.after(() => only.close());
  await rejectsWithCode(only.get('k'), 'timeout');
});

test('a client rejects bad addresses and refuses work once closed', async () => {
  assert.throws(() => new KvsClient({ nodes: [] }), TypeError);
  assert.throws(() => new KvsClient({ nodes: ['http://127.0.0.1:8090'] }), TypeError);
  const client = new KvsClient({ nodes: ['127.0.0.1:1'] });
  await client.close();
  await assert.rejects(client.get('k'), /closed/);
});

test('adminToken goes as a bearer token with the four topology changes, and with nothing else', async (t) => {
  const node = await startFakeNode((request) => {
    switch (`${request.method} ${request.url}`) {
      case 'PUT /view':
        return { status: 201, body: { result: 'added' } };
      case 'DELETE /view':
        return { status: 200, body: { result: 'deleted' } };
      case 'PUT /shard/add-member/s0':
        return { status: 200, body: { result: 'node added to shard' } };
      case 'PUT /shard/reshard':
        return { status: 200, body: { result: 'resharded' } };
      case 'GET /view':
        return { status: 200, body: { view: [] } };
      case 'GET /shard/ids':
        return { status: 200, body: { 'shard-ids': ['s0'] } };
      case 'GET /shard/node-shard-id':
        return { status: 200, body: { 'node-shard-id': 's0' } };
      case 'GET /shard/members/s0':
        return { status: 200, body: { 'shard-members': ['a:1'] } };
      case 'GET /shard/key-count/s0':
        return { status: 200, body: { 'shard-key-count': 0 } };
      case 'GET /status':
        return { status: 200, body: { address: 'x:1', ready: true, shard: 's0', view: [] } };
      case 'PUT /kvs/k':
        return { status: 201, body: { result: 'created', 'causal-metadata': 1, 'shard-id': 's0' } };
      default:
        return keyAbsent;
    }
  });
  t.after(() => node.close());
  const token = 'a-token-of-the-store-0123456789';
  const exercise = async (client: KvsClient) => {
    await client.addToView('a:1');
    await client.removeFromView('a:1');
    await client.addMember('s0', 'a:1');
    await client.reshard(1);
    await client.view();
    await client.shardIds();
    await client.nodeShardId();
    await client.shardMembers('s0');
    await client.shardKeyCount('s0');
    await client.status();
    await client.put('k', 1);
    await client.get('k');
    await client.delete('k');
  };

  const admin = new KvsClient({ nodes: [node.address], adminToken: token });
  t.after(() => admin.close());
  await exercise(admin);
  const topology = new Set(['PUT /view', 'DELETE /view', 'PUT /shard/add-member/s0', 'PUT /shard/reshard']);
  assert.equal(node.received.length, 13);
  for (const request of node.received) {
    const route = `${request.method} ${request.url}`;
    assert.equal(request.authorization, topology.has(route) ? `Bearer ${token}` : undefined, route);
  }

  node.received.length = 0;
  const plain = new KvsClient({ nodes: [node.address] });
  t.after(() => plain.close());
  await exercise(plain);
  assert.equal(node.received.length, 13);
  assert.ok(node.received.every((r) => r.authorization === undefined), 'no token, no header');
});

test('401 (no admin token, or a wrong one) is the code unauthorized', async (t) => {
  const refusal = (route: string) => ({
    status: 401,
    body: { error: `${route} needs the admin token: send the header Authorization: Bearer <ADMIN_TOKEN>` },
  });
  const node = await startFakeNode((request) => refusal(`${request.method} ${request.url}`));
  const other = await startFakeNode(() => ({ status: 200, body: {} }));
  t.after(() => Promise.all([node.close(), other.close()]));
  const client = new KvsClient({ nodes: [node.address, other.address], adminToken: 'not-the-store-token-0123456789' });
  t.after(() => client.close());

  const err = await rejectsWithCode(client.reshard(1), 'unauthorized');
  assert.equal(err.status, 401);
  assert.equal(err.node, node.address);
  assert.match(err.message, /needs the admin token/);
  await rejectsWithCode(client.addToView('a:1'), 'unauthorized');
  // A 401 is not "no such replica": the node removed nothing.
  await rejectsWithCode(client.removeFromView('a:1'), 'unauthorized');
  await rejectsWithCode(client.addMember('s0', 'a:1'), 'unauthorized');
  assert.equal(other.received.length, 0, 'a refusal is an answer: no other node is tried');
});

test('an adminToken must be printable characters without spaces', () => {
  assert.throws(() => new KvsClient({ nodes: ['127.0.0.1:1'], adminToken: 'has a space in it 0123' }), TypeError);
  assert.throws(() => new KvsClient({ nodes: ['127.0.0.1:1'], adminToken: '' }), TypeError);
});
