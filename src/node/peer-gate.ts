// Who a request is from: a node of this store (checked by authenticator, source address or
// certificate), a client, or an operator allowed to change the topology (ADMIN_TOKEN). Also the
// seal on causal metadata given to clients, with a cluster secret.

import { createHash, timingSafeEqual } from 'node:crypto';
import { isNodeAddress } from '../core/address.ts';
import type { NodeAddress } from '../core/types.ts';
import type { NodeContext } from './context.ts';
import { DEADLINE_HEADER, DOWN_REPORT_HEADER, HOPS_HEADER, PEER_HEADER_PREFIX } from './headers.ts';
import type { HttpReply, HttpRequest } from './http-server.ts';
import { FORWARD_HOPS_MAX } from './limits.ts';
import { FROM_HEADER, INCARNATION_HEADER, isIncarnation } from './link-transport.ts';
import { AUTH_HEADER, type PeerAuth, sealMetadata, unsealMetadata } from './peer-auth.ts';
import { hostOf, normalizeIp, type PeerNames } from './peer-names.ts';
import { BadRequest, json } from './replies.ts';

/** A request that claims to come from a node (it carries x-kvs-auth) but whose authenticator does not verify. */
export class Unauthorized extends Error {}

/** What the node-to-node headers of a request say (defaults when absent). */
export interface PeerHeaders {
  hops: number;
  deadlineMs: number | null;
  downReport: NodeAddress | null;
  from: NodeAddress | null;
  incarnation: string | null;
}

/** What a request that is not a node's (or names nothing) counts as. */
const NO_PEER_HEADERS: Readonly<PeerHeaders> = { hops: 0, deadlineMs: null, downReport: null, from: null, incarnation: null };

export function hasPeerHeader(headers: HttpRequest['headers']): boolean {
  for (const name in headers) if (name.startsWith(PEER_HEADER_PREFIX)) return true;
  return false;
}

/**
 * The nodes whose addresses a request may come from without a cluster secret: those in VIEW, the
 * view, the nodes probed and the shard map's members. Nodes only learned of from pings do not count
 * (anyone can send a ping).
 */
export function knownNodes(ctx: Pick<NodeContext, 'config' | 'core'>): NodeAddress[] {
  const core = ctx.core;
  return [...ctx.config.view, ...core.probeTargets(), ...Object.values(core.map.shards).flat()];
}

export class PeerGate {
  private readonly ctx: NodeContext;
  /** The IPs of known nodes' host names (without a cluster secret; null with one). */
  private readonly names: PeerNames | null;

  constructor(ctx: NodeContext, names: PeerNames | null = null) {
    this.ctx = ctx;
    this.names = names;
  }

  /**
   * Whether a request comes from a node of this store. With CLUSTER_SECRET: it carries a valid
   * authenticator (an invalid one is refused outright, 401). Without: it comes from a node's IP
   * (or PEER_SOURCE_IPS). With TLS, also: its client certificate was signed by the cluster's CA.
   */
  fromPeer(request: HttpRequest): boolean {
    if (this.ctx.config.tls !== null && request.peerCertified !== true) return false;
    if (this.ctx.auth === null) return this.isNodeSource(request.remoteAddress);
    const given = request.headers[AUTH_HEADER];
    if (given === undefined) return false;
    const result = this.ctx.auth.verify(given, { method: request.method, path: request.path, body: request.rawBody ?? '', headers: request.headers });
    if (!result.ok) throw new Unauthorized(result.reason);
    return true;
  }

  /**
   * The node-to-node headers of a request, checked: malformed ones get 400; well-formed ones count
   * only on a request from a node (`fromPeer`), and are ignored on anyone else's. Other x-kvs-*
   * names are ignored.
   */
  peerHeaders(request: HttpRequest, trusted: boolean): PeerHeaders {
    const out: PeerHeaders = { ...NO_PEER_HEADERS };
    const headers = request.headers;
    if (!hasPeerHeader(headers)) return out;
    const hops = headers[HOPS_HEADER];
    const deadline = headers[DEADLINE_HEADER];
    const downReport = headers[DOWN_REPORT_HEADER];
    const from = headers[FROM_HEADER];
    const incarnation = headers[INCARNATION_HEADER];
    if (hops !== undefined) {
      if (typeof hops !== 'string' || !/^[0-9]$/.test(hops) || Number(hops) > FORWARD_HOPS_MAX) {
        throw new BadRequest(`Header ${HOPS_HEADER} must be a whole number from 0 to ${FORWARD_HOPS_MAX}`);
      }
      out.hops = Number(hops);
    }
    if (deadline !== undefined) {
      if (typeof deadline !== 'string' || !/^[1-9][0-9]{0,15}$/.test(deadline) || !Number.isSafeInteger(Number(deadline))) {
        throw new BadRequest(`Header ${DEADLINE_HEADER} must be a time in milliseconds since 1970`);
      }
      out.deadlineMs = Number(deadline);
    }
    if (downReport !== undefined) {
      if (!isNodeAddress(downReport)) throw new BadRequest(`Header ${DOWN_REPORT_HEADER} must be a node address host:port`);
      out.downReport = downReport;
    }
    if (from !== undefined) {
      if (!isNodeAddress(from)) throw new BadRequest(`Header ${FROM_HEADER} must be a node address host:port`);
      out.from = from;
    }
    if (incarnation !== undefined) {
      if (!isIncarnation(incarnation)) throw new BadRequest(`Header ${INCARNATION_HEADER} must be 1 to 32 digits or lower-case letters`);
      out.incarnation = incarnation;
    }
    if (!trusted) {
      if (hops !== undefined || deadline !== undefined || downReport !== undefined || from !== undefined) {
        const suppressed = this.ctx.refusals.take('peer headers from a client');
        if (suppressed !== null) this.ctx.log.warn({ remoteAddress: request.remoteAddress, path: request.path, suppressed }, `${PEER_HEADER_PREFIX}* headers on a request not from a node: ignored`);
      }
      return { ...NO_PEER_HEADERS };
    }
    return out;
  }

  /**
   * Whether a connection from `ip` may come from a node: the IP of a node in VIEW, the view or the
   * shard map (`knownNodes`), or one of PEER_SOURCE_IPS. A node named by host name matches the IPs
   * its name resolved to (`PeerNames`, looked up in the background: never awaited here).
   */
  private isNodeSource(ip: string): boolean {
    const source = normalizeIp(ip);
    if (this.ctx.config.peerSourceIps.some((allowed) => normalizeIp(allowed) === source)) return true;
    if (knownNodes(this.ctx).some((node) => hostOf(node) === source)) return true;
    return this.names?.isNodeIp(source) ?? false;
  }

  /** A peer route asked by someone who is not a node of this store: nothing read, nothing changed. */
  refusePeerRoute(request: HttpRequest): HttpReply {
    const uncertified = this.ctx.config.tls !== null && request.peerCertified !== true;
    if (this.ctx.auth !== null && !uncertified) return this.refuseUnauthorized(request, 'no authenticator');
    const suppressed = this.ctx.refusals.take('peer route from outside');
    if (suppressed !== null) this.ctx.log.warn({ remoteAddress: request.remoteAddress, path: request.path, suppressed }, 'peer route asked by an address that is not a node of this store: refused');
    const why = uncertified ? 'connections with a certificate of the cluster' : 'the addresses of its nodes';
    return json(403, { error: `Routes under /internal/ answer only ${why}` });
  }

  refuseUnauthorized(request: Pick<HttpRequest, 'path' | 'remoteAddress'>, reason: string): HttpReply {
    const suppressed = this.ctx.refusals.take(`unauthorized ${reason}`);
    if (suppressed !== null) this.ctx.log.warn({ remoteAddress: request.remoteAddress, path: request.path, reason, suppressed }, 'request between nodes without a valid authenticator: refused');
    return json(401, { error: `Requests between nodes need a valid authenticator: ${reason}` });
  }

  /**
   * With ADMIN_TOKEN set, a topology change (PUT and DELETE /view, add-member, reshard) needs
   * `Authorization: Bearer <token>`: null when the request may go on, else the 401. Both sides are
   * hashed first, so the comparison takes the same time whatever the token given (and its length).
   */
  adminRefusal(request: HttpRequest, route: string): HttpReply | null {
    const token = this.ctx.config.adminToken;
    if (token === null) return null;
    const header = request.headers.authorization;
    const given = typeof header === 'string' ? /^Bearer +(\S+) *$/i.exec(header)?.[1] ?? null : null;
    const digest = (text: string) => createHash('sha256').update(text).digest();
    if (given !== null && timingSafeEqual(digest(given), digest(token))) return null;
    const reason = given === null ? 'admin token missing' : 'admin token wrong';
    const suppressed = this.ctx.refusals.take(`401 ${reason}`);
    if (suppressed !== null) this.ctx.log.warn({ status: 401, reason, route, remoteAddress: request.remoteAddress, suppressed }, 'topology change refused');
    return json(401, { error: `${route} needs the admin token: send the header Authorization: Bearer <ADMIN_TOKEN>` });
  }

  /** The header that lets this node's own topology requests (announcement, down reports) through ADMIN_TOKEN. */
  adminHeaders(): Record<string, string> {
    return this.ctx.config.adminToken === null ? {} : { authorization: `Bearer ${this.ctx.config.adminToken}` };
  }

  /** The body with its causal metadata's MAC checked and removed; not ok when the MAC does not verify. */
  unsealBody(body: unknown): { ok: true; body: unknown } | { ok: false } {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) return { ok: true, body };
    const metadata = (body as Record<string, unknown>)['causal-metadata'];
    if (metadata === null || metadata === undefined) return { ok: true, body };
    const unsealed = unsealMetadata(this.ctx.auth as PeerAuth, metadata);
    return unsealed === null ? { ok: false } : { ok: true, body: { ...(body as Record<string, unknown>), 'causal-metadata': unsealed } };
  }

  /** A reply with the causal metadata it carries sealed (with a cluster secret). */
  sealReply(reply: { status: number; body: Record<string, unknown> }): HttpReply {
    const metadata = reply.body['causal-metadata'];
    if (this.ctx.auth === null || typeof metadata !== 'object' || metadata === null) return json(reply.status, reply.body);
    return json(reply.status, { ...reply.body, 'causal-metadata': sealMetadata(this.ctx.auth, metadata as Record<string, unknown>) });
  }
}
