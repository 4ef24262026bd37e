// GET /metrics on a store of 4 nodes in 2 shards (ports: test/helpers/ports.ts): the exposition is
// Prometheus text that a strict parser (below) takes line by line; every required family is there
// with its type; the request counters grow by exactly what the test asked; histograms agree with the
// counters; and however many keys and junk paths clients send, the labels stay in a fixed set and
// never carry a key.

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { NotYet, pollUntil } from '../helpers/cluster.ts';
import { call, del, get, kvsPath, put, readShardLayout, shardOf, type HttpMethod, type NodeAddress, type Reply, type ShardLayout } from '../helpers/http.ts';
import { portsFor } from '../helpers/ports.ts';
import { useCluster } from '../helpers/store.ts';

// ---- a strict parser of the Prometheus text format (version 0.0.4) -------------------------------

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Family {
  name: string;
  type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  help: string | null;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;
// NaN in any case, as Prometheus reads it (Go's ParseFloat): prom-client writes `Nan` for a
// default metric with no samples yet (nodejs_eventloop_lag_mean_seconds).
const VALUE = /^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|[Nn][Aa][Nn])$/;

function parseValue(text: string, where: string): number {
  if (!VALUE.test(text)) throw new Error(`${where}: not a float: ${JSON.stringify(text)}`);
  if (text.endsWith('Inf')) return text.startsWith('-') ? -Infinity : Infinity;
  return Number(text);
}

/** The sample names a family of this type may have. */
function sampleNames(family: Family): string[] {
  const { name, type } = family;
  if (type === 'histogram') return [`${name}_bucket`, `${name}_sum`, `${name}_count`];
  if (type === 'summary') return [name, `${name}_sum`, `${name}_count`];
  return [name];
}

/** Parses an exposition; throws, naming the line, at anything that is not well formed. */
function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const series = new Set<string>();
  const typed = new Set<string>();
  let current: Family | null = null;
  if (!text.endsWith('\n')) throw new Error('the exposition does not end with a newline');
  const lines = text.slice(0, -1).split('\n');
  for (const [i, line] of lines.entries()) {
    const where = `line ${i + 1} ${JSON.stringify(line.slice(0, 120))}`;
    if (line === '') continue;
    if (line.startsWith('#')) {
      const help = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
      const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
      if (help !== null) {
        const [, name = '', doc = ''] = help;
        if (/\\[^\\n]/.test(doc.replaceAll('\\\\', ''))) throw new Error(`${where}: bad escape in HELP`);
        const family = families.get(name);
        if (family?.help != null) throw new Error(`${where}: second HELP for ${name}`);
        if (family !== undefined) family.help = doc;
        else families.set(name, { name, type: 'untyped', help: doc, samples: [] });
        continue;
      }
      if (type !== null) {
        const [, name = '', kind = ''] = type;
        if (typed.has(name)) throw new Error(`${where}: second TYPE for ${name}`);
        typed.add(name);
        current = families.get(name) ?? { name, type: 'untyped', help: null, samples: [] };
        current.type = kind as Family['type'];
        families.set(name, current);
        continue;
      }
      throw new Error(`${where}: a comment that is neither HELP nor TYPE`);
    }
    const name = NAME.exec(line)?.[0];
    if (name === undefined) throw new Error(`${where}: no metric name`);
    let at = name.length;
    const labels: Record<string, string> = {};
    if (line[at] === '{') {
      at++;
      while (line[at] !== '}') {
        const label = LABEL_NAME.exec(line.slice(at))?.[0];
        if (label === undefined) throw new Error(`${where}: bad label name at ${at}`);
        at += label.length;
        if (line.slice(at, at + 2) !== '="') throw new Error(`${where}: expected =" after ${label}`);
        at += 2;
        let value = '';
        for (;;) {
          const c = line[at];
          if (c === undefined) throw new Error(`${where}: label value not closed`);
          at++;
          if (c === '"') break;
          if (c === '\\') {
            const e = line[at++];
            if (e === '\\' || e === '"') value += e;
            else if (e === 'n') value += '\n';
            else throw new Error(`${where}: bad escape \\${e} in a label value`);
          } else value += c;
        }
        if (Object.hasOwn(labels, label)) throw new Error(`${where}: label ${label} twice`);
        labels[label] = value;
        if (line[at] === ',') {
          at++;
          if (line[at] === '}') throw new Error(`${where}: trailing comma in labels`);
        } else if (line[at] !== '}') throw new Error(`${where}: expected , or } at ${at}`);
      }
      at++;
    }
    if (line[at] !== ' ') throw new Error(`${where}: expected one space before the value`);
    const rest = line.slice(at + 1).split(' ');
    if (rest.length > 2 || (rest.length === 2 && !/^-?\d+$/.test(rest[1]!))) throw new Error(`${where}: expected a value and at most a timestamp`);
    const value = parseValue(rest[0]!, where);
    if (current === null || !sampleNames(current).includes(name)) {
      throw new Error(`${where}: sample ${name} is not of the family last declared by TYPE (${current?.name ?? 'none'})`);
    }
    if (current.type === 'histogram' && name.endsWith('_bucket')) {
      if (labels.le === undefined) throw new Error(`${where}: a bucket without le`);
      parseValue(labels.le, where);
    }
    const id = `${name}{${Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}}`;
    if (series.has(id)) throw new Error(`${where}: series ${id} twice`);
    series.add(id);
    current.samples.push({ name, labels, value });
  }
  for (const family of families.values()) if (family.type === 'untyped' && family.samples.length === 0) throw new Error(`HELP without TYPE or samples: ${family.name}`);
  return families;
}

// ---- reading /metrics -----------------------------------------------------------------------------

interface Scrape {
  families: Map<string, Family>;
  text: string;
}

async function scrape(addr: NodeAddress): Promise<Scrape> {
  const res = await request(`http://${addr}/metrics`, { method: 'GET', headersTimeout: 10_000, bodyTimeout: 10_000 });
  const text = await res.body.text();
  assert.equal(res.statusCode, 200, `GET /metrics at ${addr}: ${text.slice(0, 300)}`);
  assert.equal(res.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8', `content type at ${addr}`);
  return { families: parseExposition(text), text };
}

function family(s: Scrape, name: string): Family {
  const f = s.families.get(name);
  assert.ok(f !== undefined, `family ${name} is missing`);
  return f;
}

/** The value of the sample of `name` with exactly these labels (0 when there is none: a counter not incremented yet). */
function valueOf(s: Scrape, familyName: string, labels: Record<string, string>, name = familyName): number {
  const want = JSON.stringify(Object.entries(labels).sort());
  const sample = family(s, familyName).samples.find((x) => x.name === name && JSON.stringify(Object.entries(x.labels).sort()) === want);
  return sample?.value ?? 0;
}

const seriesKey = (labels: Record<string, string>): string => JSON.stringify(Object.entries(labels).sort());

/** Request counts per series (route, method, status). */
function requestCounts(s: Scrape): Map<string, number> {
  return new Map(family(s, 'kvs_http_requests_total').samples.map((x) => [seriesKey(x.labels), x.value]));
}

// ---- what the bounded set is ----------------------------------------------------------------------

const ROUTES = new Set([
  '/kvs/:key',
  '/view',
  '/shard/ids',
  '/shard/members/:id',
  '/shard/key-count/:id',
  '/shard/node-shard-id',
  '/shard/add-member/:id',
  '/shard/reshard',
  '/status',
  '/metrics',
  '/ui/',
  'other',
  // Routes the store has beside the ones of the spec: the store-wide status and the reshard preview.
  '/status/store',
  '/shard/reshard-plan/:count',
]);
const INTERNAL_ROUTE = /^\/internal\/[a-z-]+(\/[a-z-]+)?$/;
const METHODS = new Set(['GET', 'PUT', 'DELETE', 'POST', 'HEAD', 'OPTIONS', 'PATCH', 'other']);

const REQUIRED: Record<string, Family['type']> = {
  kvs_http_requests_total: 'counter',
  kvs_http_request_duration_seconds: 'histogram',
  kvs_http_requests_refused_total: 'counter',
  kvs_causal_waits_total: 'counter',
  kvs_causal_wait_outcomes_total: 'counter',
  kvs_parked_requests: 'gauge',
  kvs_replication_queue_versions: 'gauge',
  kvs_replication_queue_bytes: 'gauge',
  kvs_replication_hint_versions: 'gauge',
  kvs_replication_hint_bytes: 'gauge',
  kvs_replication_sent_versions_total: 'counter',
  kvs_replication_dropped_versions_total: 'counter',
  kvs_anti_entropy_rounds_total: 'counter',
  kvs_anti_entropy_keys_repaired_total: 'counter',
  kvs_anti_entropy_bytes_total: 'counter',
  kvs_tombstones_collected_total: 'counter',
  kvs_tombstones: 'gauge',
  kvs_tombstone_oldest_age_seconds: 'gauge',
  kvs_tombstone_collection_blocked_members: 'gauge',
  kvs_tombstone_collecting_without_members: 'gauge',
  kvs_tombstones_kept: 'gauge',
  kvs_tombstone_graveyard_full: 'gauge',
  kvs_replica_stale: 'gauge',
  kvs_sync_received_bytes_total: 'counter',
  kvs_background_failures_total: 'counter',
  kvs_ready: 'gauge',
  kvs_epoch: 'gauge',
  kvs_view_nodes: 'gauge',
  kvs_view_changes_total: 'counter',
  kvs_shard_keys: 'gauge',
  kvs_reshard_in_progress: 'gauge',
  kvs_reshard_partitions_moved: 'gauge',
  kvs_reshard_partitions_to_move: 'gauge',
  kvs_reshard_keys_moved: 'gauge',
  kvs_reshard_keys_to_move: 'gauge',
  // The process's default metrics (a few of them).
  process_cpu_user_seconds_total: 'counter',
  process_resident_memory_bytes: 'gauge',
  nodejs_heap_size_used_bytes: 'gauge',
  nodejs_eventloop_lag_seconds: 'gauge',
};

/** Histograms are cumulative, end at +Inf with their _count, and count what the counter counts. */
function assertHistogramsAgree(s: Scrape, addr: NodeAddress): void {
  const histogram = family(s, 'kvs_http_request_duration_seconds');
  const counters = family(s, 'kvs_http_requests_total').samples;
  const byClass = new Map<string, Sample[]>();
  for (const sample of histogram.samples.filter((x) => x.name.endsWith('_bucket'))) {
    const { le: _le, ...labels } = sample.labels;
    const key = seriesKey(labels);
    byClass.set(key, [...(byClass.get(key) ?? []), sample]);
  }
  const counts = histogram.samples.filter((x) => x.name.endsWith('_count'));
  assert.equal(byClass.size, counts.length, `${addr}: one bucket set per _count`);
  for (const count of counts) {
    const what = `${addr} ${JSON.stringify(count.labels)}`;
    const buckets = (byClass.get(seriesKey(count.labels)) ?? []).map((b) => ({ le: parseValue(b.labels.le!, what), value: b.value })).sort((a, b) => a.le - b.le);
    assert.ok(buckets.length > 1, `${what}: buckets`);
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i]!.value >= buckets[i - 1]!.value, `${what}: bucket le=${buckets[i]!.le} below the one before`);
    assert.equal(buckets.at(-1)!.le, Infinity, `${what}: the last bucket is +Inf`);
    assert.equal(buckets.at(-1)!.value, count.value, `${what}: +Inf bucket equals _count`);
    const { route, method, status_class: statusClass } = count.labels;
    const counted = counters
      .filter((c) => c.labels.route === route && c.labels.method === method && `${c.labels.status!.slice(0, 1)}xx` === statusClass)
      .reduce((sum, c) => sum + c.value, 0);
    assert.equal(count.value, counted, `${what}: _count equals kvs_http_requests_total over the class's statuses`);
  }
}

// ---- the tests ------------------------------------------------------------------------------------

describe('GET /metrics', () => {
  const store = useCluster({ ports: portsFor(import.meta.url), nodeCount: 4, shardCount: 2 });
  let A: NodeAddress;
  let layout: ShardLayout;
  let home: string;
  /** A token in every key and junk path this file sends: no label value may contain it. */
  const token = `mx${randomBytes(4).toString('hex')}`;
  let n = 0;
  const freshKey = (): string => `${token}-${n++}`;

  before(async () => {
    A = store.nodes[0]!;
    layout = await readShardLayout(A);
    assert.equal(layout.ids.length, 2, `shards: ${layout.ids}`);
    home = shardOf(layout, A)!;
  });

  test('the strict parser refuses what is not Prometheus text', () => {
    const ok = '# HELP kvs_x An x\n# TYPE kvs_x gauge\nkvs_x{a="b\\"c"} 1.5e3\n';
    assert.equal(parseExposition(ok).get('kvs_x')?.samples[0]?.labels.a, 'b"c');
    for (const bad of [
      'kvs_x 1\n', // no TYPE
      '# TYPE kvs_x gauge\nkvs_x{a="b} 1\n',
      '# TYPE kvs_x gauge\nkvs_x{a="b",} 1\n',
      '# TYPE kvs_x gauge\nkvs_x one\n',
      '# TYPE kvs_x gauge\nkvs_x 1 2 3\n',
      '# TYPE kvs_x gauge\nkvs_y 1\n',
      '# TYPE kvs_x gauge\nkvs_x 1\nkvs_x 2\n',
      '# TYPE kvs_x gauge\n# a comment\nkvs_x 1\n',
      '# TYPE kvs_x gauge\nkvs_x 1',
      '# TYPE kvs_x histogram\nkvs_x_bucket 1\n',
    ]) {
      assert.throws(() => parseExposition(bad), Error, `accepted: ${JSON.stringify(bad)}`);
    }
  });

  test('every node serves well-formed Prometheus text with every required family, open like /status', async () => {
    for (const addr of store.nodes) {
      const s = await scrape(addr);
      for (const f of s.families.values()) {
        for (const sample of f.samples) assert.match(sample.name, /^(kvs_|process_|nodejs_)/, `${addr}: sample ${sample.name}`);
        if (f.name.startsWith('kvs_')) assert.ok(f.help !== null && f.help.length > 0, `${addr}: ${f.name} has HELP`);
      }
      for (const [name, type] of Object.entries(REQUIRED)) assert.equal(family(s, name).type, type, `${addr}: TYPE of ${name}`);
      // Prometheus keeps the _total suffix for counters.
      for (const f of s.families.values()) if (f.name.startsWith('kvs_') && f.name.endsWith('_total')) assert.equal(f.type, 'counter', `${addr}: ${f.name} ends in _total`);
      assert.equal(valueOf(s, 'kvs_view_nodes', {}), 4, `${addr}: view size`);
      assert.equal(valueOf(s, 'kvs_ready', {}), 1, `${addr}: ready`);
      assert.equal(valueOf(s, 'kvs_reshard_in_progress', {}), 0, `${addr}: no reshard`);
      // No reshard: /status's reshard object is absent or null, and the progress gauges have no samples.
      for (const name of ['kvs_reshard_partitions_moved', 'kvs_reshard_partitions_to_move', 'kvs_reshard_keys_moved', 'kvs_reshard_keys_to_move']) {
        assert.deepEqual(family(s, name).samples, [], `${addr}: ${name} without a reshard`);
      }
      const shards = family(s, 'kvs_shard_keys').samples;
      assert.deepEqual(shards.map((x) => x.labels), [{ shard: shardOf(layout, addr) }], `${addr}: keys of its own shard only`);
      assert.deepEqual(family(s, 'kvs_causal_waits_total').samples.map((x) => x.labels.reason).sort(), ['causal', 'epoch', 'handover', 'reshard', 'syncing']);
      assert.deepEqual(family(s, 'kvs_causal_wait_outcomes_total').samples.map((x) => x.labels.outcome).sort(), ['closed', 'expired', 'released']);
      // Replication backlogs name the node's shard peer.
      const peers = family(s, 'kvs_replication_queue_versions').samples.map((x) => x.labels.peer);
      for (const peer of peers) assert.ok(store.nodes.includes(peer!), `${addr}: backlog of ${peer}, not a node`);
      assertHistogramsAgree(s, addr);
    }
    const post = await call('POST', A, '/metrics');
    assert.equal(post.status, 404, 'only GET /metrics is a route');
  });

  test('request counters grow by exactly what was asked; the forwarded request is counted where it was served', async () => {
    const away = layout.ids.find((id) => id !== home)!;
    const before = await scrape(A);
    const beforeAway = await Promise.all(layout.members[away]!.map(scrape));

    // Every reply A gives, tallied by route, method and status: what its counter must have grown by.
    const expected = new Map<string, number>();
    const tally = (route: string, method: HttpMethod, r: Reply): Reply => {
      const key = seriesKey({ route, method, status: String(r.status) });
      expected.set(key, (expected.get(key) ?? 0) + 1);
      return r;
    };
    const kv = (method: HttpMethod, r: Reply): Reply => tally('/kvs/:key', method, r);
    // New keys until one is of A's shard (served there) and one of the other (A forwards it).
    let local: string | undefined;
    let remote: string | undefined;
    let meta: unknown = null;
    for (let tries = 0; local === undefined || remote === undefined; tries++) {
      assert.ok(tries < 64, 'no key of each shard in 64 tries');
      const key = freshKey();
      const r = kv('PUT', await put(A, key, 'v', meta));
      assert.equal(r.status, 201, r.text);
      meta = r.body['causal-metadata'];
      if (r.body['shard-id'] === home) local ??= key;
      else remote ??= key;
    }
    assert.equal(kv('GET', await get(A, local, meta)).status, 200);
    // Served by a member of the other shard; it may wait there for the write (counted either way).
    kv('GET', await get(A, remote, meta));
    assert.equal(kv('GET', await get(A, freshKey(), meta)).status, 404);
    assert.equal(kv('PUT', await call('PUT', A, kvsPath(freshKey()), { 'causal-metadata': meta })).status, 400, 'a PUT without a value');
    assert.equal(tally('/view', 'GET', await call('GET', A, '/view')).status, 200);
    assert.equal(tally('/shard/members/:id', 'GET', await call('GET', A, `/shard/members/${away}`)).status, 200);
    tally('/metrics', 'GET', { status: 200, body: undefined, text: '' }); // the first scrape, counted once answered

    const after = await scrape(A);
    const [was, now] = [requestCounts(before), requestCounts(after)];
    const grown = new Map<string, number>();
    for (const [key, value] of now) {
      const route = JSON.parse(key).find(([k]: [string]) => k === 'route')[1] as string;
      // Internal routes carry the nodes' own traffic (pings, replication): not what this test asked.
      if (route.startsWith('/internal/')) continue;
      const delta = value - (was.get(key) ?? 0);
      if (delta !== 0) grown.set(key, delta);
    }
    assert.deepEqual(grown, expected, 'A counted exactly the requests it answered');
    assertHistogramsAgree(after, A);

    // The forwarded PUT was served (201) by a member of the other shard.
    const afterAway = await Promise.all(layout.members[away]!.map(scrape));
    const created = (list: Scrape[]) => list.reduce((sum, s) => sum + valueOf(s, 'kvs_http_requests_total', { route: '/kvs/:key', method: 'PUT', status: '201' }), 0);
    assert.ok(created(afterAway) - created(beforeAway) >= 1, 'the other shard counted the forwarded PUT');

    // What a scrape reads from state: the write reaches A's shard peer (replication), which then holds the key.
    const peer = layout.members[home]!.find((x) => x !== A)!;
    await pollUntil(
      `${A} counts a version sent to ${peer}, and ${peer} counts the key`,
      async () => {
        const [atA, atPeer] = [await scrape(A), await scrape(peer)];
        const sent = valueOf(atA, 'kvs_replication_sent_versions_total', {}) - valueOf(before, 'kvs_replication_sent_versions_total', {});
        if (sent < 1) throw new NotYet(`sent ${sent}`);
        const keys = [valueOf(atA, 'kvs_shard_keys', { shard: home }), valueOf(atPeer, 'kvs_shard_keys', { shard: home })];
        if (keys[0]! < 1 || keys[0] !== keys[1]) throw new NotYet(`keys ${keys}`);
      },
      { timeoutMs: 10_000 },
    );
  });

  test('the tombstone gauges say what /status says under tombstones', async () => {
    // A key written and deleted: a tombstone at its shard's members until every member reflects it.
    const key = freshKey();
    const written = await put(A, key, 'gone soon', null);
    assert.equal(written.status, 201, written.text);
    const deleted = await del(A, key, written.body['causal-metadata']);
    assert.equal(deleted.status, 200, deleted.text);
    interface Tombstones {
      held: number;
      oldestAgeMs: number | null;
      blockedBy: string[];
      collectingWithout: string[];
      stale: unknown;
    }
    const tombstonesAt = async (addr: NodeAddress): Promise<Tombstones> => {
      const r = await call('GET', addr, '/status');
      assert.equal(r.status, 200, r.text);
      return r.body.tombstones as Tombstones;
    };
    for (const addr of store.nodes) {
      await pollUntil(
        `${addr}: the tombstone gauges equal /status's tombstones, read before and after the scrape`,
        async () => {
          const before = await tombstonesAt(addr);
          const s = await scrape(addr);
          const after = await tombstonesAt(addr);
          const fixed = (t: Tombstones) => JSON.stringify([t.held, t.oldestAgeMs === null, t.blockedBy, t.collectingWithout, t.stale === null]);
          // Collection ran in between: read again.
          if (fixed(before) !== fixed(after)) throw new NotYet(`/status changed: ${fixed(before)} then ${fixed(after)}`);
          assert.equal(valueOf(s, 'kvs_tombstones', {}), after.held, `${addr}: kvs_tombstones`);
          assert.equal(valueOf(s, 'kvs_tombstone_collection_blocked_members', {}), after.blockedBy.length, `${addr}: blocked members`);
          assert.equal(valueOf(s, 'kvs_tombstone_collecting_without_members', {}), after.collectingWithout.length, `${addr}: members collected without`);
          assert.equal(valueOf(s, 'kvs_replica_stale', {}), after.stale === null ? 0 : 1, `${addr}: stale`);
          const ages = family(s, 'kvs_tombstone_oldest_age_seconds').samples;
          if (before.oldestAgeMs === null || after.oldestAgeMs === null) {
            assert.deepEqual(ages, [], `${addr}: no age without a tombstone`);
          } else {
            assert.equal(ages.length, 1, `${addr}: one age sample`);
            const [low, high] = [Math.min(before.oldestAgeMs, after.oldestAgeMs), Math.max(before.oldestAgeMs, after.oldestAgeMs)];
            const age = ages[0]!.value * 1000;
            if (age < low || age > high) throw new NotYet(`${addr}: age ${age} ms, /status said ${before.oldestAgeMs} then ${after.oldestAgeMs} ms`);
          }
        },
        { timeoutMs: 15_000 },
      );
    }
  });

  test('labels stay in a bounded set, and carry no key, whatever clients send', async () => {
    const nodes = store.nodes;
    const junk = [
      '/',
      '/kvs',
      `/kvs${token}`,
      `/${token}`,
      `/view/${token}`,
      '/shard',
      '/shard/members',
      `/shard/members/${token}/x/y`,
      `/shard/key-count/${token}`,
      `/shard/${token}`,
      `/internal/${token}`,
      `/internal/ping/${token}`,
      `/ui/${token}`,
      `/status/${token}`,
      `/metrics/${token}`,
      `/%E0%A4%A${token}`,
      `/${token}${'x'.repeat(2000)}`,
    ];
    const methods: HttpMethod[] = ['GET', 'PUT', 'DELETE', 'POST', 'PATCH' as HttpMethod, 'OPTIONS' as HttpMethod];
    for (const [i, addr] of nodes.entries()) {
      // Many distinct keys (absent, too long, odd characters), and junk paths with every method.
      for (let k = 0; k < 25; k++) await get(addr, `${freshKey()}/${k}%?#é`, null);
      await put(addr, `${token}${'k'.repeat(60)}`, 1, null);
      for (const path of junk) await call(methods[i % methods.length]!, addr, path, undefined, { timeoutMs: 5_000 });
      for (const method of methods) await call(method, addr, `/kvs/${token}-${method}`, undefined, { timeoutMs: 5_000 });
    }
    for (const addr of nodes) {
      const s = await scrape(addr);
      const requests = family(s, 'kvs_http_requests_total').samples;
      for (const { labels } of requests) {
        assert.deepEqual(Object.keys(labels).sort(), ['method', 'route', 'status'], `${addr}: label names`);
        assert.ok(ROUTES.has(labels.route!) || INTERNAL_ROUTE.test(labels.route!), `${addr}: route label ${labels.route}`);
        assert.ok(METHODS.has(labels.method!), `${addr}: method label ${labels.method}`);
        assert.match(labels.status!, /^[1-5]\d\d$/, `${addr}: status label`);
      }
      assert.ok(requests.length <= 80, `${addr}: ${requests.length} request series`);
      for (const [, f] of s.families) {
        for (const sample of f.samples) {
          for (const value of Object.values(sample.labels)) assert.ok(!value.includes(token), `${addr}: ${sample.name} has a label with a client's key or path: ${value.slice(0, 80)}`);
        }
      }
      assert.ok(!s.text.includes(token), `${addr}: the exposition holds a client's key or path`);
      assertHistogramsAgree(s, addr);
    }
  });
});
