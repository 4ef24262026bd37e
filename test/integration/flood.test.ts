// Overload: a small version of `npm run bench -- flood` (bench/flood-run.ts). A 3-node
// replicated-only store, one node flooded by 40 keep-alive connections writing 256 KB values for
// 4 s, each connection its own causal session on its own key, against room for 8 bodies in flight. Only what must hold is asserted,
// never a timing: no node leaves any node's view, every request gets an answer, and that answer
// is 2xx or 503 with Retry-After; afterwards every acknowledged write is what every replica
// returns (ports: test/helpers/ports.ts).

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { formatFloodReport, runFlood } from '../../bench/flood-run.ts';
import { portsFor } from '../helpers/ports.ts';
import { useCluster } from '../helpers/store.ts';

const CLIENT_BYTES_MAX = 2 * 1024 * 1024;

describe('a flood of large writes at one node', () => {
  // Room for 8 of the 40 bodies at once, so the flood is shed (503 before the body is read).
  const store = useCluster({ ports: portsFor(import.meta.url), nodeCount: 3, extraEnv: { CLIENT_BYTES_MAX: String(CLIENT_BYTES_MAX) } });

  test('keeps the view, answers every request with 2xx or 503 + Retry-After, and loses no acknowledged write', { timeout: 90_000 }, async (t) => {
    const cluster = store.cluster;
    const nodes = store.nodes;
    const result = await runFlood({
      nodes,
      target: nodes[0]!,
      connections: 40,
      valueBytes: 256 * 1024,
      seconds: 4,
      // Until the backlog is 0 and the replicas' clocks agree, at most this long; the read-back
      // below does not rely on it (it carries each key's metadata and retries 503s).
      settleSeconds: 20,
      settleUntilDrained: true,
      requestTimeoutMs: 10_000,
      readbackSeconds: 20,
      pidOf: (address) => cluster.node(address).proc?.pid,
    });
    const report = `\n${formatFloodReport(result)}`;
    t.diagnostic(report);
    const { flood, viewChanges, readback } = result;

    cluster.assertNoCrash();
    assert.equal(viewChanges.removals, 0, `a node left some node's view during the flood${report}`);
    assert.equal(viewChanges.samplesMissingANode, 0, `some node's view lacked a node at a sample${report}`);
    assert.equal(flood.noAnswer, 0, `requests without an answer within 10 s${report}`);
    assert.deepEqual(flood.otherStatuses, {}, `answers other than 2xx and 503${report}`);
    assert.equal(flood.status503WithoutRetryAfter, 0, `503 answers without Retry-After${report}`);
    assert.ok(flood.status2xx > 0, `no write was acknowledged at all${report}`);
    assert.ok(flood.status503 > 0, `40 connections against room for 8 bodies were never shed${report}`);
    assert.equal(readback.ok, true, `acknowledged writes not readable at every replica${report}`);
  });
});
