// The flood scenario, shared by `npm run bench -- flood` (bench/flood.ts, full size) and the
// integration test (test/integration/flood.test.ts, small size). It does not start nodes: the caller
// hands it the addresses of a running replicated-only store and names the node to flood.
//
// Phases, each bounded by its deadline plus at most one request timeout:
//   flood    `connections` keep-alive connections to the flooded node, each one causal session
//            writing its own key (flood-<i>) over and over: a fresh value of `valueBytes` bytes every
//            time (a counter prefix over a fixed fill), carrying the metadata of its last 2xx.
//   settle   no client load; `settleSeconds`, or until every node's replication backlog is 0 and
//            their applied clocks agree when `settleUntilDrained`.
//   read-back for each key, GET at every node with the metadata of the key's last acknowledged
//            write (503 retried until the read-back deadline): the value must be that write's (or
//            a later one whose PUT got no answer, so may have been applied), the same at every node.
// During flood and settle a sampler runs every `sampleIntervalMs`: GET /view at the flooded node
// (1 s timeout, latency recorded), GET /view at every node (view changes), GET /status at every
// node (RSS, replication backlog) and, when the caller can name a node's pid, /proc/<pid>/status.
//
// The load generator's own memory is bounded: one request body buffer per connection, rewritten in
// place for each request; answers are read only when small (PUT answers, errors) and dropped.

import { readFile } from 'node:fs/promises';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { Client, Pool } from 'undici';
import { jsonRequest } from '../harness/lab/lab.ts';

export type NodeAddress = string;

export type FloodOptions = {
  /** Every node of the store (replicated-only: each one holds every key). */
  nodes: NodeAddress[];
  /** The node all flood connections go to; one of `nodes`. */
  target: NodeAddress;
  connections: number;
  valueBytes: number;
  seconds: number;
  /** Upper bound of the settle phase (its whole length unless `settleUntilDrained`). */
  settleSeconds: number;
  /** End the settle phase as soon as every node reports an empty replication backlog and the same
   * applied clock (sampled after the flood ended). */
  settleUntilDrained?: boolean;
  /** Bound on each flood PUT and each read-back GET, from sending to the last byte of the answer. */
  requestTimeoutMs: number;
  /** Read-back deadline (503s and disagreeing replicas are retried until then). */
  readbackSeconds: number;
  /** After a 503 with Retry-After, wait that long before the next PUT on that connection (a polite
   * client); default false: flood on. */
  honorRetryAfter?: boolean;
  sampleIntervalMs?: number;
  /** Timeout of GET /view samples (a miss counts as over this). */
  viewTimeoutMs?: number;
  statusTimeoutMs?: number;
  /** The pid of a node's process, when known: its RSS is then read from /proc as well. */
  pidOf?: (address: NodeAddress) => number | undefined;
  /** Progress lines (every `progressIntervalMs`), for a human watching. */
  onProgress?: (line: string) => void;
  progressIntervalMs?: number;
  keyPrefix?: string;
  /** Measure /view latency at the flooded node from a worker thread (default true). */
  viewProbeInWorker?: boolean;
};

export type LatencySummary = {
  count: number;
  /** Milliseconds, or ">N" when the percentile falls on a sample not answered within N ms. */
  p50Ms: number | string;
  p99Ms: number | string;
  maxMs: number | string;
  /** Samples not answered within the timeout. */
  overTimeout: number;
};

export type NodeReport = {
  address: NodeAddress;
  flooded: boolean;
  pid: number | null;
  /** Highest RSS seen from the start of the flood until its last request ended. */
  peakRssBytesFlood: number | null;
  peakRssBytesSettle: number | null;
  /** RSS at the end of the settle phase. */
  rssBytesEnd: number | null;
  /** Where RSS came from: "status" (memory.rssBytes), "proc" (/proc/<pid>/status VmRSS), both. */
  rssSources: string[];
  /** Replication backlog at the end of the settle phase (null: /status did not answer). */
  backlogEnd: { queued: number; hints: number; pendingEarlyWrites: number } | null;
  peakBacklog: { queued: number; hints: number };
  /** Longest event-loop delay the node reported in /status (eventLoop.delayMaxMs) during the flood; null: not reported. */
  loopDelayMaxMsFlood: number | null;
  statusAnswered: number;
  statusMissed: number;
  viewAnswered: number;
  viewMissed: number;
};

export type ViewChange = { atSeconds: number; at: NodeAddress; removed: NodeAddress[]; added: NodeAddress[] };

export type ReadbackProblem = { key: string; node: NodeAddress | null; kind: string; detail: string };

export type FloodResult = {
  /** The options the run used, defaults filled in. */
  config: Required<
    Pick<
      FloodOptions,
      | 'nodes'
      | 'target'
      | 'connections'
      | 'valueBytes'
      | 'seconds'
      | 'settleSeconds'
      | 'settleUntilDrained'
      | 'requestTimeoutMs'
      | 'readbackSeconds'
      | 'honorRetryAfter'
      | 'sampleIntervalMs'
    >
  >;
  flood: {
    /** From the first request to the end of the last one (deadline plus at most one timeout). */
    seconds: number;
    requests: number;
    status2xx: number;
    status503: number;
    status503WithRetryAfter: number;
    status503WithoutRetryAfter: number;
    /** Other statuses, by status. */
    otherStatuses: Record<string, number>;
    /** Requests with no answer (timeout, connection reset...), by error code. */
    noAnswer: number;
    noAnswerByCode: Record<string, number>;
    /** Error texts of non-2xx answers, by "<status> <error>" (at most 20 distinct). */
    errorTexts: Record<string, number>;
    /** Acknowledged value bytes per second. */
    ackedMBPerSecond: number;
    putLatency2xx: LatencySummary;
  };
  nodes: NodeReport[];
  /** GET /view at the flooded node, during the flood and during the settle phase. */
  /** GET /view at the flooded node, each on a new connection (from a worker thread; or pooled when it is off). */
  viewLatency: { flood: LatencySummary; settle: LatencySummary };
  /** GET /view at the flooded node over kept-alive connections, as peers and pooled clients ask. */
  viewLatencyPooled: { flood: LatencySummary; settle: LatencySummary };
  /** When new-connection /view samples missed (seconds from the flood's start; at most 100). */
  viewMissesAtSeconds: number[];
  viewChanges: {
    /** Every node removed from or added to any node's view between two samples of that view. */
    count: number;
    removals: number;
    additions: number;
    /** View samples (any node) that lacked a node of the store. */
    samplesMissingANode: number;
    /** The first 50 changes. */
    events: ViewChange[];
  };
  settle: { seconds: number; drained: boolean; drainedAfterSeconds: number | null };
  readback: {
    keys: number;
    /** Keys with no acknowledged write (nothing to check but absence or an unanswered value). */
    keysNeverAcked: number;
    ok: boolean;
    /** (key, node) pairs that returned the last acknowledged value. */
    matched: number;
    /** (key, node) pairs that returned a later value whose PUT got no answer (allowed). */
    matchedUnacked: number;
    failures: number;
    /** The first 20 problems. */
    problems: ReadbackProblem[];
    seconds: number;
  };
  loadGenerator: { eventLoopDelayP99Ms: number; eventLoopDelayMaxMs: number; peakRssBytes: number };
};

const defaultSampleIntervalMs = 250;
const defaultViewTimeoutMs = 1_000;
const defaultStatusTimeoutMs = 5_000;
const connectTimeoutMs = 2_000;
/** After a request without an answer, a connection pauses this long (a dead node is no busy loop). */
const noAnswerBackoffMs = 50;
/** Between two read-back attempts of a key that got 503 or disagreeing replicas. */
const readbackRetryMs = 100;
const readbackConcurrency = 8;
const latencySamplesMax = 200_000;
const problemsMax = 20;
const errorTextsMax = 20;
const viewEventsMax = 50;
/** A counter prefix `<key>#<10 digits>:` is at most this long (keys are short). */
const counterDigits = 10;

class LatencySample {
  count = 0;
  overTimeout = 0;
  max = 0;
  #samples: number[] = [];
  readonly #timeoutMs: number;

  constructor(timeoutMs: number) {
    this.#timeoutMs = timeoutMs;
  }

  /** `Infinity`: not answered within the timeout. */
  record(ms: number): void {
    this.count += 1;
    if (ms === Infinity) this.overTimeout += 1;
    this.max = Math.max(this.max, ms);
    if (this.#samples.length < latencySamplesMax) this.#samples.push(ms);
    else {
      const slot = Math.floor(Math.random() * this.count);
      if (slot < latencySamplesMax) this.#samples[slot] = ms;
    }
  }

  summary(): LatencySummary {
    const sorted = Float64Array.from(this.#samples).sort();
    const show = (ms: number): number | string => (ms === Infinity ? `>${this.#timeoutMs}` : Math.round(ms * 100) / 100);
    const at = (fraction: number): number => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)]!);
    return { count: this.count, p50Ms: show(at(0.5)), p99Ms: show(at(0.99)), maxMs: show(this.max), overTimeout: this.overTimeout };
  }
}

/** One connection's request body `{"value":"<key>#<counter>:xxx...","causal-metadata":M}`, one
 * buffer rewritten in place: the value's fill is written once, the counter and metadata each time. */
class FloodBody {
  #buffer: Buffer;
  readonly #valueStart: number;
  readonly #valueBytes: number;
  readonly #key: string;

  constructor(key: string, valueBytes: number) {
    this.#key = key;
    this.#valueBytes = valueBytes;
    const head = Buffer.from('{"value":"');
    this.#valueStart = head.length;
    this.#buffer = this.#allocate(4096);
  }

  #allocate(metadataCapacity: number): Buffer {
    const length = this.#valueStart + valueLength(this.#key, this.#valueBytes) + '","causal-metadata":'.length + metadataCapacity + 1;
    const buffer = Buffer.allocUnsafe(length);
    buffer.write('{"value":"', 0, 'latin1');
    buffer.fill('x', this.#valueStart, this.#valueStart + valueLength(this.#key, this.#valueBytes), 'latin1');
    return buffer;
  }

  /** The body for write number `counter`; valid until the next call. */
  render(counter: number, metadataJson: string): Buffer {
    const valueEnd = this.#valueStart + valueLength(this.#key, this.#valueBytes);
    const tail = `","causal-metadata":${metadataJson}}`;
    const needed = valueEnd + Buffer.byteLength(tail);
    if (needed > this.#buffer.length) this.#buffer = this.#allocate(Buffer.byteLength(metadataJson) * 2);
    this.#buffer.write(valuePrefix(this.#key, counter), this.#valueStart, 'latin1');
    this.#buffer.write(tail, valueEnd, 'utf8');
    return this.#buffer.subarray(0, needed);
  }
}

function valuePrefix(key: string, counter: number): string {
  return `${key}#${String(counter).padStart(counterDigits, '0')}:`;
}

/** A value is `valueBytes` long, or just its prefix when that is longer. */
function valueLength(key: string, valueBytes: number): number {
  return Math.max(valueBytes, valuePrefix(key, 0).length);
}

/** The counter a stored value was written with, or undefined when it is no value of ours. */
function counterOf(key: string, value: unknown, valueBytes: number, fill: string): number | undefined {
  if (typeof value !== 'string' || value.length !== valueLength(key, valueBytes)) return undefined;
  const prefixLength = valuePrefix(key, 0).length;
  const match = /^(.*)#(\d+):$/.exec(value.slice(0, prefixLength));
  if (match === null || match[1] !== key || match[2]!.length !== counterDigits) return undefined;
  if (value.slice(prefixLength) !== fill.slice(0, value.length - prefixLength)) return undefined;
  return Number(match[2]);
}

type KeyState = {
  key: string;
  /** Counter of the last write sent. */
  sent: number;
  /** Counter and metadata of the last 2xx. */
  acked: number;
  ackedMetadata: unknown;
  /** Writes after `acked` whose outcome is unknown (no answer), so may have been applied. */
  unknown: Set<number>;
};

type StatusSample = { sentAtMs: number; body: Record<string, unknown> };

function countInto(record: Record<string, number>, label: string, limit = Infinity): void {
  if (!(label in record) && Object.keys(record).length >= limit) label = '(other)';
  record[label] = (record[label] ?? 0) + 1;
}

function errorCode(err: unknown): string {
  if (err instanceof Error || (typeof err === 'object' && err !== null)) {
    const e = err as { name?: string; code?: unknown };
    if (e.name === 'TimeoutError') return 'timeout';
    if (typeof e.code === 'string') return e.code;
    if (typeof e.name === 'string') return e.name;
  }
  return 'unknown';
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

function asNumber(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : 0;
}

async function procRssBytes(pid: number): Promise<number | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(text);
    return match === null ? undefined : Number(match[1]) * 1024;
  } catch {
    return undefined;
  }
}


export async function runFlood(options: FloodOptions): Promise<FloodResult> {
  const nodes = [...options.nodes];
  const target = options.target;
  if (!nodes.includes(target)) throw new Error(`the flooded node ${target} is not one of ${nodes.join(', ')}`);
  const sampleIntervalMs = options.sampleIntervalMs ?? defaultSampleIntervalMs;
  const viewTimeoutMs = options.viewTimeoutMs ?? defaultViewTimeoutMs;
  const statusTimeoutMs = options.statusTimeoutMs ?? defaultStatusTimeoutMs;
  const keyPrefix = options.keyPrefix ?? 'flood-';
  const progress = options.onProgress ?? (() => {});
  const progressIntervalMs = options.progressIntervalMs ?? 2_000;
  const fill = 'x'.repeat(options.valueBytes);

  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  let loadGeneratorPeakRss = process.memoryUsage.rss();

  // Monitoring connections, apart from the flood's: enough per node that a slow /status does not
  // queue a /view sample behind it (at most viewTimeout/interval view samples are in flight).
  const monitorPools = new Map(
    nodes.map((node) => [node, new Pool(`http://${node}`, { connections: 8, connect: { timeout: connectTimeoutMs } })] as const),
  );
  const readbackPools = new Map(
    nodes.map((node) => [node, new Pool(`http://${node}`, { connections: readbackConcurrency, connect: { timeout: connectTimeoutMs } })] as const),
  );
  const floodClients: Client[] = [];

  let startMs = performance.now();
  const elapsedSeconds = () => (performance.now() - startMs) / 1000;
  let phase: 'flood' | 'settle' = 'flood';
  let floodEndMs = Infinity;

  // ---- sampler ------------------------------------------------------------------------------------
  const nodeState = new Map(
    nodes.map((node) => [
      node,
      {
        pid: options.pidOf?.(node) ?? null,
        peakRss: { flood: null as number | null, settle: null as number | null },
        lastRss: null as number | null,
        rssSources: new Set<string>(),
        lastStatus: null as StatusSample | null,
        peakBacklog: { queued: 0, hints: 0 },
        loopDelayMaxMsFlood: null as number | null,
        lastView: null as string[] | null,
        statusInFlight: false,
        viewInFlight: false,
        statusAnswered: 0,
        statusMissed: 0,
        viewAnswered: 0,
        viewMissed: 0,
      },
    ]),
  );
  const viewLatency = { flood: new LatencySample(viewTimeoutMs), settle: new LatencySample(viewTimeoutMs) };
  const viewLatencyPooled = { flood: new LatencySample(viewTimeoutMs), settle: new LatencySample(viewTimeoutMs) };
  const viewChanges = { count: 0, removals: 0, additions: 0, samplesMissingANode: 0, events: [] as ViewChange[] };
  const samplesInFlight = new Set<Promise<void>>();
  // The flooded node's /view latency is measured from a worker thread of its own: this process's
  // event loop is busy with the flood, and its pauses would count as the node's.
  const probeWorker =
    options.viewProbeInWorker === false
      ? null
      : new Worker(new URL('./view-probe.ts', import.meta.url), { workerData: { target, intervalMs: sampleIntervalMs, timeoutMs: viewTimeoutMs } });
  /** When (seconds from the start) a new-connection /view sample missed its bound; the first 100. */
  const viewMissesAtSeconds: number[] = [];
  probeWorker?.on('message', (message: { latencyMs: number | null }) => {
    viewLatency[phase].record(message.latencyMs ?? Infinity);
    if (message.latencyMs === null && viewMissesAtSeconds.length < 100) viewMissesAtSeconds.push(Math.round(elapsedSeconds() * 10) / 10);
  });

  function track(promise: Promise<void>): void {
    samplesInFlight.add(promise);
    void promise.finally(() => samplesInFlight.delete(promise));
  }

  function recordRss(node: NodeAddress, bytes: number, source: string, atPhase: 'flood' | 'settle'): void {
    const state = nodeState.get(node)!;
    state.rssSources.add(source);
    state.lastRss = bytes;
    state.peakRss[atPhase] = Math.max(state.peakRss[atPhase] ?? 0, bytes);
  }

  function recordView(node: NodeAddress, view: string[]): void {
    const state = nodeState.get(node)!;
    if (!nodes.every((n) => view.includes(n))) viewChanges.samplesMissingANode += 1;
    if (state.lastView !== null) {
      const removed = state.lastView.filter((n) => !view.includes(n));
      const added = view.filter((n) => !state.lastView!.includes(n));
      if (removed.length + added.length > 0) {
        viewChanges.count += removed.length + added.length;
        viewChanges.removals += removed.length;
        viewChanges.additions += added.length;
        const event = { atSeconds: Math.round(elapsedSeconds() * 10) / 10, at: node, removed, added };
        if (viewChanges.events.length < viewEventsMax) viewChanges.events.push(event);
        progress(`view change at ${node} (+${event.atSeconds} s): ${removed.map((n) => `-${n}`).concat(added.map((n) => `+${n}`)).join(' ')}`);
      }
    }
    state.lastView = view;
  }

  async function sampleView(node: NodeAddress): Promise<void> {
    const state = nodeState.get(node)!;
    const atPhase = phase;
    const sentMs = performance.now();
    try {
      const reply = await jsonRequest(monitorPools.get(node)!, 'GET', node, '/view', undefined, viewTimeoutMs);
      const latencyMs = performance.now() - sentMs;
      if (reply.status !== 200 || !Array.isArray(reply.body?.view)) throw new Error(`GET /view: ${reply.status}`);
      if (node === target) viewLatencyPooled[atPhase].record(latencyMs);
      if (node === target && probeWorker === null) viewLatency[atPhase].record(latencyMs);
      state.viewAnswered += 1;
      recordView(node, reply.body.view as string[]);
    } catch {
      if (node === target) viewLatencyPooled[atPhase].record(Infinity);
      if (node === target && probeWorker === null) viewLatency[atPhase].record(Infinity);
      state.viewMissed += 1;
    }
  }

  async function sampleStatus(node: NodeAddress): Promise<void> {
    const state = nodeState.get(node)!;
    const atPhase = phase;
    const sentAtMs = performance.now();
    try {
      const reply = await jsonRequest(monitorPools.get(node)!, 'GET', node, '/status', undefined, statusTimeoutMs);
      if (reply.status !== 200 || typeof reply.body !== 'object' || reply.body === null) throw new Error(`GET /status: ${reply.status}`);
      state.statusAnswered += 1;
      state.lastStatus = { sentAtMs, body: reply.body as Record<string, unknown> };
      const rss = (reply.body as { memory?: { rssBytes?: unknown } }).memory?.rssBytes;
      if (typeof rss === 'number') recordRss(node, rss, 'status', atPhase);
      const replication = (reply.body as { replication?: { queued?: unknown; hints?: unknown } }).replication;
      state.peakBacklog.queued = Math.max(state.peakBacklog.queued, asNumber(replication?.queued));
      state.peakBacklog.hints = Math.max(state.peakBacklog.hints, asNumber(replication?.hints));
      const loopDelay = (reply.body as { eventLoop?: { delayMaxMs?: unknown } }).eventLoop?.delayMaxMs;
      if (atPhase === 'flood' && typeof loopDelay === 'number') state.loopDelayMaxMsFlood = Math.max(state.loopDelayMaxMsFlood ?? 0, loopDelay);
    } catch {
      state.statusMissed += 1;
    }
  }

  async function sampleProc(node: NodeAddress): Promise<void> {
    const state = nodeState.get(node)!;
    const atPhase = phase;
    if (state.pid === null) return;
    const rss = await procRssBytes(state.pid);
    if (rss !== undefined) recordRss(node, rss, 'proc', atPhase);
  }

  function tick(): void {
    loadGeneratorPeakRss = Math.max(loadGeneratorPeakRss, process.memoryUsage.rss());
    // The flooded node's /view latency: one sample every tick, however slow the last one.
    track(sampleView(target));
    for (const node of nodes) {
      const state = nodeState.get(node)!;
      if (node !== target && !state.viewInFlight) {
        state.viewInFlight = true;
        track(sampleView(node).finally(() => (state.viewInFlight = false)));
      }
      if (!state.statusInFlight) {
        state.statusInFlight = true;
        track(sampleStatus(node).finally(() => (state.statusInFlight = false)));
      }
      track(sampleProc(node));
    }
  }

  // Every node's view before the flood, the baseline of the first change (a node may be removed
  // from the flooded node's view before that node answers a sample); without an answer, the store.
  await Promise.all(
    nodes.map(async (node) => {
      const reply = await jsonRequest(monitorPools.get(node)!, 'GET', node, '/view', undefined, viewTimeoutMs).catch(() => undefined);
      const view = reply?.status === 200 && Array.isArray(reply.body?.view) ? (reply.body.view as string[]) : nodes;
      nodeState.get(node)!.lastView = view;
    }),
  );

  startMs = performance.now();
  let samplerStopped = false;
  const sampler = (async () => {
    let nextMs = performance.now();
    while (!samplerStopped) {
      tick();
      nextMs += sampleIntervalMs;
      const waitMs = nextMs - performance.now();
      if (waitMs > 0) await sleep(waitMs);
      else nextMs = performance.now();
    }
  })();

  // ---- flood --------------------------------------------------------------------------------------
  const keys: KeyState[] = Array.from({ length: options.connections }, (_, i) => ({
    key: `${keyPrefix}${i}`,
    sent: 0,
    acked: 0,
    ackedMetadata: null,
    unknown: new Set<number>(),
  }));
  const counts = {
    requests: 0,
    status2xx: 0,
    status503: 0,
    status503WithRetryAfter: 0,
    otherStatuses: {} as Record<string, number>,
    noAnswer: 0,
    noAnswerByCode: {} as Record<string, number>,
    errorTexts: {} as Record<string, number>,
    ackedBytes: 0,
  };
  const putLatency = new LatencySample(options.requestTimeoutMs);
  let inFlight = 0;
  const floodDeadlineMs = performance.now() + options.seconds * 1000;

  async function floodConnection(state: KeyState): Promise<void> {
    const client = new Client(`http://${target}`, { connect: { timeout: connectTimeoutMs }, keepAliveTimeout: 30_000, pipelining: 1 });
    floodClients.push(client);
    const body = new FloodBody(state.key, options.valueBytes);
    const path = `/kvs/${encodeURIComponent(state.key)}`;
    while (performance.now() < floodDeadlineMs) {
      const counter = ++state.sent;
      const payload = body.render(counter, JSON.stringify(state.ackedMetadata));
      const sentMs = performance.now();
      counts.requests += 1;
      inFlight += 1;
      let pauseMs = 0;
      try {
        const response = await client.request({
          method: 'PUT',
          path,
          headers: { 'content-type': 'application/json' },
          body: payload,
          signal: AbortSignal.timeout(options.requestTimeoutMs),
        });
        // Answers to a PUT are small (or an error): read them whole.
        const text = await response.body.text();
        const status = response.statusCode;
        let parsed: any;
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = undefined;
        }
        if (status >= 200 && status < 300) {
          counts.status2xx += 1;
          counts.ackedBytes += options.valueBytes;
          putLatency.record(performance.now() - sentMs);
          state.acked = counter;
          state.unknown.clear();
          if (parsed !== undefined && 'causal-metadata' in parsed) state.ackedMetadata = parsed['causal-metadata'];
        } else {
          const errorText = typeof parsed?.error === 'string' ? parsed.error : text.slice(0, 80);
          countInto(counts.errorTexts, `${status} ${errorText}`, errorTextsMax);
          if (status === 503) {
            counts.status503 += 1;
            const retryAfter = response.headers['retry-after'];
            if (retryAfter !== undefined) {
              counts.status503WithRetryAfter += 1;
              const seconds = Number(retryAfter);
              if (options.honorRetryAfter === true && Number.isFinite(seconds)) pauseMs = seconds * 1000;
            }
            // The forwarding 503 says the write may have been applied; any other 503 says it was not.
            if (/may or may not/.test(errorText)) state.unknown.add(counter);
          } else {
            countInto(counts.otherStatuses, String(status));
          }
        }
      } catch (err) {
        counts.noAnswer += 1;
        const code = errorCode(err);
        countInto(counts.noAnswerByCode, code);
        // Without a connection the write never left; otherwise it may have been applied.
        if (!['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT'].includes(code)) state.unknown.add(counter);
        pauseMs = noAnswerBackoffMs;
      } finally {
        inFlight -= 1;
      }
      if (pauseMs > 0) await sleep(Math.min(pauseMs, Math.max(0, floodDeadlineMs - performance.now())));
    }
    await client.destroy();
  }

  const progressTimer = setInterval(() => {
    const rss = nodes.map((node) => {
      const mb = nodeState.get(node)!.lastRss;
      return mb === null ? '?' : `${Math.round(mb / 1e6)}`;
    });
    const backlog = nodes.map((node) => {
      const body = nodeState.get(node)!.lastStatus?.body as { replication?: { queued?: unknown; hints?: unknown } } | undefined;
      return body === undefined ? '?' : `${asNumber(body.replication?.queued)}+${asNumber(body.replication?.hints)}`;
    });
    progress(
      `${phase} +${elapsedSeconds().toFixed(0)} s: 2xx ${counts.status2xx}, 503 ${counts.status503}, other ${Object.values(counts.otherStatuses).reduce((a, b) => a + b, 0)}, ` +
        `no answer ${counts.noAnswer}, in flight ${inFlight}; RSS MB [${rss.join(', ')}]; queued+hints [${backlog.join(', ')}]; ` +
        `/view misses ${viewLatency.flood.overTimeout + viewLatency.settle.overTimeout}, view changes ${viewChanges.count}`,
    );
  }, progressIntervalMs);

  try {
    await Promise.all(keys.map((state) => floodConnection(state)));
    floodEndMs = performance.now();
    phase = 'settle';
    const floodSeconds = (floodEndMs - startMs) / 1000;

    // ---- settle -----------------------------------------------------------------------------------
    const settleDeadlineMs = floodEndMs + options.settleSeconds * 1000;
    let drainedAtMs: number | null = null;
    const drained = (): boolean => {
      const statuses = nodes.map((node) => nodeState.get(node)!.lastStatus);
      if (statuses.some((s) => s === null || s.sentAtMs < floodEndMs)) return false;
      const bodies = statuses.map((s) => s!.body as { replication?: { queued?: unknown; hints?: unknown }; applied?: unknown });
      if (bodies.some((b) => asNumber(b.replication?.queued) + asNumber(b.replication?.hints) > 0)) return false;
      return new Set(bodies.map((b) => canonicalJson(b.applied))).size === 1;
    };
    while (performance.now() < settleDeadlineMs) {
      if (drainedAtMs === null && drained()) drainedAtMs = performance.now();
      if (drainedAtMs !== null && options.settleUntilDrained === true) break;
      await sleep(Math.min(sampleIntervalMs, Math.max(0, settleDeadlineMs - performance.now())));
    }
    if (drainedAtMs === null && drained()) drainedAtMs = performance.now();
    const settleEndMs = performance.now();
    samplerStopped = true;
    await sampler;
    await Promise.allSettled([...samplesInFlight]);
    // One last status and RSS of every node: the figures "at the end of the settle period".
    for (const node of nodes) {
      nodeState.get(node)!.lastStatus = null;
      nodeState.get(node)!.lastRss = null;
    }
    await Promise.all(nodes.flatMap((node) => [sampleStatus(node), sampleProc(node)]));
    clearInterval(progressTimer);

    // The load generator's event-loop delay while it flooded and sampled (not while it reads back).
    loopDelay.disable();
    const eventLoopDelayP99Ms = Math.round(loopDelay.percentile(99) / 1e4) / 100;
    const eventLoopDelayMaxMs = Math.round(loopDelay.max / 1e4) / 100;

    // ---- read-back --------------------------------------------------------------------------------
    progress(`read-back of ${keys.length} keys at ${nodes.length} nodes`);
    await probeWorker?.terminate();
    const readback = await readBack(keys, nodes, readbackPools, options, fill);

    const nodeReports: NodeReport[] = nodes.map((node) => {
      const state = nodeState.get(node)!;
      const body = state.lastStatus?.body as
        | { replication?: { queued?: unknown; hints?: unknown }; pendingEarlyWrites?: unknown }
        | undefined;
      return {
        address: node,
        flooded: node === target,
        pid: state.pid,
        peakRssBytesFlood: state.peakRss.flood,
        peakRssBytesSettle: state.peakRss.settle,
        rssBytesEnd: state.lastRss,
        rssSources: [...state.rssSources].sort(),
        backlogEnd:
          body === undefined
            ? null
            : {
                queued: asNumber(body.replication?.queued),
                hints: asNumber(body.replication?.hints),
                pendingEarlyWrites: asNumber(body.pendingEarlyWrites),
              },
        peakBacklog: state.peakBacklog,
        loopDelayMaxMsFlood: state.loopDelayMaxMsFlood,
        statusAnswered: state.statusAnswered,
        statusMissed: state.statusMissed,
        viewAnswered: state.viewAnswered,
        viewMissed: state.viewMissed,
      };
    });
    return {
      config: {
        nodes,
        target,
        connections: options.connections,
        valueBytes: options.valueBytes,
        seconds: options.seconds,
        settleSeconds: options.settleSeconds,
        settleUntilDrained: options.settleUntilDrained === true,
        requestTimeoutMs: options.requestTimeoutMs,
        readbackSeconds: options.readbackSeconds,
        honorRetryAfter: options.honorRetryAfter === true,
        sampleIntervalMs,
      },
      flood: {
        seconds: Math.round(floodSeconds * 100) / 100,
        requests: counts.requests,
        status2xx: counts.status2xx,
        status503: counts.status503,
        status503WithRetryAfter: counts.status503WithRetryAfter,
        status503WithoutRetryAfter: counts.status503 - counts.status503WithRetryAfter,
        otherStatuses: counts.otherStatuses,
        noAnswer: counts.noAnswer,
        noAnswerByCode: counts.noAnswerByCode,
        errorTexts: counts.errorTexts,
        ackedMBPerSecond: Math.round((counts.ackedBytes / 1e6 / floodSeconds) * 10) / 10,
        putLatency2xx: putLatency.summary(),
      },
      nodes: nodeReports,
      viewLatency: { flood: viewLatency.flood.summary(), settle: viewLatency.settle.summary() },
      viewLatencyPooled: { flood: viewLatencyPooled.flood.summary(), settle: viewLatencyPooled.settle.summary() },
      viewMissesAtSeconds,
      viewChanges,
      settle: {
        seconds: Math.round(((settleEndMs - floodEndMs) / 1000) * 10) / 10,
        drained: drainedAtMs !== null,
        drainedAfterSeconds: drainedAtMs === null ? null : Math.round(((drainedAtMs - floodEndMs) / 1000) * 10) / 10,
      },
      readback,
      loadGenerator: {
        eventLoopDelayP99Ms,
        eventLoopDelayMaxMs,
        peakRssBytes: loadGeneratorPeakRss,
      },
    };
  } finally {
    samplerStopped = true;
    clearInterval(progressTimer);
    await probeWorker?.terminate();
    loopDelay.disable();
    await sampler.catch(() => {});
    await Promise.allSettled([...samplesInFlight]);
    await Promise.allSettled([...floodClients, ...monitorPools.values(), ...readbackPools.values()].map((d) => d.destroy()));
  }
}

// ---- read-back ------------------------------------------------------------------------------------

type NodeRead = { kind: 'value'; counter: number } | { kind: 'absent' } | { kind: 'problem'; problem: string; detail: string };

async function readBack(
  keys: KeyState[],
  nodes: NodeAddress[],
  pools: Map<NodeAddress, Pool>,
  options: FloodOptions,
  fill: string,
): Promise<FloodResult['readback']> {
  const startMs = performance.now();
  const deadlineMs = startMs + options.readbackSeconds * 1000;
  const problems: ReadbackProblem[] = [];
  let failures = 0;
  let matched = 0;
  let matchedUnacked = 0;

  function fail(problem: ReadbackProblem): void {
    failures += 1;
    if (problems.length < problemsMax) problems.push(problem);
  }

  // One node's answer for a key: retried while 503 or unanswered, until the deadline.
  async function readAt(state: KeyState, node: NodeAddress): Promise<NodeRead> {
    let last: NodeRead = { kind: 'problem', problem: 'not read', detail: 'the read-back deadline passed before this key was read' };
    for (;;) {
      if (performance.now() >= deadlineMs) return last;
      try {
        const reply = await jsonRequest(pools.get(node)!, 'GET', node, `/kvs/${encodeURIComponent(state.key)}`, { 'causal-metadata': state.ackedMetadata }, options.requestTimeoutMs);
        if (reply.status === 200) {
          const counter = counterOf(state.key, reply.body?.value, options.valueBytes, fill);
          if (counter === undefined) {
            const shown = JSON.stringify(reply.body?.value)?.slice(0, 60);
            return { kind: 'problem', problem: 'foreign value', detail: `a value this flood never wrote: ${shown}...` };
          }
          return { kind: 'value', counter };
        }
        if (reply.status === 404 && reply.body?.error === 'Key does not exist') return { kind: 'absent' };
        const text = `${reply.status} ${typeof reply.body?.error === 'string' ? reply.body.error : ''}`;
        if (reply.status !== 503) return { kind: 'problem', problem: 'unexpected status', detail: text };
        last = { kind: 'problem', problem: 'still 503 at the deadline', detail: text };
      } catch (err) {
        last = { kind: 'problem', problem: 'no answer', detail: errorCode(err) };
      }
      if (performance.now() + readbackRetryMs >= deadlineMs) return last;
      await sleep(readbackRetryMs);
    }
  }

  async function checkKey(state: KeyState): Promise<void> {
    for (;;) {
      const reads = await Promise.all(nodes.map(async (node) => [node, await readAt(state, node)] as const));
      const bad: ReadbackProblem[] = [];
      for (const [node, read] of reads) {
        if (read.kind === 'problem') bad.push({ key: state.key, node, kind: read.problem, detail: read.detail });
        else if (read.kind === 'absent') {
          if (state.acked > 0) bad.push({ key: state.key, node, kind: 'lost', detail: `absent, but write #${state.acked} was acknowledged` });
        } else if (read.counter < state.acked) {
          bad.push({ key: state.key, node, kind: 'stale', detail: `write #${read.counter}, but #${state.acked} was acknowledged` });
        } else if (read.counter > state.acked && !state.unknown.has(read.counter)) {
          bad.push({ key: state.key, node, kind: 'unexpected', detail: `write #${read.counter}: never sent, or refused (last acknowledged #${state.acked})` });
        }
      }
      if (bad.length > 0) {
        for (const problem of bad) fail(problem);
        return;
      }
      const seen = new Set(reads.map(([, read]) => (read.kind === 'value' ? read.counter : 0)));
      if (seen.size === 1) {
        for (const [, read] of reads) {
          if (read.kind === 'value' && read.counter === state.acked) matched += 1;
          else if (read.kind === 'value') matchedUnacked += 1;
          else matched += 1; // absent, and nothing was acknowledged
        }
        return;
      }
      // Each answer is allowed, but the replicas differ (a write without an answer reached some of
      // them): wait for them to converge, until the deadline.
      if (performance.now() + readbackRetryMs >= deadlineMs) {
        const shown = reads.map(([node, read]) => `${node}: ${read.kind === 'value' ? `#${read.counter}` : read.kind}`).join(', ');
        fail({ key: state.key, node: null, kind: 'diverged', detail: `replicas disagree at the deadline: ${shown}` });
        return;
      }
      await sleep(readbackRetryMs);
    }
  }

  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(readbackConcurrency, keys.length) }, async () => {
      while (next < keys.length) await checkKey(keys[next++]!);
    }),
  );
  return {
    keys: keys.length,
    keysNeverAcked: keys.filter((state) => state.acked === 0).length,
    ok: failures === 0,
    matched,
    matchedUnacked,
    failures,
    problems,
    seconds: Math.round(((performance.now() - startMs) / 1000) * 10) / 10,
  };
}

// ---- report ---------------------------------------------------------------------------------------

function formatBytes(bytes: number | null): string {
  if (bytes === null) return '?';
  return bytes >= 1e9 ? `${(bytes / 1e9).toFixed(2)} GB` : `${(bytes / 1e6).toFixed(0)} MB`;
}

function formatLatency(summary: LatencySummary): string {
  const ms = (value: number | string) => (typeof value === 'number' ? `${value} ms` : `${value} ms`);
  return `n=${summary.count} p50 ${ms(summary.p50Ms)}, p99 ${ms(summary.p99Ms)}, max ${ms(summary.maxMs)}, over 1 s ${summary.overTimeout}`;
}

function formatCounts(record: Record<string, number>): string {
  const entries = Object.entries(record);
  return entries.length === 0 ? '0' : entries.map(([label, count]) => `${label}: ${count}`).join(', ');
}

/** A readable report (several lines, no trailing newline). */
export function formatFloodReport(result: FloodResult): string {
  const { config, flood } = result;
  const lines: string[] = [];
  lines.push(
    `flood: ${config.connections} connections x ${config.valueBytes} bytes for ${config.seconds} s at ${config.target} ` +
      `(${config.nodes.length} nodes, replicated-only); flood took ${flood.seconds} s, settle ${result.settle.seconds} s`,
  );
  lines.push('');
  const header = ['node', 'peak RSS flood', 'peak RSS settle', 'RSS end', 'queued end', 'hints end', 'pending end', 'peak queued', 'loop delay max', 'status ok/miss', 'view ok/miss'];
  const rows = result.nodes.map((node) => [
    `${node.address}${node.flooded ? ' *' : ''}`,
    formatBytes(node.peakRssBytesFlood),
    formatBytes(node.peakRssBytesSettle),
    formatBytes(node.rssBytesEnd),
    node.backlogEnd === null ? '?' : String(node.backlogEnd.queued),
    node.backlogEnd === null ? '?' : String(node.backlogEnd.hints),
    node.backlogEnd === null ? '?' : String(node.backlogEnd.pendingEarlyWrites),
    String(Math.max(node.peakBacklog.queued, node.peakBacklog.hints)),
    node.loopDelayMaxMsFlood === null ? '?' : `${Math.round(node.loopDelayMaxMsFlood)} ms`,
    `${node.statusAnswered}/${node.statusMissed}`,
    `${node.viewAnswered}/${node.viewMissed}`,
  ]);
  const widths = header.map((cell, i) => Math.max(cell.length, ...rows.map((row) => row[i]!.length)));
  for (const row of [header, ...rows]) lines.push(row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  '));
  lines.push(`(* flooded node; RSS from ${[...new Set(result.nodes.flatMap((n) => n.rssSources))].join(' and ') || 'nowhere'})`);
  lines.push('');
  lines.push(
    `requests ${flood.requests}: 2xx ${flood.status2xx}, 503 ${flood.status503} (with Retry-After ${flood.status503WithRetryAfter}, without ${flood.status503WithoutRetryAfter}), ` +
      `other ${formatCounts(flood.otherStatuses)}, no answer ${flood.noAnswer} (${formatCounts(flood.noAnswerByCode)})`,
  );
  if (Object.keys(flood.errorTexts).length > 0) lines.push(`error answers: ${formatCounts(flood.errorTexts)}`);
  lines.push(`acknowledged ${flood.ackedMBPerSecond} MB/s; PUT 2xx latency ${formatLatency(flood.putLatency2xx).replace(/, over 1 s.*$/, '')}`);
  lines.push(`GET /view at the flooded node, new connection, during the flood: ${formatLatency(result.viewLatency.flood)}`);
  lines.push(`GET /view at the flooded node, new connection, while settling:   ${formatLatency(result.viewLatency.settle)}`);
  if (result.viewMissesAtSeconds.length > 0) lines.push(`  new-connection misses at +s: ${result.viewMissesAtSeconds.join(', ')}`);
  lines.push(`GET /view at the flooded node, kept-alive, during the flood:     ${formatLatency(result.viewLatencyPooled.flood)}`);
  lines.push(`GET /view at the flooded node, kept-alive, while settling:       ${formatLatency(result.viewLatencyPooled.settle)}`);
  lines.push(
    `view changes: ${result.viewChanges.count} (removals ${result.viewChanges.removals}, additions ${result.viewChanges.additions}); ` +
      `view samples lacking a node: ${result.viewChanges.samplesMissingANode}`,
  );
  for (const event of result.viewChanges.events.slice(0, 10)) {
    lines.push(`  +${event.atSeconds} s at ${event.at}: ${event.removed.map((n) => `-${n}`).concat(event.added.map((n) => `+${n}`)).join(' ')}`);
  }
  lines.push(
    `settle: ${result.settle.drained ? `backlog drained and clocks equal after ${result.settle.drainedAfterSeconds} s` : 'backlog NOT drained (or clocks differ) at the end'}`,
  );
  const rb = result.readback;
  lines.push(
    `read-back: ${rb.keys} keys x ${config.nodes.length} nodes in ${rb.seconds} s: ${rb.ok ? 'OK' : `FAILED (${rb.failures} problems)`}; ` +
      `last acknowledged value ${rb.matched}, a later unanswered write ${rb.matchedUnacked}, keys never acknowledged ${rb.keysNeverAcked}`,
  );
  for (const problem of rb.problems) lines.push(`  ${problem.key} at ${problem.node ?? 'all nodes'}: ${problem.kind}: ${problem.detail}`);
  lines.push(
    `load generator: event-loop delay p99 ${result.loadGenerator.eventLoopDelayP99Ms} ms, max ${result.loadGenerator.eventLoopDelayMaxMs} ms; ` +
      `peak RSS ${formatBytes(result.loadGenerator.peakRssBytes)}`,
  );
  return lines.join('\n');
}
