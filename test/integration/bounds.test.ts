// What a client can make a node hold is bounded, and headers meant for peers are not a client's
// to send: real node processes on loopback, clients connecting from another loopback address
// (127.0.0.2) where a test needs a source that is not a node.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { pollUntil, NotYet } from '../helpers/cluster.ts';
import { assertErrorReply, call, get, kvsPath, put, type Reply } from '../helpers/http.ts';
import { portsFor } from '../helpers/ports.ts';
import { useCluster } from '../helpers/store.ts';

const ports = portsFor(import.meta.url);
/** An address in the view where nothing ever listens. */
const NEVER_ANSWERS = ports.address(19);
const QUEUE_BYTES_MAX = 4 * 1024 * 1024;
const VALUE_BYTES = 1_000_000;

/** Requests from 127.0.0.2: not the IP of any node of the store. */
const outsider = new Agent({ localAddress: '127.0.0.2', connect: { timeout: 5_000 }, keepAliveTimeout: 1_000 });
const insider = new Agent({ localAddress: '127.0.0.1', connect: { timeout: 5_000 }, keepAliveTimeout: 1_000 });

async function callFrom(
  dispatcher: Agent,
  method: 'GET' | 'PUT' | 'DELETE',
  addr: string,
  path: string,
  body: unknown,
  headers: Record<string, string>,
): Promise<Reply> {
  const res = await request(`http://${addr}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
    dispatcher,
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  const text = await res.body.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: res.statusCode, body: parsed, text };
}

describe('bounds a client cannot push a node past', () => {
  const store = useCluster({
    ports,
    nodeCount: 2,
    // No CLUSTER_SECRET: what a node takes from whom is decided by addresses here.
    extraEnv: { REPLICATION_QUEUE_BYTES_MAX: String(QUEUE_BYTES_MAX), ANTI_ENTROPY_INTERVAL_MS: '500', CLUSTER_SECRET: '' },
  });
  let A = '';
  let B = '';

  before(() => {
    [A, B] = store.nodes as [string, string];
  });
  after(async () => {
    await outsider.close();
  });

  test('hints for a member that never answers are bounded in bytes, and the live replica has every write', async () => {
    // In a replicated-only store a node added to the view becomes a member of the one shard.
    const added = await call('PUT', A, '/view', { 'socket-address': NEVER_ANSWERS });
    assert.equal(added.status, 201, added.text);
    let meta: unknown = null;
    const writes = 20;
    for (let i = 0; i < writes; i++) {
      // While B's queue holds over half its bytes bound, A sheds writes with 503: retry, as a client would.
      const { value: r } = await pollUntil(
        `write ${i} of a 1 MB value to be accepted`,
        async () => {
          const reply = await put(A, 'big', `${i}:${'v'.repeat(VALUE_BYTES)}`, meta);
          if (reply.status === 503) {
            assert.equal(reply.body?.error, 'The node is overloaded; try again later', `a 503 is the overload answer: ${reply.text}`);
            throw new NotYet('shed: replication backlog');
          }
          return reply;
        },
        { timeoutMs: 20_000, intervalMs: 100 },
      );
      assert.ok(r.status === 200 || r.status === 201, `write ${i}: ${r.status} ${r.text.slice(0, 200)}`);
      meta = r.body['causal-metadata'];
    }
    const status = (await call('GET', A, '/status')).body;
    const replication = status.replication;
    const heldBytes = replication.hintBytes + replication.queuedBytes;
    assert.ok(
      heldBytes <= 2 * QUEUE_BYTES_MAX,
      `two peers' backlogs hold at most ${2 * QUEUE_BYTES_MAX} bytes, held ${heldBytes}: ${JSON.stringify(replication)}`,
    );
    assert.ok(replication.hints + replication.queued < writes, `the oldest hints were dropped: ${JSON.stringify(replication)}`);
    assert.ok(replication.dropped > 0, `dropped versions are counted: ${JSON.stringify(replication)}`);
    // The live replica has the last write (pushed, or pulled by its clock).
    await pollUntil(
      'B to serve the last write to big',
      async () => {
        const r = await get(B, 'big', meta);
        if (r.status !== 200) throw new NotYet(`${r.status} ${r.text.slice(0, 200)}`);
        assert.ok(String(r.body.value).startsWith(`${writes - 1}:`), `B serves the last write, got ${String(r.body.value).slice(0, 20)}`);
      },
      { timeoutMs: 10_000 },
    );
    // Found down by now, or removed here: either way out of the view.
    const removed = await call('DELETE', A, '/view', { 'socket-address': NEVER_ANSWERS });
    assert.ok(removed.status === 200 || removed.status === 404, removed.text);
    store.cluster.assertNoCrash();
  });

  test('x-kvs-* headers from a client that is not a node are ignored: it is served as the client it is', async () => {
    // From a node, a deadline in the past refuses a forwarded write (503); from a client it means nothing.
    const late = await callFrom(outsider, 'PUT', A, kvsPath('h1'), { value: 1, 'causal-metadata': null }, { 'x-kvs-deadline': String(Date.now() - 60_000) });
    assert.equal(late.status, 201, `a client's x-kvs-deadline is ignored: ${late.text}`);
    const hops = await callFrom(outsider, 'PUT', A, kvsPath('h1'), { value: 2, 'causal-metadata': null }, { 'x-kvs-hops': '3' });
    assert.equal(hops.status, 200, `a client's x-kvs-hops is ignored: ${hops.text}`);
    assert.equal((await get(A, 'h1', null)).body?.value, 2);
    // Peer routes are not for it at all.
    // An address no other test names (the probation test pings as 10.66.*.*).
    const ping = await callFrom(outsider, 'GET', A, '/internal/ping', undefined, { 'x-kvs-from': '10.67.0.1:8090' });
    assertErrorReply(ping, 403, 'GET /internal/ping from 127.0.0.2');
    const sync = await callFrom(outsider, 'GET', A, '/internal/state', undefined, {});
    assertErrorReply(sync, 403, 'GET /internal/state from 127.0.0.2');
    const status = (await call('GET', A, '/status')).body;
    assert.ok(!(status.onProbation as string[]).some((n) => n.startsWith('10.67.')), 'a ping from outside the store teaches the node nothing');
  });

  test('malformed x-kvs-* headers: 400 from anyone, nodes included', async () => {
    for (const [name, value] of [
      ['x-kvs-deadline', '-1e309'],
      ['x-kvs-deadline', 'soon'],
      ['x-kvs-hops', '-Infinity'],
      ['x-kvs-hops', '99'],
      ['x-kvs-down-report', 'not-an-address'],
      ['x-kvs-from', '__proto__'],
      ['x-kvs-incarnation', 'A'.repeat(33)],
      ['x-kvs-incarnation', '../constructor'],
    ] as const) {
      // 127.0.0.1 is the nodes' own IP: even a node's headers are checked.
      const r = await callFrom(new Agent(), 'PUT', A, kvsPath('h3'), { value: 3, 'causal-metadata': null }, { [name]: value });
      assertErrorReply(r, 400, `${name}: ${value}`);
    }
    assert.equal((await get(A, 'h3', null)).status, 404, 'no refused write was applied');
  });

  test('pings naming unknown nodes add a bounded number of them to probation', async () => {
    for (let i = 0; i < 150; i++) {
      // From a node's address (127.0.0.1, as every node of this store): a ping is taken, and what it names is learned, within bounds.
      const r = await callFrom(insider, 'GET', A, '/internal/ping', undefined, { 'x-kvs-from': `10.66.${Math.floor(i / 200)}.${i % 200}:8090` });
      assert.equal(r.status, 200, r.text);
    }
    const status = (await call('GET', A, '/status')).body;
    // Only the addresses named in the pings: the node that never answered may be on probation too.
    const learned = (status.onProbation as string[]).filter((node) => node.startsWith('10.66.'));
    assert.ok(learned.length <= 64, `at most 64 learned nodes on probation, got ${learned.length}`);
    assert.ok(learned.length > 0, 'pings from unknown nodes are still learned (a node every other one dropped)');
    const view = (await call('GET', A, '/view')).body.view;
    assert.deepEqual([...view].sort(), [A, B].sort(), 'nodes learned of are not in the view until they answer');
  });
});
