// Nodes named by host name (as a StatefulSet names its pods, `kvs-0.kvs:8090`) in SOCKET_ADDRESS
// and VIEW, without CLUSTER_SECRET: the address check then has to resolve the names to tell a
// node's request from an outsider's. Four real node processes, SHARD_COUNT=2, every address
// `localhost:<port>`. Two nodes listen on `::` (dual-stack: an IPv4 peer arrives as
// `::ffff:127.0.0.1`), two on 127.0.0.1.

import { AssertionError } from 'node:assert';
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { assertPortFree, NotYet, pollUntil, READY_TIMEOUT_MS, StoreNode } from '../helpers/cluster.ts';
import { call, Client, getMembers, getShardIds, getView, type NodeAddress } from '../helpers/http.ts';
import { portsFor } from '../helpers/ports.ts';
import { readValue } from '../helpers/store.ts';

const ports = portsFor(import.meta.url);
const NODE_COUNT = 4;
const names: NodeAddress[] = Array.from({ length: NODE_COUNT }, (_, i) => `localhost:${ports.port(i)}`);
/** How long until every node lists every other (hold-downs of a loaded machine included). */
const VIEWS_TIMEOUT_MS = 20_000;
const KEYS = 16;

/** A client whose requests come from 127.0.0.2: loopback, but no node's address. */
const outsider = new Agent({ localAddress: '127.0.0.2', connect: { timeout: 5_000 }, keepAliveTimeout: 1_000 });

describe('nodes named by host name, without CLUSTER_SECRET: 4 nodes, 2 shards', () => {
  const nodes = new Map<NodeAddress, StoreNode>();

  before(async () => {
    for (const [i, name] of names.entries()) {
      await assertPortFree(name);
      const env = {
        SOCKET_ADDRESS: name,
        VIEW: names.join(','),
        SHARD_COUNT: '2',
        CLUSTER_SECRET: '',
        LOG_LEVEL: 'info',
        LISTEN_HOST: i < 2 ? '::' : '127.0.0.1',
      };
      nodes.set(name, new StoreNode(name, env));
    }
    for (const node of nodes.values()) node.start();
    await pollUntil(
      `GET /status ready:true at ${names.join(', ')}`,
      async () => {
        const pending: string[] = [];
        for (const name of names) {
          const node = nodes.get(name)!;
          if (!node.alive) throw new AssertionError({ message: `${name} exited: ${node.crashed}\n${node.tail(40)}` });
          const r = await call('GET', name, '/status', undefined, { timeoutMs: 2_000 }).catch((error: Error) => ({ status: 0, body: undefined, text: error.message }));
          if (r.status !== 200 || r.body?.ready !== true) pending.push(`${name}: ${r.status} ${r.text.slice(0, 120)}`);
        }
        if (pending.length > 0) throw new NotYet(pending.join('; '));
      },
      { timeoutMs: READY_TIMEOUT_MS },
    );
    await pollUntil(
      'every node lists every node',
      async () => {
        for (const name of names) {
          const view = await getView(name);
          if (view.length !== NODE_COUNT) throw new NotYet(`${name} has ${view.join(',')}`);
        }
      },
      { timeoutMs: VIEWS_TIMEOUT_MS },
    );
  });
  after(async () => {
    await Promise.allSettled([...nodes.values()].map((node) => node.kill()));
    await outsider.close();
  });
  afterEach((t) => {
    if ((t as unknown as { passed?: boolean }).passed !== false) return;
    console.error([...nodes.values()].map((node) => `===== ${node.addr} (last 60 lines) =====\n${node.tail(60)}`).join('\n'));
  });

  test('/status, /view and /shard/members name the nodes as VIEW gave them', async () => {
    for (const name of names) {
      const status = await call('GET', name, '/status');
      assert.equal(status.body.address, name);
      // One name (`localhost`) for the four nodes, resolved without failure.
      assert.deepEqual(status.body.peerNames, { names: 1, failing: [], lookupFailures: 0 }, `${name}: ${status.text.slice(0, 300)}`);
      assert.deepEqual([...(await getView(name))].sort(), [...names].sort(), `GET /view at ${name}`);
    }
    const ids = await getShardIds(names[0]!);
    assert.equal(ids.length, 2);
    const members = await Promise.all(ids.map((id) => getMembers(names[0]!, id)));
    for (const list of members) assert.equal(list.length, 2, `two nodes per shard: ${list}`);
    assert.deepEqual(members.flat().sort(), [...names].sort(), 'every node in one shard, by its name');
    // Every node sees the same members.
    for (const name of names.slice(1)) {
      for (const [i, id] of ids.entries()) assert.deepEqual(await getMembers(name, id), members[i], `GET /shard/members/${id} at ${name}`);
    }
  });

  test('writes through one node are read through every node: forwarding and replication between named nodes', async () => {
    const writer = new Client();
    const shardsWritten = new Set<string>();
    for (let i = 0; i < KEYS; i++) {
      const r = await writer.put(names[0]!, `named-${i}`, `value-${i}`);
      assert.ok(r.status === 200 || r.status === 201, `PUT named-${i}: ${r.status} ${r.text}`);
      shardsWritten.add(r.body['shard-id']);
    }
    assert.equal(shardsWritten.size, 2, 'keys of both shards (half of them forwarded)');
    // With the writer's metadata, a node that lacks a write waits for it (or says 503): only
    // replication or a pull from a named peer can bring it.
    for (const name of names) {
      for (let i = 0; i < KEYS; i++) await readValue(name, `named-${i}`, writer.meta, `value-${i}`);
    }
  });

  test("peer routes still refuse an address that is no node's: a name is not a wildcard", async () => {
    for (const port of [ports.port(0), ports.port(2)]) {
      const res = await request(`http://127.0.0.1:${port}/internal/state`, { dispatcher: outsider, headersTimeout: 5_000, bodyTimeout: 5_000 });
      const body = (await res.body.json()) as { error?: unknown; map?: unknown };
      assert.equal(res.statusCode, 403, `port ${port}`);
      assert.equal(body.map, undefined, 'no shard map for an outsider');
    }
  });
});
