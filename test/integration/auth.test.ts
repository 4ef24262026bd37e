// Nobody outside the cluster can read, write or steer it: with CLUSTER_SECRET every node-to-node
// route needs a valid authenticator (HMAC over the request, fresh, used once), causal metadata
// carries a MAC, and a rolling restart rotates the secret with writes flowing; without a secret,
// peer routes answer only nodes' addresses and metadata may name only the store's shards and nodes.
//
// Three stores, each on ten ports of the file's range (test/helpers/ports.ts):
// store 1: 4 nodes, SHARD_COUNT=2, with a secret;
// store 2: 4 nodes, SHARD_COUNT=2, no secret;
// store 3: 3 durable nodes, replicated only, rotated secrets.
// Each test writes keys of its own.

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'undici';
import { NotYet, pollUntil } from '../helpers/cluster.ts';
import { Client, call, get, getMembers, kvsPath, put, readShardLayout, type NodeAddress, type ShardLayout } from '../helpers/http.ts';
import { peerCall, signedHeaders } from '../helpers/peer.ts';
import { portsFor } from '../helpers/ports.ts';
import { useCluster } from '../helpers/store.ts';

const ports = portsFor(import.meta.url);

const NOT_ISSUED = 'Invalid causal metadata: causal-metadata was not issued by this store';
const outsider = new Agent({ localAddress: '127.0.0.2', connect: { timeout: 5_000 }, keepAliveTimeout: 1_000 });

/** Every node-to-node route, with a body that, taken, would do something (or be refused as malformed). */
function peerRoutes(shard: string): [method: 'GET' | 'POST', path: string, body: unknown][] {
  return [
    ['GET', '/internal/ping', undefined],
    ['GET', '/internal/state', undefined],
    ['GET', `/internal/key-count/${shard}`, undefined],
    ['POST', '/internal/sync', { epoch: 1, shard, since: {}, full: true }],
    ['POST', '/internal/digest', { epoch: 1, shard, digests: [] }],
    ['POST', '/internal/replicate', { epoch: 1, shard, versions: [] }],
    ['POST', '/internal/repair', { epoch: 1, shard, versions: [] }],
    ['POST', '/internal/map', { map: 'not a map' }],
    ['POST', '/internal/reshard/prepare', { map: 'not a map' }],
    ['POST', '/internal/reshard/send', { epoch: 'x' }],
    ['POST', '/internal/reshard/transfer', { epoch: 'x' }],
    ['POST', '/internal/reshard/commit', { epoch: 'x' }],
    ['POST', '/internal/reshard/abort', { epoch: 'x' }],
  ];
}

/** A key of `shard`, written with value "init" (creates keys until one lands there). */
async function keyOf(node: NodeAddress, shard: string, prefix: string): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const r = await put(node, `${prefix}-${i}`, 'init', null);
    if (r.body?.['shard-id'] === shard) return `${prefix}-${i}`;
  }
  throw new Error(`no key of ${shard}`);
}

/** The forged metadata of the poisoning cases: an unknown writer, 60 unknown shards x 1024 nodes, 200 unknown shards. */
function poisons(epoch: number, otherShard: string): [what: string, metadata: unknown][] {
  const big: Record<string, Record<string, number>> = {};
  for (let s = 0; s < 60; s++) {
    const clock: Record<string, number> = {};
    for (let n = 0; n < 1024; n++) clock[`10.77.${n >> 8}.${n & 255}:8090`] = 1;
    big[`s${100 + s}`] = clock;
  }
  const many: Record<string, Record<string, number>> = {};
  for (let s = 0; s < 200; s++) many[`s${1000 + s}`] = { '10.10.0.2:8090': 1 };
  return [
    ['an unknown writer at the largest counter', { v: 1, e: epoch, c: { [otherShard]: { '10.66.66.66:8090': 9007199254740991 } } }],
    ['60 unknown shards of 1024 nodes (1.3 MB)', { v: 1, e: epoch, c: big }],
    ['200 unknown shards', { v: 1, e: epoch, c: many }],
  ];
}

describe('with CLUSTER_SECRET: 4 nodes, 2 shards', () => {
  const store = useCluster({ ports: ports.slice(0, 10), nodeCount: 4, shardCount: 2 });
  let nodes: NodeAddress[] = [];
  let layout: ShardLayout;

  before(async () => {
    nodes = store.nodes;
    layout = await readShardLayout(nodes[0]!);
  });

  test('every peer route: 401 without an authenticator, with a wrong, expired or replayed one; taken with a right one', async () => {
    const a = nodes[0]!;
    const shard = layout.ids[0]!;
    for (const [method, path, body] of peerRoutes(shard)) {
      const bare = await call(method, a, path, body);
      assert.equal(bare.status, 401, `${method} ${path} without an authenticator: ${bare.text}`);
      assert.equal(typeof bare.body.error, 'string');
      const wrong = await call(method, a, path, body, { headers: signedHeaders(method, path, body, { secret: 'another-secret-of-16-chars' }) });
      assert.equal(wrong.status, 401, `${method} ${path} with a wrong secret: ${wrong.text}`);
      assert.match(wrong.body.error, /does not verify/);
      const expired = await call(method, a, path, body, { headers: signedHeaders(method, path, body, { nowMs: Date.now() - 60_000 }) });
      assert.equal(expired.status, 401, `${method} ${path} signed a minute ago: ${expired.text}`);
      assert.match(expired.body.error, /off this node's clock/);
      // The authenticator covers the body: the same headers with another body do not verify.
      if (body !== undefined) {
        const headers = signedHeaders(method, path, body);
        const swapped = await call(method, a, path, { ...(body as object), extra: 1 }, { headers });
        assert.equal(swapped.status, 401, `${method} ${path} with a body other than the one signed: ${swapped.text}`);
      }
      const headers = signedHeaders(method, path, body);
      const right = await call(method, a, path, body, { headers });
      assert.ok(right.status !== 401 && right.status !== 403, `${method} ${path} signed right: ${right.status} ${right.text}`);
      const replayed = await call(method, a, path, body, { headers });
      assert.equal(replayed.status, 401, `${method} ${path} replayed: ${replayed.text}`);
      assert.match(replayed.body.error, /already used/);
    }
    await pollUntil('the refusals logged', async () => {
      if (!store.cluster.node(a).log.some((line) => line.includes('without a valid authenticator'))) throw new NotYet('no warning yet');
    }, { timeoutMs: 5_000 });
  });

  test('an outsider reads nothing, writes nothing and steers nothing', async () => {
    const [a, b] = [layout.members[layout.ids[0]!]![0]!, layout.members[layout.ids[0]!]![1]!];
    const shard = layout.ids[0]!;
    const key = await keyOf(a, shard, 'outsider');
    const epoch = (await call('GET', a, '/status')).body.epoch as number;
    const sync = await call('POST', a, '/internal/sync', { epoch, shard, since: {}, full: true });
    assert.equal(sync.status, 401);
    assert.equal(sync.body.versions, undefined, 'no data in the answer');
    const forgedVersion = { key, value: 'forged', deleted: false, stamp: { epoch, lamport: 9007199254740991, node: b }, deps: {}, dot: { node: b, counter: 1 } };
    for (const path of ['/internal/replicate', '/internal/repair']) {
      const r = await call('POST', a, path, { epoch, shard, versions: [forgedVersion] });
      assert.equal(r.status, 401, r.text);
    }
    const before = await getMembers(a, shard);
    const steer = await call('POST', a, '/internal/reshard/prepare', { map: { epoch: epoch + 1, mode: 'sharded', shards: { s0: [a] } }, coordinator: a });
    assert.equal(steer.status, 401);
    for (const node of nodes) {
      const r = await get(node, key, null);
      assert.ok(r.status === 200 && r.body.value === 'init', `${node} still serves the client's value: ${r.text}`);
    }
    assert.deepEqual(await getMembers(a, shard), before);
    // Writes were never frozen.
    assert.ok([200, 201].includes((await put(a, key, 'after', null)).status));
    assert.equal((await call('GET', a, '/status')).body.reshardInProgress, null);
  });

  test("a client's x-kvs-* headers are ignored; a request with an authenticator that does not verify is refused", async () => {
    const a = nodes[0]!;
    const late = await call('PUT', a, kvsPath('hdr-1'), { value: 1, 'causal-metadata': null }, { headers: { 'x-kvs-deadline': String(Date.now() - 60_000), 'x-kvs-hops': '3' } });
    assert.equal(late.status, 201, `served as the client it is: ${late.text}`);
    const forged = await call('PUT', a, kvsPath('hdr-2'), { value: 1, 'causal-metadata': null }, { headers: { 'x-kvs-auth': 'v1.1.aaaaaaaaaaaaaaaa.' + 'a'.repeat(43) } });
    assert.equal(forged.status, 401, forged.text);
    assert.equal((await get(a, 'hdr-2', null)).status, 404, 'nothing written');
  });

  test('causal metadata carries a MAC: any change to it, or none, is 400, and nothing is stored', async () => {
    const [s0, s1] = [layout.ids[0]!, layout.ids[1]!];
    const at0 = layout.members[s0]![0]!;
    const at1 = layout.members[s1]![0]!;
    const key0 = await keyOf(at0, s0, 'mac');
    // A prefix of its own: the search writes 'init' to every key it tries, and through at1 it would
    // overwrite key0 at another member, concurrently with the 'real' below (either could win).
    const key1 = await keyOf(at1, s1, 'mac-other');
    const c = new Client();
    assert.ok([200, 201].includes((await c.put(at0, key0, 'real')).status));
    const meta = c.meta as Record<string, unknown>;
    assert.equal(typeof meta.m, 'string', 'the metadata carries a MAC');
    // Accepted by every node, in either shard, as it came.
    for (const node of nodes) assert.equal((await get(node, key0, meta)).status, 200);
    const tampered = { ...meta, c: { ...(meta.c as object), [s1]: { [at1]: 9007199254740991 } } };
    const { m: _m, ...unsigned } = meta;
    for (const [what, bad] of [['tampered', tampered], ['without its MAC', unsigned], ...poisons(meta.e as number, s1)] as [string, unknown][]) {
      const r = await put(at0, key0, 'poisoned', bad);
      assert.equal(r.status, 400, `${what}: ${r.status} ${r.text.slice(0, 200)}`);
      assert.deepEqual(r.body, { error: NOT_ISSUED });
    }
    // Nothing was stored for a reader to inherit: a reader with null metadata gets the real value, and small metadata.
    const reader = await get(at0, key0, null);
    assert.equal(reader.body.value, 'real');
    assert.ok(reader.text.length < 1_000, `the reader got ${reader.text.length} bytes`);
    assert.equal((await get(at1, key1, reader.body['causal-metadata'])).status, 200, 'and can read the other shard with it');
  });
});

describe('without CLUSTER_SECRET: 4 nodes, 2 shards', () => {
  const store = useCluster({ ports: ports.slice(10, 10), nodeCount: 4, shardCount: 2, extraEnv: { CLUSTER_SECRET: '', LOG_LEVEL: 'info' } });
  let nodes: NodeAddress[] = [];
  let layout: ShardLayout;

  before(async () => {
    nodes = store.nodes;
    layout = await readShardLayout(nodes[0]!);
  });

  test('each node says once, at warn level, that its peers are not authenticated', () => {
    for (const node of nodes) {
      const lines = store.cluster.node(node).log.filter((line) => line.includes('no CLUSTER_SECRET'));
      assert.equal(lines.length, 1, `${node}: ${lines.length} warnings`);
      assert.match(lines[0]!, /"level":40/);
    }
  });

  test('peer routes answer the nodes\' addresses only', async () => {
    const res = await request(`http://${nodes[0]}/internal/state`, { dispatcher: outsider, headersTimeout: 5_000, bodyTimeout: 5_000 });
    assert.equal(res.statusCode, 403);
    const body = (await res.body.json()) as { error?: unknown; map?: unknown };
    assert.equal(typeof body.error, 'string');
    assert.equal(body.map, undefined, 'no shard map for an outsider');
  });

  test('metadata may name only the store\'s shards and nodes: the poisoning cases are 400, and nothing is stored', async () => {
    const [s0, s1] = [layout.ids[0]!, layout.ids[1]!];
    const at0 = layout.members[s0]![0]!;
    const key0 = await keyOf(at0, s0, 'origin');
    const c = new Client();
    assert.ok([200, 201].includes((await c.put(at0, key0, 'real')).status));
    const epoch = (c.meta as { e: number }).e;
    for (const [what, bad] of poisons(epoch, s1)) {
      const r = await put(at0, key0, 'poisoned', bad);
      assert.equal(r.status, 400, `${what}: ${r.status} ${r.text.slice(0, 200)}`);
      assert.match(r.body.error, /^Invalid causal metadata: /);
    }
    // A writer of the other shard with a real address is still taken (its counter is what only a MAC could check).
    const member1 = layout.members[s1]![0]!;
    assert.equal((await get(at0, key0, { v: 1, e: epoch, c: { [s1]: { [member1]: 1 } } })).status, 200);
    const reader = await get(at0, key0, null);
    assert.equal(reader.body.value, 'real');
    assert.ok(reader.text.length < 1_000, `the reader got ${reader.text.length} bytes`);
  });
});

describe('secret rotation by rolling restarts: 3 durable nodes', () => {
  const OLD = 'rotation-old-secret-0123456789';
  const NEW = 'rotation-new-secret-9876543210';
  const store = useCluster({ ports: ports.slice(20, 10), nodeCount: 3, durable: true, extraEnv: { CLUSTER_SECRET: OLD } });

  test('old → "old,new" → "new,old" → new, one node at a time, with writes flowing: nothing acknowledged is lost', async () => {
    const cluster = store.cluster;
    const nodes = store.nodes;
    const writer = new Client();
    const acknowledged = new Map<string, number>();
    let writing = true;
    let i = 0;
    const load = (async () => {
      while (writing) {
        const node = nodes[i % nodes.length]!;
        const key = `rot-${i % 20}`;
        try {
          const r = await writer.put(node, key, i);
          if (r.status === 200 || r.status === 201) acknowledged.set(key, i);
        } catch {
          // A node being restarted: the next one.
        }
        i++;
      }
    })();
    for (const secrets of [`${OLD},${NEW}`, `${NEW},${OLD}`, NEW]) {
      for (const node of nodes) {
        await cluster.kill(node);
        cluster.node(node).env.CLUSTER_SECRET = secrets;
        await cluster.restart(node);
        await cluster.waitReady([node]);
      }
    }
    await pollUntil('writes after the rotation', async () => {
      if (i < 50) throw new NotYet(`${i} writes`);
    }, { timeoutMs: 10_000 });
    writing = false;
    await load;
    assert.ok(acknowledged.size > 0);
    for (const node of nodes) {
      await pollUntil(`${node} serves every acknowledged write`, async () => {
        for (const [key, value] of acknowledged) {
          const r = await get(node, key, writer.meta);
          if (r.status !== 200) throw new NotYet(`${key}: ${r.status} ${r.text}`);
          // The acknowledged value, or a later write whose answer was lost in a restart.
          assert.ok(typeof r.body.value === 'number' && r.body.value >= value, `${key} at ${node}: ${r.body.value} < ${value}`);
        }
      }, { timeoutMs: 15_000 });
    }
    for (const node of nodes) {
      assert.ok(!cluster.node(node).log.some((line) => line.includes('without a valid authenticator')), `${node} refused no peer during the rotation`);
    }
    // And the old secret is no longer taken anywhere.
    const r = await peerCall('GET', nodes[0]!, '/internal/state', undefined, { secret: OLD });
    assert.equal(r.status, 401);
    const ok = await peerCall('GET', nodes[0]!, '/internal/state', undefined, { secret: NEW });
    assert.equal(ok.status, 200);
  });
});
