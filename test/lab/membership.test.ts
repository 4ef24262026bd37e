// Membership on a real network (spec section 4): 6 nodes in 2 shards with 600 keys, each node in its
// own network namespace; a 7th node joins and is added to a shard; reshard to 3; then reshard back
// to 2 while clients keep writing, and nothing acknowledged is lost.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { NotYet, forEachLimited, pollUntil } from '../helpers/cluster.ts';
import { Client, call, get, getKeyCount, getNodeShardId, readShardLayout, sortedAddresses, type CausalMetadata, type NodeAddress, type ShardLayout } from '../helpers/http.ts';
import { skipReason, sleep, useLab } from './helpers.ts';

const KEY_COUNT = 600;
const SPEC_WINDOW_MS = 5_000;
const SLACK_MS = 3_000;
const RESHARD_WINDOW_MS = 20_000;

/** Every node answers the same layout; returns it. */
async function agreedLayout(nodes: readonly NodeAddress[]): Promise<ShardLayout> {
  const { value } = await pollUntil(
    'every node answers the same shard layout',
    async () => {
      const layouts = await Promise.all(nodes.map((n) => readShardLayout(n)));
      const texts = new Set(layouts.map((l) => JSON.stringify(l)));
      if (texts.size !== 1) throw new NotYet([...texts].join(' vs '));
      return layouts[0]!;
    },
    { timeoutMs: SPEC_WINDOW_MS + SLACK_MS, intervalMs: 200 },
  );
  return value;
}

/** Polls until the replicas of every shard report the same applied clock and key count. */
async function waitShardsConverged(lab: { status(a: NodeAddress): Promise<Record<string, any> | undefined> }, layout: ShardLayout, timeoutMs = 20_000): Promise<void> {
  await pollUntil(
    'replicas of every shard agree (applied clock, key count)',
    async () => {
      for (const id of layout.ids) {
        const statuses = await Promise.all(layout.members[id]!.map((m) => lab.status(m)));
        const shapes = new Set(statuses.map((s) => JSON.stringify([sortedEntries(s?.applied), s?.keys, s?.pendingEarlyWrites])));
        if (shapes.size !== 1) throw new NotYet(`${id}: ${[...shapes].join(' vs ')}`);
      }
    },
    { timeoutMs, intervalMs: 250 },
  );
}

function sortedEntries(clock: unknown): [string, unknown][] {
  return Object.entries((clock ?? {}) as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1));
}

describe('membership on a real network: 6 nodes, 2 shards, 600 keys', { skip: skipReason }, () => {
  const lab = useLab({ nodeCount: 6, shardCount: 2 });
  /** key -> the value last written (every key written by one session per worker, sequentially). */
  const latest = new Map<string, string>();
  /** Metadata that depends on every setup write. */
  let setupMeta: CausalMetadata = null;
  let joiner: NodeAddress;

  test('setup: 600 keys over 2 shards', async () => {
    const nodes = lab().addresses();
    const keys = Array.from({ length: KEY_COUNT }, (_, i) => `mk-${i}`);
    const workers = Array.from({ length: 6 }, () => new Client());
    await forEachLimited(keys, 6, async (key, i) => {
      const session = workers[i % 6]!;
      const r = await session.put(nodes[i % nodes.length]!, key, `m0-${i}`);
      assert.equal(r.status, 201, `PUT ${key}: ${r.text}`);
      latest.set(key, `m0-${i}`);
    });
    // One session that has read every worker's last write depends on all of them.
    const reader = new Client();
    for (const worker of workers) {
      reader.meta = worker.meta;
      await reader.get(nodes[0]!, 'mk-0');
    }
    setupMeta = workers.at(-1)!.meta;
    const layout = await agreedLayout(nodes);
    assert.equal(layout.ids.length, 2);
    const counts = await Promise.all(layout.ids.map((id) => getKeyCount(nodes[0]!, id)));
    assert.equal(counts.reduce((a, b) => a + b, 0), KEY_COUNT);
  });

  test('add-member: a 7th node joins, is added to a shard, and within 5 s has that shard and its keys', async () => {
    joiner = await lab().addNode();
    await lab().waitReady([joiner]);
    assert.equal(await getNodeShardId(joiner), null);
    const nodes = sortedAddresses(lab().addresses());
    const layout = await agreedLayout(nodes);
    const target = layout.ids[1]!;
    const via = layout.members[layout.ids[0]!]![0]!;
    const r = await call('PUT', via, `/shard/add-member/${encodeURIComponent(target)}`, { 'socket-address': joiner });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body, { result: 'node added to shard' });
    const addedAt = performance.now();
    const expected = sortedAddresses([...layout.members[target]!, joiner]);
    await pollUntil(
      `every node lists ${joiner} in ${target}, which reports the same key count there`,
      async () => {
        for (const node of nodes) {
          const members = (await readShardLayout(node)).members[target];
          if (JSON.stringify(members) !== JSON.stringify(expected)) throw new NotYet(`${node}: ${JSON.stringify(members)}`);
        }
        if ((await getNodeShardId(joiner)) !== target) throw new NotYet('joiner does not report the shard yet');
        const counts = await Promise.all(expected.map((m) => lab().status(m).then((s) => s?.keys)));
        if (new Set(counts).size !== 1) throw new NotYet(`key counts of the members: ${counts.join(' ')}`);
      },
      { timeoutMs: SPEC_WINDOW_MS + SLACK_MS, intervalMs: 100 },
    );
    console.log(`add-member: the joiner has its shard's keys ${Math.round(performance.now() - addedAt)} ms after the answer`);
    // It serves its shard's keys with the setup metadata.
    const session = new Client();
    session.meta = setupMeta;
    for (const [key, value] of [...latest].slice(0, 100)) {
      const g = await session.get(joiner, key);
      assert.equal(g.status, 200, g.text);
      assert.equal(g.body.value, value);
    }
  });

  test('reshard to 3: every key in exactly one shard, 150..250 keys each, values intact', async () => {
    const nodes = sortedAddresses(lab().addresses());
    const started = performance.now();
    const r = await call('PUT', nodes[2]!, '/shard/reshard', { 'shard-count': 3 }, { timeoutMs: RESHARD_WINDOW_MS + SLACK_MS });
    const ms = performance.now() - started;
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body, { result: 'resharded' });
    assert.ok(ms < RESHARD_WINDOW_MS, `reshard took ${Math.round(ms)} ms`);
    console.log(`reshard 2 -> 3 with ${KEY_COUNT} keys took ${Math.round(ms)} ms`);
    const layout = await agreedLayout(nodes);
    assert.equal(layout.ids.length, 3);
    const assigned = layout.ids.flatMap((id) => layout.members[id]!);
    assert.deepEqual(sortedAddresses(assigned), nodes, 'every node in exactly one shard');
    for (const id of layout.ids) assert.ok(layout.members[id]!.length >= 2, `${id}: ${layout.members[id]}`);
    await waitShardsConverged(lab(), layout);
    const counts = await Promise.all(layout.ids.map((id) => getKeyCount(nodes[0]!, id)));
    assert.equal(counts.reduce((a, b) => a + b, 0), KEY_COUNT, `key counts ${counts}`);
    for (const count of counts) assert.ok(count > 150 && count < 250, `key counts ${counts}`);
    // Every key: the same value on every replica of its shard (read locally, empty metadata), and
    // through any node with metadata from before the reshard.
    const session = new Client();
    session.meta = setupMeta;
    await forEachLimited([...latest], 8, async ([key, value], i) => {
      const g = await get(nodes[i % nodes.length]!, key, setupMeta);
      assert.equal(g.status, 200, `${key}: ${g.text}`);
      assert.equal(g.body.value, value, key);
      const shard = g.body['shard-id'] as string;
      for (const member of layout.members[shard]!) {
        const local = await get(member, key, null);
        assert.equal(local.body?.value, value, `${key} at ${member} (shard ${shard})`);
      }
    });
  });

  test('reshard back to 2 while clients keep writing: nothing acknowledged is lost', async () => {
    const nodes = sortedAddresses(lab().addresses());
    const writerCount = 4;
    const keysPerWriter = 12;
    // Per writer key: the values in the order written, and what happened to each.
    type Attempt = { value: string; outcome: 'ok' | 'fail' | 'unknown'; status?: number };
    const attempts = new Map<string, Attempt[]>();
    const sessions = Array.from({ length: writerCount }, () => new Client());
    let stop = false;
    const stats = { ok: 0, fail: 0, unknown: 0 };
    const writers = sessions.map(async (session, w) => {
      for (let n = 0; !stop; n++) {
        const key = `rw-${w}-${n % keysPerWriter}`;
        const value = `rw${w}-${n}`;
        const node = nodes[(w + n) % nodes.length]!;
        const list = attempts.get(key) ?? [];
        attempts.set(key, list);
        try {
          const r = await session.put(node, key, value);
          const outcome = r.status === 200 || r.status === 201 ? 'ok' : r.status === 503 ? 'fail' : 'unknown';
          list.push({ value, outcome, status: r.status });
          stats[outcome]++;
        } catch {
          list.push({ value, outcome: 'unknown' });
          stats.unknown++;
        }
        await sleep(5);
      }
    });
    try {
      await sleep(1_500);
      const started = performance.now();
      const r = await call('PUT', nodes[5]!, '/shard/reshard', { 'shard-count': 2 }, { timeoutMs: RESHARD_WINDOW_MS + SLACK_MS });
      const ms = performance.now() - started;
      assert.equal(r.status, 200, r.text);
      console.log(`reshard 3 -> 2 under writes took ${Math.round(ms)} ms`);
      await sleep(1_500);
    } finally {
      stop = true;
      await Promise.all(writers);
    }
    console.log(`writes during the reshard: ${JSON.stringify(stats)}`);
    assert.ok(stats.ok > 50, `too few writes acknowledged: ${JSON.stringify(stats)}`);

    const layout = await agreedLayout(nodes);
    assert.equal(layout.ids.length, 2);
    await waitShardsConverged(lab(), layout);
    const counts = await Promise.all(layout.ids.map((id) => getKeyCount(nodes[0]!, id)));
    assert.equal(counts.reduce((a, b) => a + b, 0), KEY_COUNT + attempts.size, `key counts ${counts}`);

    // Each writer key: the final value is its last acknowledged write or a later write whose outcome
    // is unknown; on every replica of its shard; and the writer's session reads it.
    for (const [key, list] of attempts) {
      const lastOk = list.map((a) => a.outcome).lastIndexOf('ok');
      const allowed = new Set(list.slice(Math.max(0, lastOk)).filter((a, i) => i === 0 || a.outcome === 'unknown').map((a) => a.value));
      if (lastOk < 0) continue;
      const w = Number(key.split('-')[1]);
      const g = await sessions[w]!.get(nodes[0]!, key);
      assert.equal(g.status, 200, `${key}: ${g.text}`);
      assert.ok(allowed.has(g.body.value), `${key}: read ${g.body.value}; last acknowledged ${list[lastOk]!.value}; allowed ${[...allowed].join(' ')}`);
      for (const member of layout.members[g.body['shard-id'] as string]!) {
        const local = await get(member, key, null);
        assert.equal(local.body?.value, g.body.value, `${key} at ${member}`);
      }
    }
    // The 600 keys of the setup are all still there with their values.
    await forEachLimited([...latest], 8, async ([key, value], i) => {
      const g = await get(nodes[i % nodes.length]!, key, setupMeta);
      assert.equal(g.body?.value, value, `${key}: ${g.text}`);
    });
    lab().assertNoCrash();
  });
});
