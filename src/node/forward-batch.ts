// The sending end of forwarding: requests for one member gathered over one turn of the event loop
// go to it in one POST /internal/kv-batch (kv-batch.ts) instead of one request each, which on a busy
// node saves most of what relaying costs (a write and a read on each side, headers to parse, a
// signature to make and check). A request alone in its turn goes as it always has, on its own.
//
// Each request keeps its own timeout and its own outcome: its answer line resolves it as soon as
// it comes; a request the answer does not name, or one whose time runs out first, fails as a
// request to an unreachable member would (it may have been delivered).

import type { KvMethod } from '../core/node-core.ts';
import type { NodeAddress } from '../core/types.ts';
import { JsonText, type PeerTransport, type TimerHandle, type Timers } from './env.ts';
import { DEADLINE_HEADER, HOPS_HEADER } from './headers.ts';
import { encodeBatch, encodeItem, KV_BATCH_PATH, parseLine } from './kv-batch.ts';
import { PEER_TIMEOUT_CODE, PeerUnreachableError, relayedReply, type PeerReply } from './peer-client.ts';

export interface ForwardRequest {
  method: KvMethod;
  path: string;
  /** The client's body: its text as it came (JsonText), parsed, or undefined when there was none. */
  body: unknown;
  /** The hop count the member sees (the sender's plus one). */
  hops: number;
  deadlineMs: number;
  timeoutMs: number;
}

export interface ForwardBatchOptions {
  /** Requests in one batch at most; 1 sends every request on its own. */
  itemsMax: number;
  /** Bytes of a batch's body at most; a request larger than this goes on its own. */
  bytesMax: number;
}

/** What an operator sees of batching (GET /metrics). */
export interface ForwardBatchCounts {
  /** Forwarded requests sent on their own. */
  single: number;
  /** Batches sent, and the forwarded requests they carried. */
  batches: number;
  batched: number;
}

interface Pending {
  request: ForwardRequest;
  /** The item's JSON text in a batch. */
  item: string;
  resolve: (reply: PeerReply) => void;
  reject: (error: unknown) => void;
  timer: TimerHandle | null;
  settled: boolean;
}

interface Queue {
  pending: Pending[];
  bytes: number;
}

export class ForwardBatcher {
  private readonly peers: PeerTransport;
  private readonly timers: Timers;
  /** Runs a callback after the current turn's I/O (setImmediate; the simulator's own turn). */
  private readonly soon: (callback: () => void) => void;
  private readonly options: ForwardBatchOptions;
  private readonly queues = new Map<NodeAddress, Queue>();
  readonly counts: ForwardBatchCounts = { single: 0, batches: 0, batched: 0 };

  constructor(peers: PeerTransport, timers: Timers, soon: (callback: () => void) => void, options: ForwardBatchOptions) {
    if (!Number.isInteger(options.itemsMax) || options.itemsMax < 1) throw new RangeError('itemsMax must be at least 1');
    this.peers = peers;
    this.timers = timers;
    this.soon = soon;
    this.options = options;
  }

  /** Relays one request to `target`: its answer (text as received), or PeerUnreachableError. */
  call(target: NodeAddress, request: ForwardRequest): Promise<PeerReply> {
    if (this.options.itemsMax === 1) return this.single(target, request);
    const bodyText = request.body === undefined ? undefined : request.body instanceof JsonText ? request.body.text : JSON.stringify(request.body);
    const item = encodeItem(request.method, request.path, request.hops, request.deadlineMs, bodyText);
    if (item.length > this.options.bytesMax) return this.single(target, request);
    return new Promise<PeerReply>((resolve, reject) => {
      let queue = this.queues.get(target);
      if (queue !== undefined && queue.bytes + item.length > this.options.bytesMax) {
        this.flush(target);
        queue = undefined;
      }
      if (queue === undefined) {
        queue = { pending: [], bytes: 0 };
        this.queues.set(target, queue);
        const started = queue;
        this.soon(() => {
          if (this.queues.get(target) === started) this.flush(target);
        });
      }
      queue.pending.push({ request, item, resolve, reject, timer: null, settled: false });
      queue.bytes += item.length + 1;
      if (queue.pending.length >= this.options.itemsMax) this.flush(target);
    });
  }

  private flush(target: NodeAddress): void {
    const queue = this.queues.get(target);
    if (queue === undefined) return;
    this.queues.delete(target);
    const pending = queue.pending;
    if (pending.length === 1) {
      const only = pending[0] as Pending;
      this.single(target, only.request).then(only.resolve, only.reject);
      return;
    }
    this.counts.batches++;
    this.counts.batched += pending.length;
    let timeoutMs = 1;
    for (const one of pending) {
      timeoutMs = Math.max(timeoutMs, one.request.timeoutMs);
      // Each request is bounded by its own time, whatever the batch's.
      one.timer = this.timers.setTimeout(() => {
        const cause = Object.assign(new Error(`no answer within ${one.request.timeoutMs} ms`), { name: 'TimeoutError', code: PEER_TIMEOUT_CODE });
        settle(one, () => one.reject(new PeerUnreachableError(target, cause)));
      }, one.request.timeoutMs);
    }
    const settle = (one: Pending, outcome: () => void): void => {
      if (one.settled) return;
      one.settled = true;
      this.timers.clearTimeout(one.timer);
      outcome();
    };
    const onLine = (line: string): void => {
      const parsed = parseLine(line);
      const one = parsed === undefined ? undefined : pending[parsed.index];
      if (parsed === undefined || one === undefined) return;
      settle(one, () => one.resolve(relayedReply(parsed.status, parsed.text)));
    };
    const body = new JsonText(encodeBatch(pending.map((one) => one.item)));
    this.peers.call(target, 'POST', KV_BATCH_PATH, body, { timeoutMs, rawReply: true, onLine }).then(
      (reply) => {
        if (reply.status === 200) {
          // A transport that gives the whole answer at the end (the simulator's) has every line here.
          const rest = reply.text ?? (typeof reply.body === 'string' ? reply.body : '');
          for (const line of rest.split('\n')) if (line.length > 0) onLine(line);
          const unanswered = new Error('the member\'s batch answer did not include this request');
          for (const one of pending) settle(one, () => one.reject(new PeerUnreachableError(target, unanswered)));
        } else if (reply.status === 404) {
          // A member that does not serve batches (an older version, in a rolling upgrade): one by one.
          for (const one of pending) settle(one, () => this.single(target, one.request).then(one.resolve, one.reject));
        } else {
          // Refused whole (a link held down, the member overloaded): each request has that answer.
          for (const one of pending) settle(one, () => one.resolve(reply));
        }
      },
      (error: unknown) => {
        for (const one of pending) settle(one, () => one.reject(error));
      },
    );
  }

  private single(target: NodeAddress, request: ForwardRequest): Promise<PeerReply> {
    this.counts.single++;
    return this.peers.call(target, request.method, request.path, request.body, {
      headers: { [HOPS_HEADER]: String(request.hops), [DEADLINE_HEADER]: String(request.deadlineMs) },
      timeoutMs: request.timeoutMs,
      rawReply: true,
    });
  }
}
