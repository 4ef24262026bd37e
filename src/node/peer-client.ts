import { Pool } from 'undici';
import { wasNeverSent } from '../client/errors.ts';
import type { NodeAddress } from '../core/types.ts';
import { JsonText, type PeerCallOptions, type PeerMethod, type PeerTransport } from './env.ts';
import { CONTROL_CONNECTIONS_PER_PEER, PEER_KEEP_ALIVE_MS } from './limits.ts';

export interface PeerReply {
  status: number;
  body: unknown;
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

  async call(
    peer: NodeAddress,
    method: PeerMethod,
    path: string,
    body: unknown,
    options: PeerCallOptions = {},
  ): Promise<PeerReply> {
    const timeoutMs = Math.min(options.timeoutMs ?? this.options.requestTimeoutMs, this.options.requestTimeoutMs);
    const signal = AbortSignal.timeout(timeoutMs);
    try {
      const response = await this.pool(peer, options.lane ?? 'data').request({
        method,
        path,
        headers: { 'content-type': 'application/json', ...options.headers },
        body: body === undefined ? undefined : body instanceof JsonText ? body.text : JSON.stringify(body),
        signal,
        // undici closes the connection after a GET or DELETE with a body unless told not to;
        // our GETs carry causal metadata, so keep the connection.
        reset: false,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      const text = await response.body.text();
      let parsed: unknown = undefined;
      if (text.length > 0) {
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = { error: 'peer answered with a body that is not JSON' };
        }
      }
      return { status: response.statusCode, body: parsed };
    } catch (error) {
      throw new PeerUnreachableError(peer, error);
    }
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
