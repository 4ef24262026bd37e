// Durable nodes (DATA_DIR): what a node acknowledged survives SIGKILL; a data directory that is
// corrupt or gone is noticed and rebuilt from peers.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Cluster, pollUntil, printLogsOnFailure, NotYet } from '../helpers/cluster.ts';
import { Client, call, get } from '../helpers/http.ts';

const BASE_PORT = 9800;
const dataRoot = mkdtempSync(join(tmpdir(), 'kvs-durability-'));
let cluster: Cluster | undefined;
printLogsOnFailure(() => cluster);

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
  let nodes: string[];
  const client = new Client();
  const expected = new Map<string, unknown>();

  before(async () => {
    cluster = await Cluster.start({ basePort: BASE_PORT, nodeCount: 3, dataRoot, extraEnv: { CAUSAL_WAIT_MS: '300' } });
    nodes = cluster.addresses();
  });
  after(async () => {
    await cluster?.stop();
    rmSync(dataRoot, { recursive: true, force: true });
  });

  test('a node SIGKILLed right after acknowledging writes restarts with all of them', async () => {
    const [a, b, c] = nodes as [string, string, string];
    // With its peers down, what a acknowledges exists on a's disk only.
    await cluster!.kill(b);
    await cluster!.kill(c);
    const own = new Client();
    const written = new Map<string, unknown>();
    for (let i = 0; i < 60; i++) {
      const r = await own.put(a, `own-${i}`, { i, text: `välue ${i}` });
      assert.equal(r.status, 201, r.text);
      written.set(`own-${i}`, { i, text: `välue ${i}` });
    }
    const d = await own.del(a, 'own-7');
    assert.equal(d.status, 200, d.text);
    written.set('own-7', undefined);
    // No waiting: the acknowledgements alone must mean the writes are on a's disk.
    await cluster!.kill(a);
    await cluster!.restart(a);
    await cluster!.waitReady([a]);
    await assertServes(a, written, own.meta, 'after SIGKILL and restart');
    // The peers come back from their own disks and pull what they missed from a.
    await cluster!.restart(b);
    await cluster!.restart(c);
    await cluster!.waitReady([b, c]);
    await assertServes(b, written, own.meta, 'peer restarted after the writes');
    await assertServes(c, written, own.meta, 'peer restarted after the writes');
    for (const [k, v] of written) expected.set(k, v);
    Object.assign(client, { meta: own.meta });
  });

  test('every node SIGKILLed: one restarted alone serves everything it had from disk', async () => {
    for (let i = 0; i < 90; i++) {
      const key = `all-${i}`;
      const r = await client.put(nodes[i % 3]!, key, i);
      assert.ok(r.status === 201, r.text);
      expected.set(key, i);
    }
    // Let replication reach every replica's disk, then kill all of them at once.
    await pollUntil('replicas agree on disk', async () => {
      const clocks = await Promise.all(nodes.map(durableAppliedOf));
      if (!clocks.every((c) => JSON.stringify(Object.entries(c).sort()) === JSON.stringify(Object.entries(clocks[0]!).sort()))) {
        throw new NotYet(JSON.stringify(clocks));
      }
      return clocks;
    }, { timeoutMs: 5000 });
    await Promise.all(nodes.map((n) => cluster!.kill(n)));
    const [first] = nodes as [string];
    await cluster!.restart(first);
    await cluster!.waitReady([first]);
    // Its peers are down: everything it serves comes from its own disk.
    await assertServes(first, expected, client.meta, 'alone after all were killed');
  });

  test('a corrupt data directory is moved aside and rebuilt from a peer', async () => {
    const victim = nodes[1]!;
    const dir = join(dataRoot, victim.split(':')[1]!);
    writeFileSync(join(dir, 'kvs.sqlite'), 'this is not a database');
    for (const extra of ['kvs.sqlite-wal', 'kvs.sqlite-shm']) rmSync(join(dir, extra), { force: true });
    await cluster!.restart(victim);
    await cluster!.waitReady([victim]);
    await assertServes(victim, expected, client.meta, 'rebuilt after corruption');
    assert.ok(
      readdirSync(dataRoot).some((name) => name.startsWith(`${victim.split(':')[1]}.corrupt-`)),
      `the corrupt directory is kept aside: ${readdirSync(dataRoot)}`,
    );
    assert.match(cluster!.node(victim).tail(200), /data directory unusable/);
  });

  test('a data directory deleted while the node was down is rebuilt from a peer', async () => {
    const victim = nodes[2]!;
    const dir = join(dataRoot, victim.split(':')[1]!);
    rmSync(dir, { recursive: true, force: true });
    await cluster!.restart(victim);
    await cluster!.waitReady([victim]);
    assert.ok(existsSync(join(dir, 'kvs.sqlite')), 'a fresh data directory was created');
    await assertServes(victim, expected, client.meta, 'rebuilt after deletion');
  });

  test('hints for a down replica survive a restart of the node holding them', async () => {
    const [a, b, c] = nodes as [string, string, string];
    const hintsAt = async (addr: string): Promise<number> =>
      ((await call('GET', addr, '/status')).body as { replication: { hints: number } }).replication.hints;
    await cluster!.kill(c);
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
    await cluster!.kill(a);
    await cluster!.restart(a);
    await cluster!.waitReady([a]);
    assert.ok((await hintsAt(a)) >= 10, 'the hints came back from disk while c is still down');
    await cluster!.restart(c);
    await cluster!.waitReady([c]);
    await pollUntil('hints delivered after c is back', async () => {
      const hints = await hintsAt(a);
      if (hints !== 0) throw new NotYet(`${hints} hints`);
      return hints;
    }, { timeoutMs: 15_000 });
    await assertServes(c, written, client.meta, 'c after the hints');
    assert.ok(b !== undefined);
  });
});
