// Repair between replicas on real processes: anti-entropy finds and copies a version only one
// replica holds, with no clock to tell; writes for a down replica wait as hints and are delivered
// when it is back.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { NotYet, pollUntil } from '../helpers/cluster.ts';
import { Client, call, get } from '../helpers/http.ts';
import { peerCall } from '../helpers/peer.ts';
import { portsFor } from '../helpers/ports.ts';
import { useCluster } from '../helpers/store.ts';

interface Status {
  epoch: number;
  shard: string;
  replication: { hints: number };
  repair: { rounds: number; keysRepaired: number; msSinceFullSync: number | null };
}

async function status(addr: string): Promise<Status> {
  return (await call('GET', addr, '/status')).body as unknown as Status;
}

describe('repair', { timeout: 120_000 }, () => {
  const store = useCluster({ ports: portsFor(import.meta.url), nodeCount: 3, extraEnv: { ANTI_ENTROPY_INTERVAL_MS: '300', HOLD_DOWN_MS: '1000' } });
  let nodes: string[];
  before(() => {
    nodes = store.nodes;
  });

  test('anti-entropy copies a version only one replica holds to every replica', async () => {
    const [a, b, c] = nodes as [string, string, string];
    await store.cluster.ensureRunning();
    const { epoch, shard } = await status(a);
    // A version that reaches a alone and advances no clock: only digests can find it.
    const injected = {
      key: 'only-on-a',
      value: { from: 'anti-entropy' },
      deleted: false,
      dot: null,
      stamp: { lamport: 1_000_000, node: a },
      deps: {},
    };
    // Nowhere before the injection (after it, a round every 300 ms may copy it at any moment:
    // checking b and c then would race anti-entropy itself).
    for (const peer of [a, b, c]) {
      assert.equal((await get(peer, 'only-on-a', null)).status, 404, 'not there before the injection');
    }
    const r = await peerCall('POST', a, '/internal/repair', { epoch, shard, versions: [injected] });
    assert.equal(r.status, 200, r.text);
    const { elapsedMs } = await pollUntil(
      'the injected version on every replica',
      async () => {
        for (const peer of [b, c]) {
          const reply = await get(peer, 'only-on-a', null);
          if (reply.status !== 200) throw new NotYet(`${peer}: ${reply.status}`);
          assert.deepEqual(reply.body.value, { from: 'anti-entropy' });
        }
        return true;
      },
      { timeoutMs: 10_000 },
    );
    // Each node counts the keys it repaired: b and c took one each.
    const repaired = await Promise.all(nodes.map(status));
    assert.ok(repaired[1]!.repair.keysRepaired >= 1 && repaired[2]!.repair.keysRepaired >= 1, JSON.stringify(repaired.map((s) => s.repair)));
    assert.ok(repaired.some((s) => s.repair.rounds > 0), JSON.stringify(repaired.map((s) => s.repair)));
    // Once the replicas agree, some round sees equal digests.
    await pollUntil('a round that finds the replicas in sync', async () => {
      const s = await status(a);
      if (s.repair.msSinceFullSync === null) throw new NotYet('no round in sync yet');
      return s;
    }, { timeoutMs: 5000 });
    assert.ok(elapsedMs < 10_000);
  });

  test('writes for a down replica wait as hints and are delivered when it is back', async () => {
    const [a, , c] = nodes as [string, string, string];
    const client = new Client();
    const cluster = store.cluster;
    await cluster.ensureRunning();
    await cluster.kill(c);
    for (let i = 0; i < 20; i++) {
      const r = await client.put(a, `hinted-${i}`, i);
      assert.equal(r.status, 201, r.text);
    }
    await pollUntil('hints held for the down replica', async () => {
      const s = await status(a);
      if (s.replication.hints < 1) throw new NotYet(JSON.stringify(s.replication));
      return s;
    }, { timeoutMs: 5000 });
    await cluster.restart(c);
    await cluster.waitReady([c]);
    await pollUntil('hints delivered', async () => {
      const s = await status(a);
      if (s.replication.hints !== 0) throw new NotYet(JSON.stringify(s.replication));
      return s;
    }, { timeoutMs: 10_000 });
    for (let i = 0; i < 20; i++) {
      const r = await get(c, `hinted-${i}`, client.meta);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.value, i);
    }
  });
});
