// The simulated network between nodes and clients. A request is a message to the target and its
// answer a message back; each takes a random latency (so messages overtake each other), may be
// lost, and an internal one may arrive twice. A cut link (a partition, one way or both) holds what
// is sent over it, as TCP would retransmit it, and delivers it if the cut heals soon enough; a new
// connection over a cut link fails to connect. A crashed target refuses connections. The caller
// sees what a real one would: an answer, or PeerUnreachableError after its timeout, marked
// `maybeDelivered` unless the request provably never left.
//
// For scripted scenarios, a trap on a link (`hold`) captures the next message(s) sent over it, a
// request or an answer, whatever the link's state: the sender hears nothing until a script delivers
// the message (`deliverCaptured`, at any later time, past the sender's timeout if it likes) or drops
// it (`dropCaptured`). What the target answered a delivered request is kept on the captured message.

import type { NodeAddress } from '../../src/core/types.ts';
import { JsonText } from '../../src/node/env.ts';
import type { HttpReply, HttpRequest } from '../../src/node/http-server.ts';
import { KV_BATCH_PATH } from '../../src/node/kv-batch.ts';
import { PeerUnreachableError, type PeerReply } from '../../src/node/peer-client.ts';
import type { Prng } from '../lab/prng.ts';
import type { Owner, Scheduler } from './scheduler.ts';

export interface NetworkSettings {
  /** One-way latency of a message, uniform in [min, max] ms. */
  latencyMs: [number, number];
  /** Chance that a message is lost (its connection breaks; the caller times out). */
  lossRate: number;
  /** Chance that an internal request (node to node, /internal/...) is delivered a second time. */
  duplicateRate: number;
  /** How long a message sent over a cut link is held for delivery after the heal. */
  holdMsMax: number;
  /** Time a connection attempt over a cut link takes to fail. */
  connectTimeoutMs: number;
}

/** A node process as the network sees it: alive while its owner is. */
export interface Endpoint {
  owner: Owner;
  handle(request: HttpRequest): Promise<HttpReply>;
  /** A request handler threw: the real server would answer 500 and log it; the simulator reports it. */
  onError(error: unknown, request: HttpRequest): void;
}

/** Traps on a link: the next `count` messages whose description contains `match` are captured. */
interface Trap {
  from: string;
  to: string;
  /** Messages still to capture (Infinity: until `unhold`). */
  count: number;
  /** A part of the message's description ("PUT /kvs/k", "reply 200 to GET /internal/ping"); '' matches any. */
  match: string;
}

/** A message a trap captured. */
export interface CapturedMessage {
  /** 1, 2, ... in the order of capture. */
  id: number;
  from: string;
  to: string;
  /** "PUT /kvs/k" for a request, "reply 503 to PUT /kvs/k" for an answer. */
  what: string;
  state: 'held' | 'delivered' | 'dropped';
  /** A delivered request's answer from its target (its sender may have given up on it long before). */
  reply?: { status: number; body: unknown };
  deliver: () => void;
}

interface Held {
  from: string;
  to: string;
  expiresMs: number;
  deliver: () => void;
}

export interface NetworkStats {
  messages: number;
  lost: number;
  duplicated: number;
  held: number;
  refused: number;
}

export class SimNetwork {
  readonly #scheduler: Scheduler;
  readonly #prng: Prng;
  readonly settings: NetworkSettings;
  readonly #endpoints = new Map<string, Endpoint>();
  /** Cut links, "from>to". */
  readonly #cut = new Set<string>();
  /** Extra latency per link, "from>to". */
  readonly #slow = new Map<string, number>();
  #held: Held[] = [];
  #traps: Trap[] = [];
  readonly #captured: CapturedMessage[] = [];
  readonly stats: NetworkStats = { messages: 0, lost: 0, duplicated: 0, held: 0, refused: 0 };

  constructor(scheduler: Scheduler, prng: Prng, settings: NetworkSettings) {
    this.#scheduler = scheduler;
    this.#prng = prng;
    this.settings = settings;
  }

  register(address: string, endpoint: Endpoint): void {
    this.#endpoints.set(address, endpoint);
  }

  unregister(address: string): void {
    this.#endpoints.delete(address);
  }

  cut(from: string, to: string): void {
    this.#cut.add(`${from}>${to}`);
  }

  /** Cuts both ways between every member of `a` and every member of `b`. */
  partition(a: readonly string[], b: readonly string[]): void {
    for (const x of a) {
      for (const y of b) {
        this.cut(x, y);
        this.cut(y, x);
      }
    }
  }

  /** Heals one direction of one link; what it held within the window is delivered. */
  uncut(from: string, to: string): void {
    this.#cut.delete(`${from}>${to}`);
    this.#slow.delete(`${from}>${to}`);
    const now = this.#scheduler.now();
    const kept: Held[] = [];
    for (const message of this.#held) {
      if (message.from !== from || message.to !== to) kept.push(message);
      else if (message.expiresMs >= now) this.#scheduler.after(this.#latency(message.from, message.to), message.deliver);
    }
    this.#held = kept;
  }

  /** Cut links, "from>to", sorted. */
  cuts(): string[] {
    return [...this.#cut].sort();
  }

  /** Captures the next `count` messages sent from `from` to `to` whose description contains `match` (see `CapturedMessage`). */
  hold(from: string, to: string, count = 1, match = ''): void {
    this.#traps.push({ from, to, count, match });
  }

  /** Removes the traps on one link (both arguments given) or on every link; what they captured stays captured. */
  unhold(from?: string, to?: string): void {
    this.#traps = from === undefined ? [] : this.#traps.filter((trap) => trap.from !== from || trap.to !== to);
  }

  /** The traps still armed, with the messages each still captures. */
  traps(): { from: string; to: string; count: number; match: string }[] {
    return this.#traps.map((trap) => ({ ...trap }));
  }

  /** Every message a trap captured so far, in order. */
  captured(): readonly CapturedMessage[] {
    return this.#captured;
  }

  /** Sends a held captured message on (it arrives after a latency, whatever the link's state). */
  deliverCaptured(id: number): CapturedMessage {
    const message = this.#capturedById(id);
    message.state = 'delivered';
    const [min, max] = this.settings.latencyMs;
    this.#scheduler.after(min + this.#prng.next() * (max - min), message.deliver);
    return message;
  }

  /** Loses a held captured message for good. */
  dropCaptured(id: number): CapturedMessage {
    const message = this.#capturedById(id);
    message.state = 'dropped';
    return message;
  }

  #capturedById(id: number): CapturedMessage {
    const message = this.#captured.find((m) => m.id === id);
    if (message === undefined) throw new Error(`no captured message #${id}`);
    if (message.state !== 'held') throw new Error(`message #${id} was ${message.state} already`);
    return message;
  }

  /** The captured message if a trap on the link takes it. */
  #trap(from: string, to: string, what: string, deliver: () => void): CapturedMessage | null {
    const trap = this.#traps.find((t) => t.from === from && t.to === to && what.includes(t.match));
    if (trap === undefined) return null;
    if (--trap.count <= 0) this.#traps = this.#traps.filter((t) => t !== trap);
    const message: CapturedMessage = { id: this.#captured.length + 1, from, to, what, state: 'held', deliver };
    this.#captured.push(message);
    return message;
  }

  slow(from: string, to: string, extraMs: number): void {
    this.#slow.set(`${from}>${to}`, extraMs);
  }

  get faulty(): boolean {
    return this.#cut.size > 0 || this.#slow.size > 0;
  }

  /** Every link whole and fast again; held messages still within their window are delivered. */
  heal(): void {
    this.#cut.clear();
    this.#slow.clear();
    const now = this.#scheduler.now();
    const held = this.#held;
    this.#held = [];
    for (const message of held) {
      if (message.expiresMs >= now) this.#scheduler.after(this.#latency(message.from, message.to), message.deliver);
    }
  }

  #isCut(from: string, to: string): boolean {
    return this.#cut.has(`${from}>${to}`);
  }

  #latency(from: string, to: string): number {
    const [min, max] = this.settings.latencyMs;
    return min + this.#prng.next() * (max - min) + (this.#slow.get(`${from}>${to}`) ?? 0);
  }

  /**
   * Sends one message: `deliver` runs at the far end after a latency, unless the message is lost or
   * held by a cut link, or captured by a trap (returned then).
   */
  #send(from: string, to: string, what: string, deliver: () => void): CapturedMessage | null {
    this.stats.messages++;
    const captured = this.#traps.length === 0 ? null : this.#trap(from, to, what, deliver);
    if (captured !== null) return captured;
    if (this.#prng.next() < this.settings.lossRate) {
      this.stats.lost++;
      return null;
    }
    const arrive = (): void => {
      if (this.#isCut(from, to)) {
        this.stats.held++;
        this.#held.push({ from, to, expiresMs: this.#scheduler.now() + this.#prng.next() * this.settings.holdMsMax, deliver });
        return;
      }
      deliver();
    };
    this.#scheduler.after(this.#latency(from, to), arrive);
    return null;
  }

  /**
   * A request from `from` (owned by `caller`: a crashed caller hears nothing) to the node at `to`.
   * Resolves with its answer or rejects with PeerUnreachableError after `timeoutMs`.
   */
  /** `from` is a node's address (its IP is the request's source) or a client's name. */
  call(caller: Owner, from: string, to: NodeAddress, request: Omit<HttpRequest, 'remoteAddress'>, timeoutMs: number): Promise<PeerReply> {
    return new Promise<PeerReply>((resolve, reject) => {
      let settled = false;
      const finish = (outcome: () => void): void => {
        if (settled || !caller.alive) return;
        settled = true;
        this.#scheduler.cancel(timer);
        outcome();
      };
      const fail = (code: string): void => finish(() => reject(new PeerUnreachableError(to, Object.assign(new Error(code), { code }))));
      const timer = this.#scheduler.after(timeoutMs, () => fail('UND_ERR_HEADERS_TIMEOUT'), caller);

      const target = this.#endpoints.get(to);
      if (target === undefined) {
        // Nothing listens there: refused at once (a round trip).
        this.stats.refused++;
        this.#scheduler.after(2 * this.#latency(from, to), () => fail('ECONNREFUSED'), caller);
        return;
      }
      if (this.#isCut(from, to) && this.#prng.next() < 0.5) {
        // A new connection over a cut link: the connect times out; nothing was sent.
        this.#scheduler.after(Math.min(this.settings.connectTimeoutMs, timeoutMs), () => fail('UND_ERR_CONNECT_TIMEOUT'), caller);
        return;
      }
      const sent = request.body;
      const rawBody = sent === undefined ? undefined : sent instanceof JsonText ? sent.text : JSON.stringify(sent);
      const body = rawBody === undefined ? undefined : JSON.parse(rawBody);
      // Internal messages may arrive twice (the store's own are idempotent); a batch of forwarded
      // client requests is as much a client's request as one forwarded alone, which never does.
      const copies = request.path.startsWith('/internal/') && request.path !== KV_BATCH_PATH && this.#prng.next() < this.settings.duplicateRate ? 2 : 1;
      if (copies === 2) this.stats.duplicated++;
      const what = `${request.method} ${request.path}`;
      for (let copy = 0; copy < copies; copy++) {
        const captured = this.#send(from, to, what, () => {
          // The target crashed (or was replaced by a restart) since: the connection breaks.
          if (!target.owner.alive || this.#endpoints.get(to) !== target) {
            if (copy === 0) fail('ECONNRESET');
            return;
          }
          const delivered: HttpRequest = {
            ...request,
            headers: { ...request.headers },
            body: copy === 0 ? body : structuredClone(body),
            ...(rawBody === undefined ? {} : { rawBody }),
            remoteAddress: from.includes(':') ? from.slice(0, from.lastIndexOf(':')) : from,
          };
          target
            .handle(delivered)
            .catch((error: unknown): HttpReply => {
              target.onError(error, delivered);
              return { status: 500, body: { error: 'Internal error' } };
            })
            .then(async (reply) => {
              // A streamed answer arrives whole, once its last part is written.
              let streamed: string | undefined;
              if (reply.stream !== undefined) {
                streamed = '';
                await reply.stream((text) => (streamed += text));
              }
              const answer = streamed ?? (reply.body === undefined ? undefined : JSON.parse(JSON.stringify(reply.body)));
              if (captured !== null) captured.reply = { status: reply.status, body: answer };
              if (copy !== 0 || !target.owner.alive) return;
              this.#send(to, from, `reply ${reply.status} to ${what}`, () => finish(() => resolve({ status: reply.status, body: answer })));
            });
        });
      }
    });
  }
}
