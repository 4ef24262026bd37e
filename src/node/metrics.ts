// GET /metrics: this node's metrics in Prometheus text format, from a prom-client Registry of its
// own (the simulator runs many nodes in one process, so never the global one). Requests are counted
// and timed as they are answered; everything else is read from the state the node already keeps
// (the replicator, sync's repair counters, the parked requests, the core) when a scrape asks.

import { RequestStats } from './request-stats.ts';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { ForwardBatchCounts } from './forward-batch.ts';
import type { WaitReason } from '../core/contract.ts';
import type { Background } from './background.ts';
import type { CoreReader } from './context.ts';
import type { Timers } from './env.ts';
import type { HttpReply } from './http-server.ts';
import type { ParkedRequests } from './parked-requests.ts';
import type { Replicator } from './replicator.ts';
import type { CommitStats, Storage } from './storage.ts';

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Every reason a request may wait for (a record, so that a new reason fails to compile until it is listed). */
const WAIT_REASONS = Object.keys({ syncing: 0, epoch: 0, reshard: 0, causal: 0, handover: 0 } satisfies Record<WaitReason, 0>) as WaitReason[];
const WAIT_OUTCOMES = ['released', 'expired', 'closed'] as const;

/** Routes under /internal/ by name; any other internal path counts as `other`. */
const INTERNAL_ROUTES: ReadonlySet<string> = new Set(
  ['ping', 'state', 'map', 'replicate', 'kv-batch', 'digest', 'repair', 'sync', 'reshard/prepare', 'reshard/send', 'reshard/transfer', 'reshard/commit', 'reshard/abort'].map((name) => `/internal/${name}`),
);
const EXACT_ROUTES: ReadonlySet<string> = new Set(['/view', '/status', '/status/store', '/status/ready', '/openapi.json', '/metrics', '/shard/ids', '/shard/node-shard-id', '/shard/reshard']);
const METHODS: ReadonlySet<string> = new Set(['GET', 'PUT', 'DELETE', 'POST', 'HEAD', 'OPTIONS', 'PATCH']);

/**
 * The route label of a path: one of a fixed set, whatever a client sends, so that no client can
 * make a series per key or per junk path (the key itself never appears in a label).
 */
export function routeOf(path: string): string {
  if (path.startsWith('/kvs/')) return '/kvs/:key';
  if (EXACT_ROUTES.has(path)) return path;
  if (path.startsWith('/shard/members/')) return '/shard/members/:id';
  if (path.startsWith('/shard/key-count/')) return '/shard/key-count/:id';
  if (path.startsWith('/shard/add-member/')) return '/shard/add-member/:id';
  if (path.startsWith('/shard/reshard-plan/')) return '/shard/reshard-plan/:count';
  if (path === '/ui' || path.startsWith('/ui/')) return '/ui/';
  if (path.startsWith('/internal/key-count/')) return '/internal/key-count';
  if (INTERNAL_ROUTES.has(path)) return path;
  return 'other';
}

/** What a scrape reads; each is asked only when /metrics is. */
export interface MetricsSources {
  core: Pick<CoreReader, 'ready' | 'map' | 'view' | 'viewChanges' | 'replica' | 'reshardInProgress' | 'tombstoneStatus' | 'collectionStatus' | 'stale'>;
  replicator: Pick<Replicator, 'snapshot' | 'backlogs'>;
  parked: Pick<ParkedRequests, 'size' | 'counts'>;
  background: Pick<Background, 'snapshot'>;
  /** Sync's repair counters (the `repair` object of /status). */
  repairStatus(): Record<string, unknown>;
  /** The `reshard` object of /status: `{ epoch, phase, partitionsMoved, ... }`, or null/undefined when there is none. */
  reshard(): unknown;
  /** Forwarded requests sent on their own and in batches (forward-batch.ts). */
  forwardBatches(): ForwardBatchCounts;
  /** Group commits of the node's storage (all zero in memory). */
  storage: Pick<Storage, 'commitStats'>;
}

export interface MetricsOptions {
  /**
   * A node that owns its process (not one of the simulator's): add the process's default metrics
   * (CPU, memory, event loop, GC), and time requests by the wall clock rather than by `timers`.
   */
  realProcess: boolean;
  timers: Timers;
}

/** The number at `name` of a status object, when it is one. */
function numberAt(record: unknown, name: string): number | undefined {
  if (typeof record !== 'object' || record === null) return undefined;
  const value = (record as Record<string, unknown>)[name];
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

/** The buckets (seconds) of kvs_http_request_duration_seconds. */
export const DURATION_BUCKETS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** One series of the request metrics: its labels, and what was counted under them. */
interface RequestSeries<L> {
  labels: L;
  count: number;
  sum: number;
  /** Observations per bucket (not cumulative); the last slot is above every bound. */
  buckets: number[];
}

/**
 * The request counter and duration histogram, kept as plain numbers per series (a request costs a
 * map lookup and a few additions, not prom-client's label validation and hashing) and handed to
 * the registry at scrape time in the very shape prom-client's Counter and Histogram give it, so
 * the exposition is the same text. Series appear in the order they were first counted.
 */
class RequestMetrics {
  private readonly counts = new Map<string, RequestSeries<{ route: string; method: string; status: string }>>();
  private readonly durations = new Map<string, RequestSeries<{ route: string; method: string; status_class: string }>>();

  constructor(registry: Registry) {
    const counts = this.counts;
    const durations = this.durations;
    const counter = {
      name: 'kvs_http_requests_total',
      help: 'Requests answered, by route, method and status',
      type: 'counter',
      aggregator: 'sum',
      get: async () => ({ name: counter.name, help: counter.help, type: counter.type, aggregator: counter.aggregator, values: [...counts.values()].map((series) => ({ value: series.count, labels: series.labels })) }),
    };
    const histogram = {
      name: 'kvs_http_request_duration_seconds',
      help: 'Time from routing a request to its answer (causal waits and forwarding included), by route, method and status class',
      type: 'histogram',
      aggregator: 'sum',
      getForPromString: async () => ({ name: histogram.name, help: histogram.help, type: histogram.type, aggregator: histogram.aggregator, values: histogramValues(histogram.name, durations, false) }),
      get: async () => ({ name: histogram.name, help: histogram.help, type: histogram.type, aggregator: histogram.aggregator, values: histogramValues(histogram.name, durations, true) }),
    };
    // The registry takes any object with prom-client's metric shape.
    registry.registerMetric(counter as unknown as Counter);
    registry.registerMetric(histogram as unknown as Counter);
  }

  record(route: string, method: string, status: number, seconds: number): void {
    const key = `${route} ${method} ${status}`;
    let counted = this.counts.get(key);
    if (counted === undefined) this.counts.set(key, (counted = { labels: { route, method, status: String(status) }, count: 0, sum: 0, buckets: [] }));
    counted.count++;
    const statusClass = `${Math.floor(status / 100)}xx`;
    const classKey = `${route} ${method} ${statusClass}`;
    let timed = this.durations.get(classKey);
    if (timed === undefined) {
      this.durations.set(classKey, (timed = { labels: { route, method, status_class: statusClass }, count: 0, sum: 0, buckets: new Array<number>(DURATION_BUCKETS.length + 1).fill(0) }));
    }
    timed.count++;
    timed.sum += seconds;
    let bucket = 0;
    while (bucket < DURATION_BUCKETS.length && seconds > (DURATION_BUCKETS[bucket] as number)) bucket++;
    (timed.buckets[bucket] as number)++;
  }
}

/** A histogram's samples as prom-client's Histogram gives them (`splay`: labels merged, as its get()). */
function histogramValues(name: string, series: Map<string, RequestSeries<Record<string, string>>>, splay: boolean): unknown[] {
  const values: unknown[] = [];
  const bucketName = `${name}_bucket`;
  const sample = (labels: Record<string, string | number>, value: number, metricName: string, shared: Record<string, string>, exemplar?: null) =>
    splay ? { value, metricName, ...(exemplar === undefined ? {} : { exemplar }), labels: { ...labels, ...shared } } : { labels, sharedLabels: shared, value, metricName, exemplar };
  for (const one of series.values()) {
    let cumulative = 0;
    DURATION_BUCKETS.forEach((bound, i) => {
      cumulative += one.buckets[i] as number;
      values.push(sample({ le: bound }, cumulative, bucketName, one.labels, null));
    });
    values.push(sample({ le: '+Inf' }, one.count, bucketName, one.labels, null));
    values.push(sample({}, one.sum, `${name}_sum`, one.labels));
    values.push(sample({}, one.count, `${name}_count`, one.labels));
  }
  return values;
}

export class Metrics {
  private readonly registry = new Registry();
  private readonly now: () => number;
  private readonly requestMetrics: RequestMetrics;
  private readonly refusals: Counter<'status'>;
  private readonly sources: MetricsSources;
  /** The reshard object of /status, read once per scrape (status is a whole document). */
  private reshard: unknown = null;
  /** The replica's tombstones, read once per scrape (counting them walks every tombstone). */
  private tombstones: { held: number; oldestAgeMs: number | null } = { held: 0, oldestAgeMs: null };
  private readonly timers: Timers;
  /** Key-value requests answered, for /status and the dashboard (which take differences). */
  readonly kv = new RequestStats();

  constructor(sources: MetricsSources, options: MetricsOptions) {
    const registers = [this.registry];
    const { core } = sources;
    this.sources = sources;
    this.timers = options.timers;
    this.now = options.realProcess ? () => performance.now() : () => options.timers.now();
    if (options.realProcess) collectDefaultMetrics({ register: this.registry });

    this.requestMetrics = new RequestMetrics(this.registry);
    this.refusals = new Counter({
      name: 'kvs_http_requests_refused_total',
      help: 'Requests refused before routing (shed for load, malformed HTTP; 0: a failed TLS handshake), by status',
      labelNames: ['status'],
      registers,
    });

    // Read at scrape time: cumulative counts the node keeps anyway, exposed as counters.
    const cumulative = (name: string, help: string, read: () => number): void => {
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(read());
        },
      });
    };
    const gauge = (name: string, help: string, read: () => number): void => {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read());
        },
      });
    };

    new Counter({
      name: 'kvs_causal_waits_total',
      help: 'Requests parked until the node has what they depend on, by what they waited for',
      labelNames: ['reason'],
      registers,
      collect() {
        this.reset();
        for (const reason of WAIT_REASONS) this.inc({ reason }, sources.parked.counts.parked.get(reason) ?? 0);
      },
    });
    new Counter({
      name: 'kvs_causal_wait_outcomes_total',
      help: 'How parked requests stopped waiting: released by a state change, expired (503), or closed with the node',
      labelNames: ['outcome'],
      registers,
      collect() {
        this.reset();
        for (const outcome of WAIT_OUTCOMES) this.inc({ outcome }, sources.parked.counts[outcome]);
      },
    });
    gauge('kvs_parked_requests', 'Requests parked now', () => sources.parked.size);
    new Counter({
      name: 'kvs_forwarded_requests_total',
      help: 'Key-value requests relayed to a member of another shard, by how: on their own, or in a batch with others of the same turn',
      labelNames: ['sent'],
      registers,
      collect() {
        this.reset();
        const counts = sources.forwardBatches();
        this.inc({ sent: 'single' }, counts.single);
        this.inc({ sent: 'batched' }, counts.batched);
      },
    });
    cumulative('kvs_forward_batches_total', 'Batches of forwarded requests sent (POST /internal/kv-batch)', () => sources.forwardBatches().batches);

    const backlog = (name: string, help: string, hints: boolean, field: 'versions' | 'bytes'): void => {
      new Gauge({
        name,
        help,
        labelNames: ['peer'],
        registers,
        collect() {
          this.reset();
          for (const queue of sources.replicator.backlogs()) this.set({ peer: queue.peer }, queue.hints === hints ? queue[field] : 0);
        },
      });
    };
    backlog('kvs_replication_queue_versions', 'Versions queued for a shard peer that is up', false, 'versions');
    backlog('kvs_replication_queue_bytes', 'Bytes (JSON) queued for a shard peer that is up', false, 'bytes');
    backlog('kvs_replication_hint_versions', 'Versions held as hints for a shard peer that is down', true, 'versions');
    backlog('kvs_replication_hint_bytes', 'Bytes (JSON) held as hints for a shard peer that is down', true, 'bytes');
    cumulative('kvs_replication_sent_versions_total', 'Versions pushed to shard peers', () => sources.replicator.snapshot().sent);
    cumulative('kvs_replication_dropped_versions_total', 'Versions dropped from a full replication queue (sync and anti-entropy repair them)', () => sources.replicator.snapshot().dropped);

    const commits = (): CommitStats => sources.storage.commitStats();
    cumulative('kvs_storage_commits_total', 'Group commits written to disk (DATA_DIR; one transaction and fsync each)', () => commits().commits);
    cumulative('kvs_storage_commit_failures_total', 'Group commits that failed (their writes were answered with an error, and are written again with the next)', () => commits().failures);
    cumulative('kvs_storage_commit_seconds_total', 'Time group commits took, from hand-over to the storage writer to landing on disk; divide by kvs_storage_commits_total for the mean', () => commits().seconds);
    gauge('kvs_storage_writer_failed', '1 once the storage writer stopped or failed a reset or map write: the node acknowledges no more writes until restarted', () => (commits().writerFailed ? 1 : 0));

    const repair = (name: string, help: string, field: string): void => cumulative(name, help, () => numberAt(sources.repairStatus(), field) ?? 0);
    repair('kvs_anti_entropy_rounds_total', 'Anti-entropy rounds completed', 'rounds');
    repair('kvs_anti_entropy_keys_repaired_total', 'Keys changed here by anti-entropy (this node\'s rounds and its peers\' repairs)', 'keysRepaired');
    repair('kvs_anti_entropy_bytes_total', 'Bytes of anti-entropy digest exchanges and pushes', 'bytes');
    repair('kvs_tombstones_collected_total', 'Tombstones collected once every member reflected them', 'tombstonesCollected');
    repair('kvs_sync_received_bytes_total', 'Version bytes received by pull syncs and full copies', 'syncBytesReceived');

    new Counter({
      name: 'kvs_background_failures_total',
      help: 'Background tasks that failed (the node carried on), by task',
      labelNames: ['task'],
      registers,
      collect() {
        this.reset();
        for (const [task, count] of Object.entries(sources.background.snapshot())) this.inc({ task }, count);
      },
    });

    gauge('kvs_ready', '1 once the node serves requests (joined, shard copied), else 0', () => (core.ready ? 1 : 0));
    gauge('kvs_epoch', 'Epoch of the shard map this node holds (one more per reshard)', () => core.map.epoch);
    gauge('kvs_view_nodes', 'Nodes in this node\'s view, itself included', () => core.view().length);
    cumulative('kvs_view_changes_total', 'Changes of the view (a node added, removed or admitted again)', () => core.viewChanges);
    new Gauge({
      name: 'kvs_shard_keys',
      help: 'Live keys (not deleted) this node holds, by shard',
      labelNames: ['shard'],
      registers,
      collect() {
        this.reset();
        const replica = core.replica;
        if (replica !== null) this.set({ shard: replica.shard }, replica.liveKeyCount());
      },
    });

    // Tombstones and their collection, as /status's `tombstones` shows them (the core's clock, as there).
    gauge('kvs_tombstones', 'Tombstones the replica holds (deleted keys not yet collected)', () => this.tombstones.held);
    const tombstones = (): { held: number; oldestAgeMs: number | null } => this.tombstones;
    new Gauge({
      name: 'kvs_tombstone_oldest_age_seconds',
      help: 'How long ago this node applied the oldest tombstone it holds (to within TOMBSTONE_GRACE_MS / 32); no sample when it holds none',
      registers,
      collect() {
        const age = tombstones().oldestAgeMs;
        if (age === null) this.remove({});
        else this.set(age / 1000);
      },
    });
    gauge(
      'kvs_tombstone_collection_blocked_members',
      'Members of the shard tombstone collection waits for (not heard from for less than the grace, or this node does not hear from a majority)',
      () => core.collectionStatus.blockedBy.length,
    );
    gauge('kvs_tombstone_collecting_without_members', 'Members of the shard tombstones are collected without (not heard from for longer than the grace)', () => core.collectionStatus.collectingWithout.length);
    gauge('kvs_tombstones_kept', 'Tombstones collected without a member, kept (on disk too) until it is back', () => core.collectionStatus.kept);
    gauge('kvs_tombstone_graveyard_full', '1 while collection without a member waits because what it would collect does not fit in GRAVEYARD_MAX, else 0', () => (core.collectionStatus.graveyardFull ? 1 : 0));
    gauge('kvs_replica_stale', '1 while this node\'s replica is stale (it missed tombstones collected without it, and is copied afresh), else 0', () => (core.stale === null ? 0 : 1));

    gauge('kvs_reshard_in_progress', '1 while a reshard is prepared at this node and not yet committed or abandoned', () => (core.reshardInProgress === null ? 0 : 1));
    // From the reshard object of /status, labelled with its epoch; no sample while there is none
    // (absent or null), or while the field is not a number (a count not known).
    const reshardAt = (field: string): number | undefined => numberAt(this.reshard, field);
    const progress = (name: string, help: string, field: string): void => {
      new Gauge({
        name,
        help,
        labelNames: ['epoch'],
        registers,
        collect() {
          this.reset();
          const value = reshardAt(field);
          if (value !== undefined) this.set({ epoch: String(reshardAt('epoch') ?? '') }, value);
        },
      });
    };
    progress('kvs_reshard_partitions_moved', 'Partitions handed over so far by the reshard that /status shows (at its coordinator)', 'partitionsMoved');
    progress('kvs_reshard_partitions_to_move', 'Partitions the reshard that /status shows hands over in all', 'partitionsTotal');
    progress('kvs_reshard_keys_moved', 'Keys handed over so far by the reshard that /status shows', 'keysMoved');
    progress('kvs_reshard_keys_to_move', 'Keys the reshard that /status shows hands over in all', 'keysTotal');
  }

  /** Answers `run` (a request to `path`), counting and timing it; a request that throws counts as a 500. */
  async timed(method: string, path: string, run: () => Promise<HttpReply>): Promise<HttpReply> {
    const started = this.now();
    let status = 500;
    try {
      const reply = await run();
      status = reply.status;
      return reply;
    } finally {
      const route = routeOf(path);
      const label = METHODS.has(method) ? method : 'other';
      const ms = Math.max(0, this.now() - started);
      this.requestMetrics.record(route, label, status, ms / 1000);
      if (route === '/kvs/:key') this.kv.record(status, ms);
    }
  }

  /** A request refused before routing (the HTTP server's `onRefused`). */
  refused(status: number): void {
    this.refusals.inc({ status: String(status) });
  }

  /** The GET /metrics answer. */
  async reply(): Promise<HttpReply> {
    this.reshard = this.sources.reshard();
    this.tombstones = this.sources.core.tombstoneStatus(this.timers.now());
    return { status: 200, body: await this.registry.metrics(), contentType: METRICS_CONTENT_TYPE };
  }
}
