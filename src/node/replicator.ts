import type { Epoch, NodeAddress, ShardId, Version } from '../core/types.ts';
import type { Logger } from './logger.ts';
import { JsonText, sleep, type PeerTransport, type Timers } from './env.ts';
import { linkHeldRemaining } from './link-transport.ts';
import { PeerUnreachableError, causeOf } from './peer-client.ts';

export interface ReplicatorOptions {
  self: NodeAddress;
  batchMax: number;
  /** Approximate JSON bytes per batch; a batch always carries at least one version. */
  batchBytesMax: number;
  /** Versions queued (or held as hints) per peer; beyond, the oldest are dropped. */
  queueMax: number;
  /** The same bound in bytes (JSON): one peer's backlog never holds more. */
  queueBytesMax: number;
  timeoutMs: number;
  /**
   * A replication request to a peer starts at least this long after the one before it to that
   * peer (0: at once). Under load the versions written meanwhile go in one batch instead of one
   * request each; a write after a quiet spell goes at once.
   */
  paceMs?: number;
  /**
   * The pace instead, while the last batch to the peer carried more than one version: the peer is
   * written to steadily, and each request costs it a wake-up worth far more than a version, so
   * longer batches pay. A lone write brings the pace back to `paceMs`.
   */
  busyPaceMs?: number;
}

/** One version on its way to one peer; `seq` orders everything this node queued. */
export interface Hint {
  seq: number;
  epoch: Epoch;
  shard: ShardId;
  version: Version;
}

interface Item extends Hint {
  /** The version as JSON, made once for every peer it goes to. */
  json: string;
  bytes: number;
}

interface PeerQueue {
  items: Item[];
  /** Sum of the items' bytes. */
  bytes: number;
  sending: boolean;
  /** The peer did not answer: its items are hints, kept until it is back. */
  paused: boolean;
  /** Highest seq written to the hint log for this peer (0: none). */
  loggedUpTo: number;
  /** When the last batch to this peer was sent (on the replicator's timers; -Infinity: never). */
  lastSentMs: number;
  /** Versions in that batch (0: none yet). */
  lastBatchSize: number;
}

/**
 * Where hints survive a restart (the node's storage when it is durable). A peer's hints are always
 * a contiguous run of seqs: delivery and overflow both remove the oldest.
 */
export interface HintLog {
  add(peer: NodeAddress, hints: Hint[]): void;
  /** Every hint of `peer` up to and including `seq` is delivered or dropped. */
  drop(peer: NodeAddress, seq: number): void;
}

export interface ReplicatorStats {
  queued: number;
  queuedBytes: number;
  /** Versions held for peers that are down (hinted handoff). */
  hints: number;
  hintBytes: number;
  sent: number;
  dropped: number;
}

/**
 * Pushes acknowledged writes to shard peers: one queue and at most one request in flight per peer,
 * started at most once per `paceMs`, so batches form by themselves under load. When a peer does not answer, its queue stops and what
 * it holds becomes hints, delivered in the order they were accepted once the peer is back (hinted
 * handoff). A full queue drops its oldest versions; nothing is lost by that, because replicas
 * compare clocks in pings and pull what they lack, and anti-entropy compares digests.
 */
export class Replicator {
  private readonly options: ReplicatorOptions;
  private readonly peers: PeerTransport;
  private readonly log: Logger;
  private readonly onUnreachable: (peer: NodeAddress, what: string) => void;
  private readonly isUp: (peer: NodeAddress) => boolean;
  private readonly queues = new Map<NodeAddress, PeerQueue>();
  private readonly stats = { sent: 0, dropped: 0 };
  private readonly hintLog: HintLog;
  private readonly run: (task: string, work: () => Promise<unknown>) => void;
  private readonly timers: Timers | null;
  private nextSeq = 1;

  constructor(
    options: ReplicatorOptions,
    peers: PeerTransport,
    log: Logger,
    callbacks: {
      onUnreachable: (peer: NodeAddress, what: string) => void;
      isUp: (peer: NodeAddress) => boolean;
      hintLog: HintLog;
      /** Runs a send in the background (failures logged, never thrown). */
      run: (task: string, work: () => Promise<unknown>) => void;
      /** The clock and timers that pace requests (`paceMs`); without them, no pacing. */
      timers?: Timers;
    },
  ) {
    this.options = options;
    this.peers = peers;
    this.log = log;
    this.onUnreachable = callbacks.onUnreachable;
    this.isUp = callbacks.isUp;
    this.hintLog = callbacks.hintLog;
    this.run = callbacks.run;
    this.timers = callbacks.timers ?? null;
  }

  /** Hints found on disk at start: held (paused) until their peers answer. */
  restore(hints: ReadonlyMap<NodeAddress, Hint[]>): void {
    for (const [peer, list] of hints) {
      const items = [...list].sort((x, y) => x.seq - y.seq).map((h) => {
        const json = JSON.stringify(h.version);
        return { ...h, json, bytes: json.length };
      });
      if (items.length === 0) continue;
      const last = (items.at(-1) as Item).seq;
      const queue: PeerQueue = { items: [], bytes: 0, sending: false, paused: true, loggedUpTo: last, lastSentMs: -Infinity, lastBatchSize: 0 };
      this.queues.set(peer, queue);
      for (const item of items) this.push(peer, queue, item);
      this.nextSeq = Math.max(this.nextSeq, last + 1);
    }
  }

  enqueue(targets: NodeAddress[], epoch: Epoch, shard: ShardId, version: Version): void {
    const json = JSON.stringify(version);
    const bytes = json.length;
    for (const peer of targets) {
      let queue = this.queues.get(peer);
      // A peer outside the view gets its writes as hints, sent once it is back.
      if (!queue) this.queues.set(peer, (queue = { items: [], bytes: 0, sending: false, paused: !this.isUp(peer), loggedUpTo: 0, lastSentMs: -Infinity, lastBatchSize: 0 }));
      const item: Item = { seq: this.nextSeq++, epoch, shard, version, json, bytes };
      this.push(peer, queue, item);
      if (queue.paused) this.logHints(peer, queue, [item]);
      else if (!queue.sending) this.startPump(peer, queue);
    }
  }

  /**
   * Appends to a peer's queue, first dropping its oldest versions while it would hold more than
   * `queueMax` versions or `queueBytesMax` bytes (a version larger than the byte bound alone is kept
   * alone). What is dropped is repaired by pull sync and anti-entropy.
   */
  private push(peer: NodeAddress, queue: PeerQueue, item: Item): void {
    while (queue.items.length > 0 && (queue.items.length >= this.options.queueMax || queue.bytes + item.bytes > this.options.queueBytesMax)) {
      const oldest = queue.items.shift() as Item;
      queue.bytes -= oldest.bytes;
      if (oldest.seq <= queue.loggedUpTo) this.hintLog.drop(peer, oldest.seq);
      this.stats.dropped++;
    }
    queue.items.push(item);
    queue.bytes += item.bytes;
  }

  private startPump(peer: NodeAddress, queue: PeerQueue): void {
    this.run(`replicate to ${peer}`, () => this.pump(peer, queue));
  }

  /**
   * A peer left the view, or its link is held down: keep its queue as hints, send nothing until
   * `resume`. While a batch is out, the pump writes the hints when it has its answer (so the
   * batch, if it comes back, is logged in order with the rest).
   */
  pause(peer: NodeAddress): void {
    const queue = this.queues.get(peer);
    if (queue && !queue.paused) {
      queue.paused = true;
      if (!queue.sending) this.logHints(peer, queue, queue.items);
    }
  }

  /** What a paused queue holds is written to the hint log (once per item). */
  private logHints(peer: NodeAddress, queue: PeerQueue, items: Item[]): void {
    const fresh = items.filter((item) => item.seq > queue.loggedUpTo);
    if (fresh.length === 0) return;
    this.hintLog.add(peer, fresh.map(({ seq, epoch, shard, version }) => ({ seq, epoch, shard, version })));
    queue.loggedUpTo = (fresh.at(-1) as Item).seq;
  }

  /**
   * The peer is no member any more (dropped, never having joined): its queue and its hints go, and
   * count as dropped. A batch out to it when this is called may still come back as hints (bounded).
   */
  forget(peer: NodeAddress): void {
    const queue = this.queues.get(peer);
    if (!queue) return;
    for (const item of queue.items) if (item.seq <= queue.loggedUpTo) this.hintLog.drop(peer, item.seq);
    this.stats.dropped += queue.items.length;
    queue.items.length = 0;
    queue.bytes = 0;
    queue.paused = true;
    if (!queue.sending) this.queues.delete(peer);
  }

  /** A peer is back in the view: deliver its hints. */
  resume(peer: NodeAddress): void {
    const queue = this.queues.get(peer);
    if (!queue) return;
    queue.paused = false;
    if (!queue.sending && queue.items.length > 0) this.startPump(peer, queue);
  }

  /** Versions queued for `peer` and being sent (0 when its queue is paused: those are hints). */
  liveQueued(peer: NodeAddress): number {
    const queue = this.queues.get(peer);
    return queue === undefined || queue.paused ? 0 : queue.items.length + (queue.sending ? 1 : 0);
  }

  /** Bytes queued for the peer with the most, among peers that are up (hints for peers that are down excluded). */
  liveBacklogBytesMax(): number {
    let most = 0;
    for (const queue of this.queues.values()) if (!queue.paused && queue.bytes > most) most = queue.bytes;
    return most;
  }

  snapshot(): ReplicatorStats {
    const out = { queued: 0, queuedBytes: 0, hints: 0, hintBytes: 0, ...this.stats };
    for (const queue of this.queues.values()) {
      if (queue.paused) {
        out.hints += queue.items.length;
        out.hintBytes += queue.bytes;
      } else {
        out.queued += queue.items.length;
        out.queuedBytes += queue.bytes;
      }
    }
    return out;
  }

  /** Each peer's backlog: versions and bytes queued for it, held as hints while it is down (`hints`). */
  backlogs(): Array<{ peer: NodeAddress; hints: boolean; versions: number; bytes: number }> {
    return [...this.queues].map(([peer, queue]) => ({ peer, hints: queue.paused, versions: queue.items.length, bytes: queue.bytes }));
  }

  private async pump(peer: NodeAddress, queue: PeerQueue): Promise<void> {
    queue.sending = true;
    try {
      while (queue.items.length > 0 && !queue.paused) {
        const waitMs = this.paceWait(queue);
        // What is written meanwhile joins the batch. Paused meanwhile: the finally below keeps
        // the queue as hints.
        if (waitMs > 0) await sleep(this.timers as Timers, waitMs);
        if (queue.items.length === 0 || queue.paused) break;
        if (!this.isUp(peer)) {
          queue.paused = true;
          break;
        }
        if (this.timers !== null) queue.lastSentMs = this.timers.now();
        const batch = this.takeBatch(queue);
        queue.lastBatchSize = batch.length;
        const first = batch[0] as Item;
        let delivered = false;
        let failure = 'replicate: unreachable';
        try {
          const reply = await this.peers.call(
            peer,
            'POST',
            '/internal/replicate',
            new JsonText(
              `{"from":${JSON.stringify(this.options.self)},"epoch":${first.epoch},"shard":${JSON.stringify(first.shard)},` +
                `"versions":[${batch.map((i) => i.json).join(',')}]}`,
            ),
            { timeoutMs: this.options.timeoutMs },
          );
          delivered = true;
          if (reply.status === 200) this.stats.sent += batch.length;
          else if (linkHeldRemaining(reply) !== undefined) {
            // The peer holds the link down after a failure: these wait as hints (the transport
            // has held the link at this end too, and `resume` sends them when it is released).
            queue.items.unshift(...batch);
            for (const item of batch) queue.bytes += item.bytes;
            queue.paused = true;
            continue;
          } else {
            // Another epoch or shard at the peer: these versions are not for it any more.
            this.stats.dropped += batch.length;
            this.log.debug({ peer, status: reply.status, body: reply.body }, 'replication batch refused');
          }
        } catch (error) {
          if (!(error instanceof PeerUnreachableError)) throw error;
          failure = `replicate: ${causeOf(error)}`;
        }
        if (!delivered) {
          // Keep the batch, in order, as hints for when the peer is back.
          queue.items.unshift(...batch);
          for (const item of batch) queue.bytes += item.bytes;
          queue.paused = true;
          this.logHints(peer, queue, queue.items);
          this.onUnreachable(peer, failure);
        } else {
          const last = (batch.at(-1) as Item).seq;
          if (batch[0] !== undefined && batch[0].seq <= queue.loggedUpTo) this.hintLog.drop(peer, Math.min(last, queue.loggedUpTo));
        }
      }
    } finally {
      queue.sending = false;
      if (queue.paused) this.logHints(peer, queue, queue.items);
    }
  }

  /** How long the next batch to a peer waits for its pace (0: it goes now). */
  private paceWait(queue: PeerQueue): number {
    const busy = queue.lastBatchSize > 1 && this.options.busyPaceMs !== undefined;
    const paceMs = (busy ? this.options.busyPaceMs : this.options.paceMs) ?? 0;
    if (this.timers === null || paceMs <= 0) return 0;
    return Math.max(0, queue.lastSentMs + paceMs - this.timers.now());
  }

  /** The longest prefix of one epoch and shard within the batch bounds. */
  private takeBatch(queue: PeerQueue): Item[] {
    const first = queue.items[0] as Item;
    let count = 0;
    let bytes = 0;
    for (const item of queue.items) {
      if (item.epoch !== first.epoch || item.shard !== first.shard) break;
      if (count > 0 && (count >= this.options.batchMax || bytes + item.bytes > this.options.batchBytesMax)) break;
      count++;
      bytes += item.bytes;
    }
    queue.bytes -= bytes;
    return queue.items.splice(0, count);
  }
}
