// A write forwarded to a member that does not answer in time is retried on the next member; the
// first copy, held in the network, still arrives after the fault heals. Found by the nemesis run.
//
// 4 nodes, SHARD_COUNT=2: F forwards a key of shard {A, B}. With F's packets to its first target
// dropped, the PUT times out there after REQUEST_TIMEOUT_MS (5 s) and F retries it on the other
// member, which acknowledges it. The client then writes Y (causally after X). When the partition
// heals, TCP retransmits F's first request, the first target applies X a second time as a new
// write (new dot, higher Lamport time), and X overwrites Y everywhere: the client reads X back
// (read-your-writes broken) and the acknowledged Y is lost.
//
// Marked todo until src/node stops retrying a forwarded write that may have been delivered (or
// makes the retry idempotent, e.g. a write id the replicas deduplicate). Remove the todo then.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client, get, readShardLayout, type NodeAddress } from '../helpers/http.ts';
import { skipReason, sleep, useLab } from './helpers.ts';

describe('forwarding on a real network: 4 nodes, 2 shards', { skip: skipReason }, () => {
  const lab = useLab({ nodeCount: 4, shardCount: 2 });

  test(
    'a forwarded write retried on another member after a timeout is not applied twice',
    { todo: 'store bug: forward() fails over after a timeout, the first copy is applied again later (see the report)' },
    async () => {
      const nodes = lab().addresses();
      const layout = await readShardLayout(nodes[0]!);
      const [s0, s1] = layout.ids as [string, string];
      const members = layout.members[s0]! as [NodeAddress, NodeAddress];
      const F = layout.members[s1]![0]!;
      const session = new Client();
      let key = '';
      for (let i = 0; key === ''; i++) {
        const r = await session.put(F, `dup-${i}`, 'v0');
        assert.ok(r.status === 201, r.text);
        if (r.body['shard-id'] === s0) key = `dup-${i}`;
      }
      // Which member F tries first: the one whose cut-off delays the PUT.
      for (const first of members) {
        const other = first === members[0] ? members[1] : members[0];
        assert.ok([200, 201].includes((await session.put(F, key, `warm-${first}`)).status)); // a keep-alive connection F -> first
        await lab().partitionOneWay([F], [first], 'packets');
        const started = performance.now();
        const x = await session.put(F, key, 'X');
        const ms = performance.now() - started;
        await lab().heal();
        assert.equal(x.status, 200, x.text);
        if (ms < 2_000) continue; // `first` was not F's first target
        const y = await session.put(other, key, 'Y');
        assert.equal(y.status, 200, y.text);
        // TCP retransmits the held request within a few seconds of the heal (exponential backoff).
        for (let s = 0; s < 15; s++) {
          await sleep(1_000);
          const r = await session.get(other, key);
          const replicas = await Promise.all(members.map(async (m) => (await get(m, key, null)).body?.value));
          assert.equal(r.body?.value, 'Y', `${s + 1} s after Y: the session reads ${r.text}; replicas hold ${replicas.join(', ')}`);
        }
        return;
      }
      assert.fail('no member of the shard delayed the forwarded PUT: the setup did not take');
    },
  );
});
