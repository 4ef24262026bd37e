// ADMIN_TOKEN: with it, clients' topology changes (PUT and DELETE /view, PUT /shard/add-member/<id>,
// PUT /shard/reshard) need `Authorization: Bearer <token>`; everything else stays open, and the
// nodes' own topology requests (announcements, down reports) carry the token, so detection of a
// down node and the return of a restarted one work as without it.
//
// One sharded store of 4 nodes (SHARD_COUNT=2) and a joiner (ports: test/helpers/ports.ts).
// HOLD_DOWN_MS is long, so a restarted node is back in the views within seconds only through its
// announcement (a PUT /view that must carry the token), not through re-admission after the hold-down.
//
// The tests that need the joiner ask for it with `joined()` (the joiner's test runs it first);
// the last test reshards the store to one shard, so it stays last. The checks that no node refused
// another look at the lines logged during their own test.

import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent } from 'undici';
import { NotYet, pollUntil } from '../helpers/cluster.ts';
import { Client, call, getNodeShardId, getView, readShardLayout, sortedAddresses, type NodeAddress, type Reply, type ShardLayout } from '../helpers/http.ts';
import { portsFor } from '../helpers/ports.ts';
import { readValue, step, useCluster } from '../helpers/store.ts';

const ports = portsFor(import.meta.url);
const NODE_COUNT = 4;
/** An address in our port range where nothing ever listens. */
const NEVER_A_NODE = ports.address(9);
const TOKEN = 'admin-token-for-the-test-0123456789';
/** Spec: within 5 s no node lists a killed node; a restarted one is back within 5 s. */
const SPEC_WINDOW_MS = 5_000;
const MEASURE_SLACK_MS = 250;
/** What a node logs when it refuses a topology change for want of the token. */
const REFUSAL_LOG = 'topology change refused';

const dispatcher = new Agent({ keepAliveTimeout: 1_000, keepAliveMaxTimeout: 2_000, connect: { timeout: 5_000 } });

/** One request with an optional Authorization header. */
function callWith(method: 'GET' | 'PUT' | 'DELETE', addr: NodeAddress, path: string, body: unknown, authorization?: string): Promise<Reply> {
  return call(method, addr, path, body, { dispatcher, headers: authorization === undefined ? {} : { authorization } });
}

function assertUnauthorized(r: Reply, what: string): void {
  assert.equal(r.status, 401, `${what}: expected 401, got ${r.status} ${r.text}`);
  assert.ok(r.body !== null && typeof r.body === 'object' && !Array.isArray(r.body), `${what}: not a JSON object: ${r.text}`);
  assert.deepEqual(Object.keys(r.body), ['error'], `${what}: ${r.text}`);
  assert.match(r.body.error, /admin token/, `${what}: ${r.text}`);
}

describe('ADMIN_TOKEN guards the topology changes of clients', () => {
  const store = useCluster({
    ports,
    nodeCount: NODE_COUNT,
    shardCount: 2,
    extraEnv: { ADMIN_TOKEN: TOKEN, HOLD_DOWN_MS: '600000' },
  });
  const joiner = ports.address(NODE_COUNT);
  let nodes: NodeAddress[] = [];
  /** Every node of the store once the joiner is in. */
  let everyone: NodeAddress[] = [];
  /** Per node, how many lines it had logged when the current test began. */
  let marks = new Map<NodeAddress, number>();
  /** The shard layout the store started with, and the refusals logged while it started (before any test ran). */
  let initialLayout: ShardLayout;
  let startupRefusals: string[] = [];

  before(async () => {
    nodes = store.nodes;
    everyone = nodes;
    await store.cluster.waitForViews(nodes, { timeoutMs: 10_000 });
    initialLayout = await readShardLayout(nodes[0]!);
    marks.clear(); // every line since the start
    startupRefusals = refusalLines();
  });
  beforeEach(() => {
    marks = new Map([...store.cluster.nodes.values()].map((n) => [n.addr, n.linesLogged]));
  });
  after(async () => {
    await dispatcher.close();
  });

  /** Log lines in which a node refused a topology change, from every node, since this test began. */
  function refusalLines(): string[] {
    return [...store.cluster.nodes.values()].flatMap((n) =>
      n
        .logSince(marks.get(n.addr) ?? 0)
        .filter((line) => line.includes(REFUSAL_LOG))
        .map((line) => `${n.addr}: ${line}`),
    );
  }

  /** A new node joins the view: its announcement carries the token. */
  const joined = step(async () => {
    const cluster = store.cluster;
    // Whatever peer secret the store's nodes were given, the joiner gets the same.
    const secret = cluster.node(nodes[0]!).env.CLUSTER_SECRET;
    assert.equal(await cluster.startJoiner(ports.port(NODE_COUNT), secret === undefined ? {} : { CLUSTER_SECRET: secret }), joiner);
    everyone = sortedAddresses([...nodes, joiner]);
    await cluster.waitReady([joiner]);
    await cluster.waitForViews(everyone, { timeoutMs: SPEC_WINDOW_MS, at: everyone });
    assert.equal(await getNodeShardId(joiner), null, 'a joiner is in no shard until add-member');
  });

  /** Every node answers the same view and shard layout as `expected`. */
  async function assertUnchanged(expected: { view: NodeAddress[]; layout: ShardLayout }, what: string): Promise<void> {
    for (const addr of everyone) {
      assert.deepEqual(sortedAddresses(await getView(addr)), expected.view, `${what}: view at ${addr}`);
      assert.deepEqual(await readShardLayout(addr), expected.layout, `${what}: shard ids and members at ${addr}`);
    }
  }

  test('the store starts: every node in every view, and no node refused another node', async () => {
    assert.equal(initialLayout.ids.length, 2, JSON.stringify(initialLayout));
    assert.deepEqual(startupRefusals, [], 'start-up announcements carry the token');
    await store.cluster.waitForViews(everyone, { timeoutMs: 10_000 });
  });

  test('a killed node leaves every view within 5 s; restarted, it is back in every view (announced with the token)', async () => {
    const victim = nodes[NODE_COUNT - 1]!;
    const victimShard = await getNodeShardId(victim);
    // Every node of the store, the joiner too if an earlier test let it join.
    const all = everyone;
    const survivors = all.filter((n) => n !== victim);
    const cluster = store.cluster;
    await cluster.kill(victim);
    const killedAt = performance.now();
    await cluster.waitUntilNoneLists(victim, survivors, SPEC_WINDOW_MS + 1_000);
    const goneMs = performance.now() - killedAt;
    assert.ok(goneMs <= SPEC_WINDOW_MS + MEASURE_SLACK_MS, `took ${Math.round(goneMs)} ms, spec allows ${SPEC_WINDOW_MS}`);

    await cluster.restart(victim);
    const restartedAt = performance.now();
    await pollUntil(
      `${victim} back in every view`,
      async () => {
        for (const addr of all) {
          const view = await getView(addr).catch((err: Error) => {
            throw new NotYet(err.message);
          });
          if (sortedAddresses(view).join(',') !== all.join(',')) throw new NotYet(`${addr} has ${view}`);
        }
      },
      { timeoutMs: SPEC_WINDOW_MS + 2_000 },
    );
    const backMs = performance.now() - restartedAt;
    assert.ok(backMs <= SPEC_WINDOW_MS + MEASURE_SLACK_MS, `took ${Math.round(backMs)} ms from restart, spec allows ${SPEC_WINDOW_MS}`);
    await cluster.waitReady([victim]);
    assert.equal(await getNodeShardId(victim), victimShard, 'the restarted node is back in its shard');
    // Down reports (DELETE /view) and the announcement (PUT /view) went to nodes with the token set:
    // a refusal of either would have been logged (the first refusal of a kind always is).
    assert.deepEqual(refusalLines(), [], 'down reports and announcements carry the token');
  });

  test('a new node joins the view: its announcement carries the token', async () => {
    await joined();
    assert.deepEqual(refusalLines(), []);
  });

  test('without the token: GET /view, GET /shard/..., GET /status and the key-value routes stay open', async () => {
    await joined();
    const layout = await readShardLayout(nodes[0]!);
    for (const addr of everyone) {
      assert.equal((await call('GET', addr, '/view')).status, 200, `GET /view at ${addr}`);
      assert.equal((await call('GET', addr, '/shard/ids')).status, 200, `GET /shard/ids at ${addr}`);
      assert.equal((await call('GET', addr, '/shard/node-shard-id')).status, 200, `GET /shard/node-shard-id at ${addr}`);
      for (const id of layout.ids) {
        assert.equal((await call('GET', addr, `/shard/members/${id}`)).status, 200, `GET /shard/members/${id} at ${addr}`);
        assert.equal((await call('GET', addr, `/shard/key-count/${id}`)).status, 200, `GET /shard/key-count/${id} at ${addr}`);
      }
      assert.equal((await call('GET', addr, '/status')).status, 200, `GET /status at ${addr}`);
    }
    const client = new Client();
    const written = await client.put(nodes[0]!, 'admin-k', 'v');
    assert.equal(written.status, 201, written.text);
    await readValue(nodes[1]!, 'admin-k', client.meta, 'v');
  });

  /** Requests that would change the topology if they were let through. */
  function changes(layout: ShardLayout): { method: 'PUT' | 'DELETE'; path: string; body: unknown }[] {
    return [
      { method: 'PUT', path: '/view', body: { 'socket-address': NEVER_A_NODE } },
      { method: 'DELETE', path: '/view', body: { 'socket-address': nodes[NODE_COUNT - 1]! } },
      { method: 'PUT', path: `/shard/add-member/${layout.ids[0]!}`, body: { 'socket-address': joiner } },
      { method: 'PUT', path: '/shard/reshard', body: { 'shard-count': 1 } },
    ];
  }

  test('without the header: each topology change is 401 with a JSON error, and nothing changes', async () => {
    await joined();
    const before = { view: everyone, layout: await readShardLayout(nodes[0]!) };
    await assertUnchanged(before, 'before');
    for (const change of changes(before.layout)) {
      for (const addr of [nodes[0]!, joiner]) {
        assertUnauthorized(await callWith(change.method, addr, change.path, change.body), `${change.method} ${change.path} at ${addr}`);
      }
    }
    // Not even a malformed body gets past the token to a 400.
    assertUnauthorized(await callWith('PUT', nodes[1]!, '/view', { 'socket-address': 7 }), 'PUT /view with a bad body');
    await assertUnchanged(before, 'after the refused requests');
    assert.ok(refusalLines().length > 0, 'the refusals are logged');
  });

  test('with a wrong token, or not as a bearer token: 401, and nothing changes', async () => {
    await joined();
    const before = { view: everyone, layout: await readShardLayout(nodes[0]!) };
    const wrong = [
      `Bearer ${TOKEN.slice(0, -1)}x`, // same length
      `Bearer ${TOKEN}x`, // longer
      `Bearer ${TOKEN.slice(0, 8)}`, // a prefix
      'Bearer ',
      'Bearer',
      TOKEN, // no scheme
      `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}`,
      `Bearer ${TOKEN} ${TOKEN}`,
    ];
    for (const change of changes(before.layout)) {
      for (const authorization of wrong) {
        assertUnauthorized(
          await callWith(change.method, nodes[2]!, change.path, change.body, authorization),
          `${change.method} ${change.path} with Authorization: ${authorization}`,
        );
      }
    }
    await assertUnchanged(before, 'after the wrong tokens');
  });

  test('with the token: the normal answers, and the changes take effect', async () => {
    await joined();
    const bearer = `Bearer ${TOKEN}`;
    const [a] = nodes as [NodeAddress];
    const b = nodes[NODE_COUNT - 1]!;
    // A session that writes a key before the reshard.
    const client = new Client();
    const written = await client.put(nodes[0]!, 'admin-k-resharded', 'v');
    assert.equal(written.status, 201, written.text);

    const deleted = await callWith('DELETE', a, '/view', { 'socket-address': b }, bearer);
    assert.equal(deleted.status, 200, deleted.text);
    assert.deepEqual(deleted.body, { result: 'deleted' });
    assert.ok(!(await getView(a)).includes(b), `${a} still lists ${b} after DELETE /view`);
    const added = await callWith('PUT', a, '/view', { 'socket-address': b }, bearer);
    assert.equal(added.status, 201, added.text);
    assert.deepEqual(added.body, { result: 'added' });
    const present = await callWith('PUT', a, '/view', { 'socket-address': b }, bearer);
    assert.equal(present.status, 200, present.text);
    assert.deepEqual(present.body, { result: 'already present' });
    await store.cluster.waitForViews(everyone, { timeoutMs: 15_000, at: everyone });

    const layout = await readShardLayout(a);
    const shard = layout.ids[0]!;
    const member = await callWith('PUT', a, `/shard/add-member/${shard}`, { 'socket-address': joiner }, bearer);
    assert.equal(member.status, 200, member.text);
    assert.deepEqual(member.body, { result: 'node added to shard' });
    await pollUntil(
      `every node lists ${joiner} in ${shard}`,
      async () => {
        for (const addr of everyone) {
          const members = (await readShardLayout(addr)).members[shard] ?? [];
          if (!members.includes(joiner)) throw new NotYet(`${addr}: members of ${shard} are ${members}`);
        }
      },
      { timeoutMs: 10_000 },
    );

    // A real reshard: the coordinator reaches the other nodes on /internal/ routes, not the guarded ones.
    const resharded = await callWith('PUT', a, '/shard/reshard', { 'shard-count': 1 }, bearer);
    assert.equal(resharded.status, 200, resharded.text);
    assert.deepEqual(resharded.body, { result: 'resharded' });
    await pollUntil(
      'every node in the one shard',
      async () => {
        for (const addr of everyone) {
          const now = await readShardLayout(addr);
          if (now.ids.length !== 1 || sortedAddresses(now.members[now.ids[0]!] ?? []).join(',') !== everyone.join(',')) {
            throw new NotYet(`${addr}: ${JSON.stringify(now)}`);
          }
        }
      },
      { timeoutMs: 10_000 },
    );
    // The key written before the reshard is still there.
    await readValue(joiner, 'admin-k-resharded', client.meta, 'v', 'after the reshard');
    store.cluster.assertNoCrash();
  });
});
