import { Pool } from 'undici';
import { wasNeverSent } from '../client/errors.ts';
import type { NodeAddress } from '../core/types.ts';
import { JsonText, type PeerCallOptions, type PeerMethod, type PeerTransport } from './env.ts';
import { CONTROL_CONNECTIONS_PER_PEER, PEER_ANSWER_BYTES_MAX, PEER_KEEP_ALIVE_MS } from './limits.ts';

export interface PeerReply {
  status: number;
  body: unknown;
  /**
   * The body's text as received, when the caller asked for it (`rawReply`) and the transport has
   * it. With it, `body` is parsed only for a 503 (what the link table and failover look at), and is
   * undefined otherwise.
   */
  text?: string;
}

const JSON_CONTENT: Readonly<Record<string, string>> = Object.freeze({ 'content-type': 'application/json' });

/** Code of the error a peer call ends with when its timeout runs out (a request that may have been delivered). */
export const PEER_TIMEOUT_CODE = 'KVS_PEER_TIMEOUT';

/**
 * One request to a peer, as an undici dispatch handler: the answer's bytes are gathered as they
 * come (no stream, no abort signal), and one timer bounds the whole exchange, queueing in the pool
 * included. The timer is cleared when the exchange ends; when it fires, the call fails at once and
 * the request is aborted (or never written, when it was still queued).
 */
export class Exchange {
  private readonly peer: NodeAddress;
  private readonly raw: boolean;
  private readonly resolve: (reply: PeerReply) => void;
  private readonly reject: (error: unknown) => void;
  private readonly timer: NodeJS.Timeout;
  private controller: { abort(reason: Error): void } | null = null;
  private reason: Error | null = null;
  private settled = false;
  private status = 0;
  private chunks: Buffer[] = [];
  private size = 0;

  private readonly bytesMax: number;
  /** Given: a 200 answer's lines go to it as they arrive; `partial` holds a line not yet whole. */
  private readonly onLine: ((line: string) => void) | null;
  private partial: Buffer | null = null;

  constructor(
    peer: NodeAddress,
    timeoutMs: number,
    raw: boolean,
    resolve: (reply: PeerReply) => void,
    reject: (error: unknown) => void,
    bytesMax = PEER_ANSWER_BYTES_MAX,
    onLine?: (line: string) => void,
  ) {
    this.peer = peer;
    this.raw = raw;
    this.bytesMax = bytesMax;
    this.onLine = onLine ?? null;
    this.resolve = resolve;
    this.reject = reject;
    this.timer = setTimeout(() => this.timeout(timeoutMs), timeoutMs);
  }

  private timeout(timeoutMs: number): void {
    if (this.settled) return;
    const error = Object.assign(new Error(`no answer within ${timeoutMs} ms`), { name: 'TimeoutError', code: PEER_TIMEOUT_CODE });
    this.reason = error;
    this.fail(error);
    this.controller?.abort(error);
  }

  private fail(error: unknown): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    this.chunks = [];
    this.partial = null;
    this.reject(new PeerUnreachableError(this.peer, error));
  }

  onRequestStart(controller: { abort(reason: Error): void }): void {
    this.controller = controller;
    if (this.reason !== null) controller.abort(this.reason);
  }

  onResponseStart(_controller: unknown, statusCode: number): void {
    this.status = statusCode;
  }

  onResponseData(_controller: unknown, chunk: Buffer): void {
    if (this.settled) return;
    this.size += chunk.length;
    if (this.size > this.bytesMax) {
      // Gathered no further: memory is what is at stake.
      const error = new Error(`answer over ${this.bytesMax} bytes`);
      this.fail(error);
      this.controller?.abort(error);
      return;
    }
    if (this.onLine !== null && this.status === 200) {
      this.lines(chunk);
      return;
    }
    this.chunks.push(chunk);
  }

  /** Hands each whole line of `chunk` (after what was left of the last one) to `onLine`. */
  private lines(chunk: Buffer): void {
    let rest = this.partial === null ? chunk : Buffer.concat([this.partial, chunk]);
    for (let end = rest.indexOf(0x0a); end >= 0 && !this.settled; end = rest.indexOf(0x0a)) {
      (this.onLine as (line: string) => void)(rest.toString('utf8', 0, end));
      rest = rest.subarray(end + 1);
    }
    this.partial = rest.length > 0 ? rest : null;
  }

  onResponseEnd(): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    const chunks = this.partial === null ? this.chunks : [...this.chunks, this.partial];
    this.chunks = [];
    this.partial = null;
    const text = chunks.length === 0 ? '' : chunks.length === 1 ? (chunks[0] as Buffer).toString('utf8') : Buffer.concat(chunks, this.onLine === null ? this.size : undefined).toString('utf8');
    this.resolve(this.raw ? relayedReply(this.status, text) : { status: this.status, body: parseReply(text) });
  }

  onResponseError(_controller: unknown, error: Error): void {
    this.fail(error);
  }
}

/**
 * An answer to relay as its text (`rawReply`): parsed only for a 503, the one status the link
 * table and failover read.
 */
export function relayedReply(status: number, text: string): PeerReply {
  return status === 503 ? { status, body: parseReply(text), text } : { status, body: undefined, text };
}

/** A peer's answer body: parsed JSON, undefined when empty, a stand-in error when not JSON. */
export function parseReply(text: string): unknown {
  if (text.length === 0) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return { error: 'peer answered with a body that is not JSON' };
  }
}

export interface PeerClientOptions {
  connectTimeoutMs: number;
  /** Upper bound on any one request; callers may ask for less. */
  requestTimeoutMs: number;
  /** Keep-alive connections per peer for data (replication, syncs, forwarding). */
  connectionsPerPeer: number;
  /**
   * PEM certificate, key and cluster CA: speak HTTPS to peers, present this certificate (mutual
   * TLS) and accept a peer only when the CA signed its certificate. Absent: plain HTTP.
   */
  tls?: { cert: string | Buffer; key: string | Buffer; ca: string | Buffer };
  /** Bytes of one answer at most (default PEER_ANSWER_BYTES_MAX). */
  answerBytesMax?: number;
}

/** The peer could not be reached or did not answer in time: evidence that it may be down. */
export class PeerUnreachableError extends Error {
  readonly peer: NodeAddress;
  /**
   * False only when the request provably never reached the peer (no connection). Otherwise (a
   * timeout, a connection dropped mid-way) the peer may have acted on it, or may still, when the
   * network delivers it late: such a write must not be sent to another replica as well.
   */
  readonly maybeDelivered: boolean;
  constructor(peer: NodeAddress, cause: unknown) {
    super(`peer ${peer} unreachable: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.peer = peer;
    this.maybeDelivered = !wasNeverSent(cause);
  }
}

/** What a PeerUnreachableError's cause says (a timeout, a refused or reset connection), in one line. */
export function causeOf(error: PeerUnreachableError): string {
  const cause = error.cause;
  if (cause instanceof Error) return `${(cause as Error & { code?: string }).code ?? cause.name}: ${cause.message}`.slice(0, 200);
  return error.message.slice(0, 200);
}

/**
 * TLS options of a connection to a peer: present our certificate, and trust the peer when the
 * cluster CA signed its certificate (chain verification, `rejectUnauthorized`). Nodes are addressed
 * by host:port and their certificates need not name that host: the CA is the cluster's own, so any
 * certificate it signed is a node of this cluster, whatever its names.
 */
function peerTlsOptions(tls: NonNullable<PeerClientOptions['tls']>) {
  return {
    ca: tls.ca,
    cert: tls.cert,
    key: tls.key,
    rejectUnauthorized: true,
    checkServerIdentity: (): undefined => undefined,
  };
}

/**
 * HTTP (HTTPS with mutual TLS, given `tls`) to other nodes over keep-alive pools per peer (one per
 * lane), every request bounded in time.
 */
export class PeerClient implements PeerTransport {
  private readonly options: PeerClientOptions;
  private readonly pools = new Map<string, Pool>();
  private closed = false;

  constructor(options: PeerClientOptions) {
    this.options = options;
  }

  call(peer: NodeAddress, method: PeerMethod, path: string, body: unknown, options: PeerCallOptions = {}): Promise<PeerReply> {
    const timeoutMs = Math.min(options.timeoutMs ?? this.options.requestTimeoutMs, this.options.requestTimeoutMs);
    let pool: Pool;
    try {
      pool = this.pool(peer, options.lane ?? 'data');
    } catch (error) {
      return Promise.reject(new PeerUnreachableError(peer, error));
    }
    const headers = options.headers === undefined ? JSON_CONTENT : { 'content-type': 'application/json', ...options.headers };
    const text = body === undefined ? undefined : body instanceof JsonText ? body.text : JSON.stringify(body);
    return new Promise<PeerReply>((resolve, reject) => {
      const exchange = new Exchange(peer, timeoutMs, options.rawReply === true, resolve, reject, this.options.answerBytesMax, options.onLine);
      pool.dispatch(
        {
          method,
          path,
          headers,
          body: text,
          // undici closes the connection after a GET or DELETE with a body unless told not to;
          // our GETs carry causal metadata, so keep the connection.
          reset: false,
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
        },
        exchange,
      );
    });
  }

  private pool(peer: NodeAddress, lane: 'control' | 'data'): Pool {
    if (this.closed) throw new Error('peer client is closed');
    const name = `${lane} ${peer}`;
    let pool = this.pools.get(name);
    if (!pool) {
      const tls = this.options.tls;
      pool = new Pool(`${tls === undefined ? 'http' : 'https'}://${peer}`, {
        connections: lane === 'control' ? CONTROL_CONNECTIONS_PER_PEER : this.options.connectionsPerPeer,
        // With TLS the handshake is part of connecting, so it is bounded by the same timeout.
        connectTimeout: this.options.connectTimeoutMs,
        keepAliveTimeout: PEER_KEEP_ALIVE_MS,
        pipelining: 1,
        // Nodes speak HTTP/1.1 (node:https); never negotiate HTTP/2.
        allowH2: false,
        ...(tls === undefined ? {} : { connect: peerTlsOptions(tls) }),
      });
      this.pools.set(name, pool);
    }
    return pool;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.pools.values()].map((pool) => pool.destroy()));
    this.pools.clear();
  }
}
