// Durable nodes (DATA_DIR): what a node acknowledged survives SIGKILL; a data directory that is
// corrupt or gone is noticed and rebuilt from peers.
//
// Each test starts by bringing up the nodes it needs (an earlier test may have left some killed)
// and writes the keys it checks; `expected` is every key written so far, so in the file's order a
// test also checks what the earlier ones wrote.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { pollUntil, NotYet } from '../helpers/cluster.ts';
import { Client, call, get } from '../helpers/http.ts';
import { portsFor } from '../helpers/ports.ts';
import { useCluster } from '../helpers/store.ts';

/** The applied clock a node has on disk (its in-memory clock runs ahead until the group commit). */
async function durableAppliedOf(addr: string): Promise<Record<string, number>> {
  const status = await call('GET', addr, '/status');
  return (status.body as { durableApplied: Record<string, number> }).durableApplied;
}

/** Reads every key at `addr` with `meta` and checks the expected value (undefined: deleted, 404). */
async function assertServes(addr: string, expected: Map<string, unknown>, meta: unknown, what: string): Promise<void> {
  for (const [key, value] of expected) {
    const r = await get(addr, key, meta as never);
    if (value === undefined) assert.equal(r.status, 404, `${what}: ${key} was deleted; got ${r.status} ${r.text}`);
    else {
      assert.equal(r.status, 200, `${what}: GET ${key} at ${addr}: ${r.status} ${r.text}`);
      assert.deepEqual(r.body.value, value, `${what}: ${key}`);
    }
  }
}

describe('durable nodes', { timeout: 120_000 }, () => {
  const store = useCluster({ ports: portsFor(import.meta.url), nodeCount: 3, durable: true, extraEnv: { CAUSAL_WAIT_MS: '300' } });
  let nodes: string[];
  /** Chains the metadata of every write of the file: reads with it depend on all of them. */
  const client = new Client();
  /** Every key written so far and its value (undefined: deleted). */
  const expected = new Map<string, unknown>();

  before(() => {
    nodes = store.nodes;
  });

  /** Writes `count` keys `<prefix>-<i>` through the nodes given, into `expected`. */
  async function writeKeys(prefix: string, count: number, at: readonly string[]): Promise<void> {
    for (let i = 0; i < count; i++) {
      const key = `${prefix}-${i}`;
      const r = await client.put(at[i % at.length]!, key, i);
      assert.equal(r.status, 201, r.text);
      expected.set(key, i);
    }
  }

  test('a node SIGKILLed right after acknowledging writes restarts with all of them', async () => {
    const [a, b, c] = nodes as [string, string, string];
    const cluster = store.cluster;
    await cluster.ensureRunning([a]);
    // With its peers down, what a acknowledges exists on a's disk only.
    await cluster.kill(b);
    await cluster.kill(c);
    const written = new Map<string, unknown>();
    for (let i = 0; i < 60; i++) {
      const r = await client.put(a, `own-${i}`, { i, text: `välue ${i}` });
      assert.equal(r.status, 201, r.text);
      written.set(`own-${i}`, { i, text: `välue ${i}` });
    }
    const d = await client.del(a, 'own-7');
    assert.equal(d.status, 200, d.text);
    written.set('own-7', undefined);
    // No waiting: the acknowledgements alone must mean the writes are on a's disk.
    await cluster.kill(a);
    await cluster.restart(a);
    await cluster.waitReady([a]);
    await assertServes(a, written, client.meta, 'after SIGKILL and restart');
    // The peers come back from their own disks and pull what they missed from a.
    await cluster.restart(b);
    await cluster.restart(c);
    await cluster.waitReady([b, c]);
    await assertServes(b, written, client.meta, 'peer restarted after the writes');
    await assertServes(c, written, client.meta, 'peer restarted after the writes');
    for (const [k, v] of written) expected.set(k, v);
  });

  test('every node SIGKILLed: one restarted alone serves everything it had from disk', async () => {
    const cluster = store.cluster;
    await cluster.ensureRunning();
    await writeKeys('all', 90, nodes);
    // Let replication reach every replica's disk, then kill all of them at once.
    await pollUntil('replicas agree on disk', async () => {
      const clocks = await Promise.all(nodes.map(durableAppliedOf));
      if (!clocks.every((c) => JSON.stringify(Object.entries(c).sort()) === JSON.stringify(Object.entries(clocks[0]!).sort()))) {
        throw new NotYet(JSON.stringify(clocks));
      }
      return clocks;
    }, { timeoutMs: 5000 });
    await Promise.all(nodes.map((n) => cluster.kill(n)));
    const [first] = nodes as [string];
    await cluster.restart(first);
    await cluster.waitReady([first]);
    // Its peers are down: everything it serves comes from its own disk.
    await assertServes(first, expected, client.meta, 'alone after all were killed');
  });

  /** The nodes other than `victim` up, `victim` down, and keys written that it missed. */
  async function downWithMissedWrites(victim: string, prefix: string): Promise<void> {
    const others = nodes.filter((n) => n !== victim);
    await store.cluster.ensureRunning(others);
    await store.cluster.kill(victim);
    await writeKeys(prefix, 10, others);
  }

  test('a corrupt data directory is moved aside and rebuilt from a peer', async () => {
    const victim = nodes[1]!;
    const cluster = store.cluster;
    const dataRoot = store.dataRoot;
    await downWithMissedWrites(victim, 'before-corruption');
    const dir = join(dataRoot, victim.split(':')[1]!);
    writeFileSync(join(dir, 'kvs.sqlite'), 'this is not a database');
    for (const extra of ['kvs.sqlite-wal', 'kvs.sqlite-shm']) rmSync(join(dir, extra), { force: true });
    await cluster.restart(victim);
    await cluster.waitReady([victim]);
    await assertServes(victim, expected, client.meta, 'rebuilt after corruption');
    assert.ok(
      readdirSync(dataRoot).some((name) => name.startsWith(`${victim.split(':')[1]}.corrupt-`)),
      `the corrupt directory is kept aside: ${readdirSync(dataRoot)}`,
    );
    assert.match(cluster.node(victim).tail(200), /data directory unusable/);
  });

  test('a data directory deleted while the node was down is rebuilt from a peer', async () => {
    const victim = nodes[2]!;
    const cluster = store.cluster;
    await downWithMissedWrites(victim, 'before-deletion');
    const dir = join(store.dataRoot, victim.split(':')[1]!);
    rmSync(dir, { recursive: true, force: true });
    await cluster.restart(victim);
    await cluster.waitReady([victim]);
    assert.ok(existsSync(join(dir, 'kvs.sqlite')), 'a fresh data directory was created');
    await assertServes(victim, expected, client.meta, 'rebuilt after deletion');
  });

  test('hints for a down replica survive a restart of the node holding them', async () => {
    const [a, b, c] = nodes as [string, string, string];
    const hintsAt = async (addr: string): Promise<number> =>
      ((await call('GET', addr, '/status')).body as { replication: { hints: number } }).replication.hints;
    const cluster = store.cluster;
    await cluster.ensureRunning();
    await cluster.kill(c);
    const written = new Map<string, unknown>();
    for (let i = 0; i < 10; i++) {
      const r = await client.put(a, `hint-${i}`, `h${i}`);
      assert.equal(r.status, 201, r.text);
      written.set(`hint-${i}`, `h${i}`);
    }
    await pollUntil('hints held at a', async () => {
      const hints = await hintsAt(a);
      if (hints < 10) throw new NotYet(`${hints} hints`);
      return hints;
    }, { timeoutMs: 5000 });
    // One more acknowledged write: its group commit also carries the hints staged before it.
    assert.equal((await client.put(a, 'hint-last', 'last')).status, 201);
    written.set('hint-last', 'last');
    await cluster.kill(a);
    await cluster.restart(a);
    await cluster.waitReady([a]);
    assert.ok((await hintsAt(a)) >= 10, 'the hints came back from disk while c is still down');
    await cluster.restart(c);
    await cluster.waitReady([c]);
    await pollUntil('hints delivered after c is back', async () => {
      const hints = await hintsAt(a);
      if (hints !== 0) throw new NotYet(`${hints} hints`);
      return hints;
    }, { timeoutMs: 15_000 });
    await assertServes(c, written, client.meta, 'c after the hints');
    assert.ok(b !== undefined);
  });
});
