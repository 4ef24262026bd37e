// The view (spec section 2): GET/PUT/DELETE /view, down detection of a SIGKILLed node, and a
// restarted node coming back with its shard's data.
//
// One sharded store of 4 nodes (SHARD_COUNT=2, so each shard has 2 members; ports:
// test/helpers/ports.ts). The tests of a SIGKILLed node share one kill (`victimDown`); after them
// the store is whole again.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { NotYet, pollUntil } from '../helpers/cluster.ts';
import { Client, call, get, getNodeShardId, getView, readShardLayout, sortedAddresses, type CausalMetadata, type NodeAddress } from '../helpers/http.ts';
import { portsFor } from '../helpers/ports.ts';
import { readValue, step, useCluster } from '../helpers/store.ts';

const ports = portsFor(import.meta.url);
const NODE_COUNT = 4;
/** Spec: within 5 s of the first failed request no node lists a killed node; a restarted one is back within 5 s. */
const SPEC_WINDOW_MS = 5_000;
/** Measurement error of a poll: one poll interval plus the requests of one check. */
const MEASURE_SLACK_MS = 250;
/** An address in our port range where nothing ever listens. */
const NEVER_A_NODE = ports.address(99);

describe('view', () => {
  const store = useCluster({ ports, nodeCount: NODE_COUNT, shardCount: 2 });
  let nodes: NodeAddress[] = [];

  before(() => {
    nodes = store.nodes;
  });

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
    await store.cluster.waitForViews(nodes, { timeoutMs: 15_000 });
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
    // The three tests below need the victim killed after writes to its shard: each asks for it with
    // `victimDown()`, which does it once for the tests that find it done. The restart test brings
    // the victim back and resets the step, so a later test would kill it again (with keys of its own).
    let round = 0;

    interface Down {
      victim: NodeAddress;
      victimShard: string;
      /** The other member of the victim's shard. */
      partner: NodeAddress;
      /** key -> latest value, for the keys of the victim's shard. */
      values: Map<string, unknown>;
      /** The key written at the partner while the victim was down. */
      touchKey: string;
      metaBeforeKill: CausalMetadata;
      metaAfterTouch: CausalMetadata;
    }

    /**
     * Writes 40 keys through every node (and checks the victim serves those of its shard), SIGKILLs
     * the victim, writes one of its shard's keys at the partner (the request that touches the
     * victim), and checks it is gone from every remaining view within 5 s.
     */
    const victimDown = step(async (): Promise<Down> => {
      const cluster = store.cluster;
      const client = new Client();
      const values = new Map<string, unknown>();
      const prefix = round === 0 ? 'view-key' : `view-key-${round}`;
      round++;
      const layout = await readShardLayout(nodes[0]!);
      assert.equal(layout.ids.length, 2, `expected 2 shards: ${JSON.stringify(layout)}`);
      const victim = nodes[NODE_COUNT - 1]!;
      const victimShard = (await getNodeShardId(victim))!;
      assert.ok(layout.ids.includes(victimShard), `victim's shard ${victimShard} not in ${layout.ids}`);
      const members = layout.members[victimShard]!;
      assert.ok(members.includes(victim) && members.length >= 2, `members of ${victimShard}: ${members}`);
      const partner = members.find((m) => m !== victim)!;

      // Keys written through every node with chained metadata; keep those of the victim's shard.
      for (let i = 0; i < 40; i++) {
        const key = `${prefix}-${i}`;
        const r = await client.put(nodes[i % NODE_COUNT]!, key, `value-${i}`);
        assert.equal(r.status, 201, `PUT ${key}: ${r.text}`);
        if (r.body['shard-id'] === victimShard) values.set(key, `value-${i}`);
      }
      assert.ok(values.size >= 3, `only ${values.size} of 40 keys landed in shard ${victimShard}`);
      // Before the kill, the victim itself serves every key of its shard (it has replicated them).
      for (const [key, value] of values) await readValue(victim, key, client.meta, value, 'before the kill');
      const metaBeforeKill = client.meta;
      const touchKey = [...values.keys()][0]!;

      await cluster.kill(victim);
      const start = performance.now();
      // The partner must replicate this write to the victim: that send fails, which is the "touch".
      const touch = await client.put(partner, touchKey, 'written-while-victim-down');
      assert.equal(touch.status, 200, `PUT ${touchKey} at ${partner} with a member down must still succeed: ${touch.text}`);
      assert.equal(touch.body['shard-id'], victimShard);
      values.set(touchKey, 'written-while-victim-down');
      const metaAfterTouch = client.meta;

      const survivors = nodes.filter((n) => n !== victim);
      await cluster.waitUntilNoneLists(victim, survivors, SPEC_WINDOW_MS + 1_000);
      const elapsedMs = performance.now() - start;
      assert.ok(elapsedMs <= SPEC_WINDOW_MS + MEASURE_SLACK_MS, `took ${Math.round(elapsedMs)} ms, spec allows ${SPEC_WINDOW_MS}`);
      return { victim, victimShard, partner, values, touchKey, metaBeforeKill, metaAfterTouch };
    });

    // Whatever ran, the store is whole again for whatever comes after.
    after(async () => {
      if (!victimDown.done) return;
      victimDown.reset();
      await store.cluster.ensureRunning();
      await store.cluster.waitForViews(nodes, { timeoutMs: 15_000 });
    });

    test('is gone from every remaining view within 5 s of the first request that touches it', async () => {
      const { victim } = await victimDown();
      // The survivors still list each other.
      const survivors = nodes.filter((n) => n !== victim);
      for (const addr of survivors) assert.deepEqual(sortedAddresses(await getView(addr)), survivors, `view of ${addr}`);
      // A node that found it down itself says which failures in a row removed it, and how each failed.
      const removals = survivors
        .flatMap((addr) => store.cluster.node(addr).tail(400).split('\n'))
        .map((line) => (line.startsWith('{') ? (JSON.parse(line) as { msg?: string; peer?: string; why?: string; failures?: unknown }) : {}))
        .filter((entry) => entry.msg === 'node removed from view' && entry.peer === victim && entry.why === 'not answering');
      assert.ok(removals.length > 0, 'no survivor logged finding the victim down itself');
      for (const { failures } of removals) {
        assert.ok(Array.isArray(failures) && failures.length > 0, `a removal without its failures: ${JSON.stringify(failures)}`);
        for (const failure of failures) assert.match(String(failure), /^(probe|forward|replicate|pull|anti-entropy|key count)\b.*: \S/, 'each failure names the request and its error');
      }
    });

    test('with a member down, nodes outside its shard still forward reads of its keys', async () => {
      const { victim, victimShard, partner, values, metaAfterTouch } = await victimDown();
      const layout = await readShardLayout(partner);
      const outsiders = nodes.filter((n) => n !== victim && !layout.members[victimShard]!.includes(n));
      assert.ok(outsiders.length > 0);
      for (const outsider of outsiders) {
        for (const [key, value] of values) {
          const r = await readValue(outsider, key, metaAfterTouch, value, 'forwarded');
          assert.equal(r.body['shard-id'], victimShard);
        }
      }
    });

    test('restarted with the same env: back in every view within 5 s, with its shard data', async () => {
      const { victim, victimShard, values, touchKey, metaBeforeKill, metaAfterTouch } = await victimDown();
      victimDown.reset();
      const start = performance.now();
      await store.cluster.restart(victim);
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
