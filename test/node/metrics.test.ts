// The metrics of one node read from fake sources (no process, no ports): the route label's bounded
// set, reshard progress with /status's reshard object present, null or absent, per-peer backlogs,
// and waits counted by reason and outcome. The whole exposition of real nodes is checked in
// test/integration/metrics.test.ts.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Metrics, routeOf, type MetricsSources } from '../../src/node/metrics.ts';
import { PUBLIC_ROUTES } from '../../src/node/public-routes.ts';
import type { Timers } from '../../src/node/env.ts';

function metricsWith(reshard: () => unknown, clock = { ms: 0 }): Metrics {
  const sources = {
    core: { ready: true, map: { epoch: 3 }, view: () => ['10.0.0.1:8090', '10.0.0.2:8090'], viewChanges: 2, replica: { shard: 's1', liveKeyCount: () => 7 }, reshardInProgress: null, tombstoneStatus: () => ({ held: 0, oldestAgeMs: null, atLeast: false }), collectionStatus: { blockedBy: [], collectingWithout: [], kept: 0, keptMax: 100, graveyardFull: false }, stale: null },
    replicator: {
      snapshot: () => ({ queued: 2, queuedBytes: 40, hints: 5, hintBytes: 500, sent: 11, dropped: 1 }),
      backlogs: () => [
        { peer: '10.0.0.2:8090', hints: false, versions: 2, bytes: 40 },
        { peer: '10.0.0.3:8090', hints: true, versions: 5, bytes: 500 },
      ],
    },
    parked: { size: 1, counts: { parked: new Map([['causal', 4], ['reshard', 1]]), released: 3, expired: 1, closed: 0 } },
    background: { snapshot: () => ({}) },
    repairStatus: () => ({ rounds: 6, keysRepaired: 2, bytes: 100, tombstonesCollected: 0, syncBytesReceived: 9, msSinceFullSync: null }),
    reshard,
    forwardBatches: () => ({ single: 3, batches: 4, batched: 10 }),
    storage: { commitStats: () => ({ commits: 12, failures: 1, seconds: 0.25, writerFailed: true }) },
  } as unknown as MetricsSources;
  const timers = { now: () => clock.ms } as unknown as Timers;
  return new Metrics(sources, { realProcess: false, timers });
}

/** Sample lines (no comments, no blank lines). */
async function samples(metrics: Metrics): Promise<string[]> {
  const reply = await metrics.reply();
  assert.equal(reply.contentType, 'text/plain; version=0.0.4; charset=utf-8');
  return String(reply.body)
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'));
}

test('route labels come from a fixed set, whatever the path', () => {
  const cases: Record<string, string> = {
    '/kvs/a': '/kvs/:key',
    '/kvs/a%2Fb/c': '/kvs/:key',
    '/view': '/view',
    '/view/x': 'other',
    '/shard/ids': '/shard/ids',
    '/shard/members/s0': '/shard/members/:id',
    '/shard/key-count/anything': '/shard/key-count/:id',
    '/shard/add-member/s1': '/shard/add-member/:id',
    '/shard/node-shard-id': '/shard/node-shard-id',
    '/shard/reshard': '/shard/reshard',
    '/status': '/status',
    '/status/ready': '/status/ready',
    '/openapi.json': '/openapi.json',
    '/metrics': '/metrics',
    '/ui': '/ui/',
    '/ui/app.js': '/ui/',
    '/internal/ping': '/internal/ping',
    '/internal/reshard/commit': '/internal/reshard/commit',
    '/internal/key-count/s0': '/internal/key-count',
    '/internal/whatever': 'other',
    '/': 'other',
    '/kvs': 'other',
  };
  for (const [path, route] of Object.entries(cases)) assert.equal(routeOf(path), route, path);
  // Every public route has a label of its own: a route added to the table and not here would be
  // counted as `other`.
  for (const route of PUBLIC_ROUTES.routes) {
    const path = route.path.replace(/\{[^}]+\}/g, 's0');
    assert.notEqual(routeOf(path), 'other', `${route.method} ${route.path} has no route label`);
  }
});

test('reshard progress: gauges labelled with the epoch while /status has a reshard object, none when it is null or absent', async () => {
  let reshard: unknown = { epoch: 4, phase: 'send', partitionsMoved: 300, partitionsTotal: 1024, keysMoved: null, keysTotal: 90 };
  const metrics = metricsWith(() => reshard);
  const lines = await samples(metrics);
  assert.ok(lines.includes('kvs_reshard_partitions_moved{epoch="4"} 300'), lines.join('\n'));
  assert.ok(lines.includes('kvs_reshard_partitions_to_move{epoch="4"} 1024'));
  assert.ok(lines.includes('kvs_reshard_keys_to_move{epoch="4"} 90'));
  assert.ok(!lines.some((l) => l.startsWith('kvs_reshard_keys_moved')), 'a count not known (null) has no sample');
  for (const none of [null, undefined, 'junk']) {
    reshard = none;
    assert.deepEqual((await samples(metrics)).filter((l) => /^kvs_reshard_(partitions|keys)_/.test(l)), [], String(none));
  }
});

test('state read at scrape time: backlogs per peer, waits by reason and outcome, repair counters, keys', async () => {
  const lines = await samples(metricsWith(() => null));
  for (const expected of [
    'kvs_replication_queue_versions{peer="10.0.0.2:8090"} 2',
    'kvs_replication_queue_versions{peer="10.0.0.3:8090"} 0',
    'kvs_replication_hint_bytes{peer="10.0.0.3:8090"} 500',
    'kvs_replication_sent_versions_total 11',
    'kvs_causal_waits_total{reason="causal"} 4',
    'kvs_causal_waits_total{reason="syncing"} 0',
    'kvs_causal_wait_outcomes_total{outcome="released"} 3',
    'kvs_causal_wait_outcomes_total{outcome="expired"} 1',
    'kvs_anti_entropy_rounds_total 6',
    'kvs_anti_entropy_keys_repaired_total 2',
    'kvs_view_nodes 2',
    'kvs_view_changes_total 2',
    'kvs_shard_keys{shard="s1"} 7',
    'kvs_epoch 3',
    'kvs_forwarded_requests_total{sent="single"} 3',
    'kvs_forwarded_requests_total{sent="batched"} 10',
    'kvs_forward_batches_total 4',
    'kvs_storage_commits_total 12',
    'kvs_storage_commit_failures_total 1',
    'kvs_storage_commit_seconds_total 0.25',
    'kvs_storage_writer_failed 1',
  ]) {
    assert.ok(lines.includes(expected), `${expected} in\n${lines.join('\n')}`);
  }
  assert.ok(!lines.some((l) => l.startsWith('process_') || l.startsWith('nodejs_')), 'no process metrics for a simulated node');
});

test('requests are timed on the node\'s clock; one that throws counts as a 500', async () => {
  const clock = { ms: 0 };
  const metrics = metricsWith(() => null, clock);
  await metrics.timed('GET', '/kvs/k', async () => {
    clock.ms += 30;
    return { status: 404, body: {} };
  });
  await assert.rejects(metrics.timed('BREW', '/internal/ping', () => Promise.reject(new Error('broken'))));
  const lines = await samples(metrics);
  assert.ok(lines.includes('kvs_http_requests_total{route="/kvs/:key",method="GET",status="404"} 1'), lines.join('\n'));
  assert.ok(lines.includes('kvs_http_requests_total{route="/internal/ping",method="other",status="500"} 1'));
  assert.ok(lines.includes('kvs_http_request_duration_seconds_bucket{le="0.025",route="/kvs/:key",method="GET",status_class="4xx"} 0'));
  assert.ok(lines.includes('kvs_http_request_duration_seconds_bucket{le="0.05",route="/kvs/:key",method="GET",status_class="4xx"} 1'));
  assert.ok(lines.includes('kvs_http_request_duration_seconds_sum{route="/kvs/:key",method="GET",status_class="4xx"} 0.03'));
});

test('the request histogram: a bucket holds what is at or below its bound, cumulative, with +Inf, sum and count, series in order of first use', async () => {
  const clock = { ms: 0 };
  const metrics = metricsWith(() => null, clock);
  // 0.5 ms is exactly the first bound; 1 ms the second; 20 s is beyond every bound.
  for (const [method, path, status, ms] of [
    ['GET', '/kvs/a', 200, 0.5],
    ['GET', '/kvs/b', 200, 1],
    ['GET', '/kvs/c', 200, 0.2],
    ['PUT', '/kvs/a', 503, 20_000],
    ['GET', '/kvs/d', 201, 3],
  ] as const) {
    await metrics.timed(method, path, async () => {
      clock.ms += ms;
      return { status, body: {} };
    });
  }
  const lines = await samples(metrics);
  const get = 'route="/kvs/:key",method="GET",status_class="2xx"';
  const put = 'route="/kvs/:key",method="PUT",status_class="5xx"';
  const histogram = lines.filter((line) => line.startsWith('kvs_http_request_duration_seconds'));
  assert.deepEqual(histogram, [
    ...[
      ['0.0005', 2],
      ['0.001', 3],
      ['0.0025', 3],
      ['0.005', 4],
      ['0.01', 4],
      ['0.025', 4],
      ['0.05', 4],
      ['0.1', 4],
      ['0.25', 4],
      ['0.5', 4],
      ['1', 4],
      ['2.5', 4],
      ['5', 4],
      ['10', 4],
      ['+Inf', 4],
    ].map(([le, n]) => `kvs_http_request_duration_seconds_bucket{le="${le}",${get}} ${n}`),
    `kvs_http_request_duration_seconds_sum{${get}} ${(0.5 + 1 + 0.2 + 3) / 1000}`,
    `kvs_http_request_duration_seconds_count{${get}} 4`,
    ...['0.0005', '0.001', '0.0025', '0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '5', '10'].map((le) => `kvs_http_request_duration_seconds_bucket{le="${le}",${put}} 0`),
    `kvs_http_request_duration_seconds_bucket{le="+Inf",${put}} 1`,
    `kvs_http_request_duration_seconds_sum{${put}} 20`,
    `kvs_http_request_duration_seconds_count{${put}} 1`,
  ]);
  const counters = lines.filter((line) => line.startsWith('kvs_http_requests_total'));
  assert.deepEqual(counters, [
    'kvs_http_requests_total{route="/kvs/:key",method="GET",status="200"} 3',
    'kvs_http_requests_total{route="/kvs/:key",method="PUT",status="503"} 1',
    'kvs_http_requests_total{route="/kvs/:key",method="GET",status="201"} 1',
  ]);
});
