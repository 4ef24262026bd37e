// A write forwarded to a member that does not answer in time must not be retried on another
// member, and its first copy, held in the network, must not be applied when it arrives late.
// Found by the nemesis run: the store used to retry the write elsewhere, and when the partition
// healed, TCP delivered the first copy, which was applied as a new write and overwrote what the
// client had written since (read-your-writes broken, an acknowledged write lost).
//
// 4 nodes, SHARD_COUNT=2: F forwards a key of shard {A, B}. With F's packets to its first target
// dropped, the PUT times out (REQUEST_TIMEOUT_MS, 5 s): F answers 503, the outcome unknown. The
// client then writes Y. When the partition heals and TCP delivers the held copy of X, its deadline
// has passed and the member refuses it: the client keeps reading Y.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client, get, readShardLayout, type NodeAddress } from '../helpers/http.ts';
import { skipReason, sleep, useLab } from './helpers.ts';

describe('forwarding on a real network: 4 nodes, 2 shards', { skip: skipReason }, () => {
  const lab = useLab({ nodeCount: 4, shardCount: 2 });

  test(
    'a forwarded write that timed out is neither retried elsewhere nor applied when it arrives late',
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
        if (ms < 2_000) {
          assert.equal(x.status, 200, x.text);
          continue; // `first` was not F's first target
        }
        assert.equal(x.status, 503, `a write that may have been delivered is not retried elsewhere: ${x.text}`);
        assert.match(x.body.error, /may or may not have been applied/);
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
