// The view (spec section 2): GET/PUT/DELETE /view, down detection of a SIGKILLed node, and a
// restarted node coming back with its shard's data.
//
// One sharded store of 4 nodes (SHARD_COUNT=2, so each shard has 2 members) on ports 9100-9103.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster, NotYet, address, pollUntil, printLogsOnFailure, retryWhile503 } from '../helpers/cluster.ts';
import {
  Client,
  call,
  get,
  getNodeShardId,
  getView,
  readShardLayout,
  sortedAddresses,
  type CausalMetadata,
  type NodeAddress,
} from '../helpers/http.ts';

const BASE_PORT = 9100;
const NODE_COUNT = 4;
/** Spec: within 5 s of the first failed request no node lists a killed node; a restarted one is back within 5 s. */
const SPEC_WINDOW_MS = 5_000;
/** Measurement error of a poll: one poll interval plus the requests of one check. */
const MEASURE_SLACK_MS = 250;
/** An address in our port range where nothing ever listens. */
const NEVER_A_NODE = address(BASE_PORT + 99);

describe('view', () => {
  let cluster: Cluster | undefined;
  let nodes: NodeAddress[] = [];

  before(async () => {
    cluster = await Cluster.start({ basePort: BASE_PORT, nodeCount: NODE_COUNT, shardCount: 2 });
    nodes = cluster.addresses();
  });
  after(async () => {
    await cluster?.stop();
  });
  printLogsOnFailure(() => cluster);

  test('GET /view: every node lists exactly the nodes of VIEW', async () => {
    for (const addr of nodes) {
      const r = await call('GET', addr, '/view');
      assert.equal(r.status, 200, `GET /view at ${addr}: ${r.text}`);
      assert.deepEqual(Object.keys(r.body), ['view'], `GET /view at ${addr}: ${r.text}`);
      assert.deepEqual(sortedAddresses(r.body.view), nodes, `GET /view at ${addr}`);
      assert.equal(new Set(r.body.view).size, r.body.view.length, `duplicates in GET /view at ${addr}: ${r.text}`);
    }
  });

  test('PUT /view of an address already in the view: 200 "already present"', async () => {
    const [a, b] = nodes as [NodeAddress, NodeAddress];
    const r = await call('PUT', a, '/view', { 'socket-address': b });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body, { result: 'already present' });
    assert.deepEqual(sortedAddresses(await getView(a)), nodes, 'the view must not change');
  });

  test('DELETE /view of an address not in the view: 404 "View has no such replica"', async () => {
    const r = await call('DELETE', nodes[0]!, '/view', { 'socket-address': NEVER_A_NODE });
    assert.equal(r.status, 404, r.text);
    assert.deepEqual(r.body, { error: 'View has no such replica' });
    assert.deepEqual(sortedAddresses(await getView(nodes[0]!)), nodes, 'the view must not change');
  });

  test('DELETE /view of a member: 200 "deleted"; PUT it back: 201 "added"; the store heals', async () => {
    const [a, b] = nodes as [NodeAddress, NodeAddress];
    const deleted = await call('DELETE', a, '/view', { 'socket-address': b });
    assert.equal(deleted.status, 200, deleted.text);
    assert.deepEqual(deleted.body, { result: 'deleted' });
    const viewAfterDelete = await getView(a);
    assert.ok(!viewAfterDelete.includes(b), `${a} still lists ${b} after DELETE /view: ${viewAfterDelete}`);

    const added = await call('PUT', a, '/view', { 'socket-address': b });
    assert.equal(added.status, 201, added.text);
    assert.deepEqual(added.body, { result: 'added' });
    assert.ok((await getView(a)).includes(b), `${a} does not list ${b} after PUT /view`);

    // Whatever the other nodes heard meanwhile, a healthy store ends with every node in every view.
    await cluster!.waitForViews(nodes, { timeoutMs: 15_000 });
  });

  test('PUT and DELETE /view without "socket-address" answer a 4xx JSON error, not a 500', async () => {
    for (const method of ['PUT', 'DELETE'] as const) {
      const r = await call(method, nodes[0]!, '/view', {});
      assert.ok(r.status >= 400 && r.status < 500, `${method} /view {}: ${r.status} ${r.text}`);
      assert.equal(typeof r.body?.error, 'string', `${method} /view {}: ${r.text}`);
    }
    assert.deepEqual(sortedAddresses(await getView(nodes[0]!)), nodes);
  });

  describe('a SIGKILLed node', () => {
    // Shared by the two tests below, which run in order: kill, then restart.
    let victim: NodeAddress;
    let victimShard: string;
    let partner: NodeAddress; // the other member of the victim's shard
    const client = new Client();
    const values = new Map<string, unknown>(); // key -> latest value, for keys of the victim's shard
    let touchKey: string;
    let metaBeforeKill: CausalMetadata;
    let metaAfterTouch: CausalMetadata;

    test('is gone from every remaining view within 5 s of the first request that touches it', async () => {
      const layout = await readShardLayout(nodes[0]!);
      assert.equal(layout.ids.length, 2, `expected 2 shards: ${JSON.stringify(layout)}`);
      victim = nodes[NODE_COUNT - 1]!;
      victimShard = (await getNodeShardId(victim))!;
      assert.ok(layout.ids.includes(victimShard), `victim's shard ${victimShard} not in ${layout.ids}`);
      const members = layout.members[victimShard]!;
      assert.ok(members.includes(victim) && members.length >= 2, `members of ${victimShard}: ${members}`);
      partner = members.find((m) => m !== victim)!;

      // Keys written through every node with chained metadata; keep those of the victim's shard.
      for (let i = 0; i < 40; i++) {
        const key = `view-key-${i}`;
        const r = await client.put(nodes[i % NODE_COUNT]!, key, `value-${i}`);
        assert.equal(r.status, 201, `PUT ${key}: ${r.text}`);
        if (r.body['shard-id'] === victimShard) values.set(key, `value-${i}`);
      }
      assert.ok(values.size >= 3, `only ${values.size} of 40 keys landed in shard ${victimShard}`);
      // Before the kill, the victim itself serves every key of its shard (it has replicated them).
      for (const [key, value] of values) {
        const r = await retryWhile503(`GET ${key} at ${victim}`, () => get(victim, key, client.meta));
        assert.equal(r.status, 200, `GET ${key} at ${victim} before the kill: ${r.text}`);
        assert.deepEqual(r.body.value, value);
      }
      metaBeforeKill = client.meta;
      touchKey = [...values.keys()][0]!;

      await cluster!.kill(victim);
      const start = performance.now();
      // The partner must replicate this write to the victim: that send fails, which is the "touch".
      const touch = await client.put(partner, touchKey, 'written-while-victim-down');
      assert.equal(touch.status, 200, `PUT ${touchKey} at ${partner} with a member down must still succeed: ${touch.text}`);
      assert.equal(touch.body['shard-id'], victimShard);
      values.set(touchKey, 'written-while-victim-down');
      metaAfterTouch = client.meta;

      const survivors = nodes.filter((n) => n !== victim);
      await cluster!.waitUntilNoneLists(victim!, survivors, SPEC_WINDOW_MS + 1_000);
      const elapsedMs = performance.now() - start;
      assert.ok(elapsedMs <= SPEC_WINDOW_MS + MEASURE_SLACK_MS, `took ${Math.round(elapsedMs)} ms, spec allows ${SPEC_WINDOW_MS}`);
      // The survivors still list each other.
      for (const addr of survivors) assert.deepEqual(sortedAddresses(await getView(addr)), survivors, `view of ${addr}`);
    });

    test('with a member down, nodes outside its shard still forward reads of its keys', async () => {
      assert.ok(victim, 'depends on the previous test');
      const layout = await readShardLayout(partner);
      const outsiders = nodes.filter((n) => n !== victim && !layout.members[victimShard]!.includes(n));
      assert.ok(outsiders.length > 0);
      for (const outsider of outsiders) {
        for (const [key, value] of values) {
          const r = await retryWhile503(`GET ${key} via ${outsider}`, () => get(outsider, key, metaAfterTouch));
          assert.equal(r.status, 200, `GET ${key} via ${outsider}: ${r.text}`);
          assert.deepEqual(r.body.value, value, `GET ${key} via ${outsider}`);
          assert.equal(r.body['shard-id'], victimShard);
        }
      }
    });

    test('restarted with the same env: back in every view within 5 s, with its shard data', async () => {
      assert.ok(victim && metaBeforeKill !== undefined, 'depends on the previous tests');
      const start = performance.now();
      await cluster!.restart(victim);
      await pollUntil(
        `${victim} back in every view and serving its shard's keys`,
        async () => {
          for (const addr of nodes) {
            const view = await getView(addr);
            if (!view.includes(victim)) throw new NotYet(`${addr} does not list ${victim}: ${view}`);
          }
          for (const [key, value] of values) {
            // Read with the metadata the client had before the kill (the touch key: after the touch).
            const meta = key === touchKey ? metaAfterTouch : metaBeforeKill;
            const r = await get(victim, key, meta);
            if (r.status === 503) throw new NotYet(`GET ${key} at ${victim}: 503 ${r.text}`);
            assert.equal(r.status, 200, `GET ${key} at restarted ${victim} with earlier metadata: ${r.text}`);
            assert.deepEqual(r.body.value, value, `GET ${key} at restarted ${victim}`);
          }
        },
        { timeoutMs: SPEC_WINDOW_MS + 2_000 },
      );
      const elapsedMs = performance.now() - start;
      assert.ok(elapsedMs <= SPEC_WINDOW_MS + MEASURE_SLACK_MS, `took ${Math.round(elapsedMs)} ms from restart, spec allows ${SPEC_WINDOW_MS}`);

      assert.equal(await getNodeShardId(victim), victimShard, 'the restarted node is back in its shard');
      assert.deepEqual(sortedAddresses(await getView(victim)), nodes, 'the restarted node lists every node');
      const layout = await readShardLayout(victim);
      assert.deepEqual(layout, await readShardLayout(nodes[0]!), 'the restarted node answers the same shard layout');
    });
  });
});
