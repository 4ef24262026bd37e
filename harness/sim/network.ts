// The simulated network between nodes and clients. A request is a message to the target and its
// answer a message back; each takes a random latency (so messages overtake each other), may be
// lost, and an internal one may arrive twice. A cut link (a partition, one way or both) holds what
// is sent over it, as TCP would retransmit it, and delivers it if the cut heals soon enough; a new
// connection over a cut link fails to connect. A crashed target refuses connections. The caller
// sees what a real one would: an answer, or PeerUnreachableError after its timeout, marked
// `maybeDelivered` unless the request provably never left.

import { JsonText } from '../../src/node/env.ts';
import type { HttpReply, HttpRequest } from '../../src/node/http-server.ts';
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

  /** Sends one message: `deliver` runs at the far end after a latency, unless the message is lost or held by a cut link. */
  #send(from: string, to: string, deliver: () => void): void {
    this.stats.messages++;
    if (this.#prng.next() < this.settings.lossRate) {
      this.stats.lost++;
      return;
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
  }

  /**
   * A request from `from` (owned by `caller`: a crashed caller hears nothing) to the node at `to`.
   * Resolves with its answer or rejects with PeerUnreachableError after `timeoutMs`.
   */
  /** `from` is a node's address (its IP is the request's source) or a client's name. */
  call(caller: Owner, from: string, to: string, request: Omit<HttpRequest, 'remoteAddress'>, timeoutMs: number): Promise<PeerReply> {
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
      const copies = request.path.startsWith('/internal/') && this.#prng.next() < this.settings.duplicateRate ? 2 : 1;
      if (copies === 2) this.stats.duplicated++;
      for (let copy = 0; copy < copies; copy++) {
        this.#send(from, to, () => {
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
            .then((reply) => {
              if (copy !== 0 || !target.owner.alive) return;
              const answer = reply.body === undefined ? undefined : JSON.parse(JSON.stringify(reply.body));
              this.#send(to, from, () => finish(() => resolve({ status: reply.status, body: answer })));
            });
        });
      }
    });
  }
}
