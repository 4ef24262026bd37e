// The routes of clients and operators: /kvs/<key> (served here, forwarded, or waited on within a
// bound), /view, /shard/*, /status, /status/ready, /status/store, /metrics, /ui/ and /openapi.json,
// dispatched through one table (PUBLIC_ROUTES, at the end; route-table.ts).

import type { StoreStatus } from './store-status.ts';
import { isNodeAddress } from '../core/address.ts';
import { MESSAGES } from '../core/api-messages.ts';
import type { KvMethod } from '../core/node-core.ts';
import { asShardId, membersOf, shardIds, shardOfKey } from '../core/shard-map.ts';
import type { Clock, ShardId } from '../core/types.ts';
import type { NodeContext } from './context.ts';
import { dashboardRoute } from './dashboard.ts';
import { JsonText } from './env.ts';
import type { FailureDetector } from './failure-detector.ts';
import type { Forwarding } from './forwarding.ts';
import type { HttpReply, HttpRequest } from './http-server.ts';
import type { Maps } from './maps.ts';
import type { ParkedRequests } from './parked-requests.ts';
import type { PeerGate, PeerHeaders } from './peer-gate.ts';
import { OPENAPI } from './openapi.ts';
import { BadRequest, json } from './replies.ts';
import { RouteTable } from './route-table.ts';
import type { Resharding } from './reshard.ts';
import type { Sync } from './sync.ts';

/** What the public routes ask of the other concerns. */
export interface PublicRoutesDeps {
  gate: Pick<PeerGate, 'adminRefusal' | 'unsealBody' | 'sealReply'>;
  forwarding: Pick<Forwarding, 'forward' | 'keyCount'>;
  sync: Pick<Sync, 'fullSync'>;
  parked: Pick<ParkedRequests, 'park'>;
  failures: Pick<FailureDetector, 'onLinkChange' | 'probe' | 'onRemoved'>;
  maps: Pick<Maps, 'pushMap'>;
  resharding: Pick<Resharding, 'reshard' | 'plan'>;
  /** The /status document. */
  status(): Record<string, unknown>;
  /** GET /metrics: this node's metrics in Prometheus text format (metrics.ts). */
  metrics(): Promise<HttpReply>;
  /** GET /status/store: every node of the store, as this one sees it (store-status.ts). */
  storeStatus(): Promise<StoreStatus>;
}

function field(body: unknown, name: string): unknown {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
  return (body as Record<string, unknown>)[name];
}

/** The key of a /kvs/ path ('' when it is not valid URL encoding: the route answers 400 for that). */
export function keyOf(path: string): string {
  try {
    return decodeURIComponent(path.slice('/kvs/'.length));
  } catch {
    return '';
  }
}

/** A shard id from its path segment: any text (it is looked up in the map, and an unknown id is answered with 404). */
function shardIdOf(rawId: string): ShardId {
  try {
    return asShardId(decodeURIComponent(rawId));
  } catch {
    throw new BadRequest('Shard id is not valid URL encoding');
  }
}

/** What an entry of the table is given: the request, its node-to-node headers, its path parameters (percent-encoded). */
export interface RouteCall {
  request: HttpRequest;
  peer: PeerHeaders;
  params: Record<string, string>;
}

export type RouteHandler = (routes: PublicRoutes, call: RouteCall) => HttpReply | Promise<HttpReply>;

export class PublicRoutes {
  private readonly ctx: NodeContext;
  private readonly deps: PublicRoutesDeps;

  constructor(ctx: NodeContext, deps: PublicRoutesDeps) {
    this.ctx = ctx;
    this.deps = deps;
  }

  /**
   * A request to any route but /internal/ (`peer`: its node-to-node headers, when a node sent it):
   * the answer, or the promise of it when the route waits for something. Only an entry of
   * PUBLIC_ROUTES serves a request; any other gets the table's `unrouted` answer (404 or 405).
   */
  route(request: HttpRequest, peer: PeerHeaders): HttpReply | Promise<HttpReply> {
    const { method, path } = request;
    const match = PUBLIC_ROUTES.match(method, path);
    if (match === null) return PUBLIC_ROUTES.unrouted(method, path);
    return match.route.handler(this, { request, peer, params: match.params });
  }

  /** GET, PUT and DELETE /kvs/{key}: the key is the rest of the path, percent-decoded (400 when it is not valid URL encoding). */
  kvRoute(method: KvMethod, { request, peer, params }: RouteCall): HttpReply | Promise<HttpReply> {
    let key: string;
    try {
      key = decodeURIComponent(params.key ?? '');
    } catch {
      return json(400, { error: 'Key is not valid URL encoding' });
    }
    return this.kv(method, key, request.path, request.body, peer.hops, peer.deadlineMs, request.rawBody);
  }

  /** GET /view. */
  view(): HttpReply {
    return json(200, { view: this.ctx.core.view() });
  }

  /** GET /shard/ids. */
  shardIds(): HttpReply {
    return json(200, { 'shard-ids': shardIds(this.ctx.core.map) });
  }

  /** GET /shard/node-shard-id (null: this node is in no shard). */
  nodeShardId(): HttpReply {
    return json(200, { 'node-shard-id': this.ctx.core.shard });
  }

  /** GET /status: liveness (200 whenever the node answers), and what the node is, holds and has done. */
  status(): HttpReply {
    return json(200, this.deps.status());
  }

  /** GET /status/store. */
  async storeStatus(): Promise<HttpReply> {
    return json(200, await this.deps.storeStatus());
  }

  /** GET /metrics. */
  metrics(): Promise<HttpReply> {
    return this.deps.metrics();
  }

  /**
   * GET /status/ready, for load balancers and readiness probes: the `ready` of /status (status.ts
   * reads the same `core.ready`), as a status code. Not the whole /status document: building it
   * resets the event-loop delay window that /status reports, and probes come every few seconds.
   */
  ready(): HttpReply {
    if (this.ctx.core.ready) return json(200, { ready: true });
    return json(503, { ready: false, error: 'This node is not ready: it is joining the store or copying its shard' });
  }

  /** PUT and DELETE /view: the admin token first (when the store has one), then the body. */
  async viewChange(method: 'PUT' | 'DELETE', { request, peer }: RouteCall): Promise<HttpReply> {
    const { core, log } = this.ctx;
    const downReport = peer.downReport;
    const refusal = this.deps.gate.adminRefusal(request, `${method} /view`);
    if (refusal !== null) return refusal;
    const address = field(request.body, 'socket-address');
    if (!isNodeAddress(address)) throw new BadRequest('socket-address must be a string host:port (an IPv4 address or a host name, then a port)');
    if (method === 'PUT') {
      const reply = this.ctx.step({ kind: 'view-put', node: address });
      if (reply.status === 201) log.info({ peer: address }, 'node added to view');
      // The node announcing itself: a new incarnation is a restart, not a reconnection, so its
      // link is not held down (it copies its shard at once).
      if (peer.from === address && peer.incarnation !== null) {
        const change = this.ctx.step({ kind: 'link', event: { type: 'announced', peer: address, incarnation: peer.incarnation } });
        if (change === 'released') log.info({ peer: address, incarnation: peer.incarnation }, 'node restarted (new incarnation): its link is no longer held down');
        this.deps.failures.onLinkChange(address, change);
      }
      return json(reply.status, reply.body);
    }
    if (downReport !== null) {
      // Another node found `address` down. Check for ourselves before dropping it: a node cut off
      // from the reporter only may be fine for us.
      if (core.isMember(address) && (await this.deps.failures.probe(address))) {
        log.info({ peer: address, reporter: downReport }, 'down report refuted: node answers');
        return json(200, { result: MESSAGES.deleted });
      }
      const reply = this.ctx.step({ kind: 'view-delete', node: address, reason: 'down' });
      if (reply.status === 200) this.deps.failures.onRemoved(address, `reported down by ${downReport}`);
      return json(reply.status, reply.body);
    }
    const reply = this.ctx.step({ kind: 'view-delete', node: address, reason: 'request' });
    if (reply.status === 200) this.deps.failures.onRemoved(address, 'removed by request');
    return json(reply.status, reply.body);
  }

  /** GET /shard/members/{id}. */
  members(rawId: string): HttpReply {
    const id = shardIdOf(rawId);
    const members = membersOf(this.ctx.core.map, id);
    if (!members) return json(404, { error: `Shard ${id} does not exist` });
    return json(200, { 'shard-members': members });
  }

  /** GET /shard/key-count/{id}. */
  keyCount(rawId: string): Promise<HttpReply> {
    return this.deps.forwarding.keyCount(shardIdOf(rawId));
  }

  /** PUT /shard/add-member/{id}: the admin token first (when the store has one), then the id and the body. */
  async addMember(rawId: string, request: HttpRequest): Promise<HttpReply> {
    const refusal = this.deps.gate.adminRefusal(request, 'PUT /shard/add-member');
    if (refusal !== null) return refusal;
    const core = this.ctx.core;
    const id = shardIdOf(rawId);
    const address = field(request.body, 'socket-address');
    if (!isNodeAddress(address)) throw new BadRequest('socket-address must be a string host:port (an IPv4 address or a host name, then a port)');
    const reply = this.ctx.step({ kind: 'add-member', shard: id, node: address });
    if (reply.status === 200) {
      this.ctx.log.info({ shard: id, peer: address }, 'node added to shard');
      await this.deps.maps.pushMap([...core.viewPeers(), address]);
      if (reply.joined) this.ctx.background.run('full sync', () => this.deps.sync.fullSync('added to a shard'));
    }
    return json(reply.status, reply.body);
  }

  /** PUT /shard/reshard: the admin token first (when the store has one), then the body. */
  reshard(request: HttpRequest): HttpReply | Promise<HttpReply> {
    const refusal = this.deps.gate.adminRefusal(request, 'PUT /shard/reshard');
    if (refusal !== null) return refusal;
    return this.deps.resharding.reshard(field(request.body, 'shard-count'));
  }

  /** GET /shard/reshard-plan/{count}: a preview, nothing moves, so no admin token is asked for. */
  reshardPlan(rawCount: string): Promise<HttpReply> {
    // Checked like a shard id's segment, as the /shard/<action>/<id> routes always have been.
    shardIdOf(rawCount);
    return this.deps.resharding.plan(/^[1-9][0-9]{0,5}$/.test(rawCount) ? Number(rawCount) : rawCount);
  }

  // ---------------------------------------------------------------- key-value

  private async kv(
    method: KvMethod,
    key: string,
    path: string,
    body: unknown,
    hops: number,
    deadlineMs: number | null,
    rawBody?: string,
  ): Promise<HttpReply> {
    const { core, timers, log } = this.ctx;
    if (method !== 'GET' && this.replicationBacklogged(key)) {
      return json(503, { error: 'The node is overloaded; try again later' });
    }
    // With a cluster secret, metadata is the store's only if its MAC verifies; the core sees it
    // without the MAC, and what the core answers is sealed again. A forwarded request goes on as
    // it came (the member that serves it checks the MAC).
    let coreBody = body;
    const forwarded = core.shard === null || shardOfKey(core.map, key) !== core.shard;
    if (this.ctx.auth !== null && !forwarded) {
      const unsealed = this.deps.gate.unsealBody(body);
      if (!unsealed.ok) return json(400, { error: 'Invalid causal metadata: causal-metadata was not issued by this store' });
      coreBody = unsealed.body;
    }
    const parsed = core.parseKv(method, key, coreBody, deadlineMs);
    if (!parsed.ok) return json(parsed.reply.status, parsed.reply.body);
    const submitted = this.ctx.step({ kind: 'kv', request: parsed.request });
    const decision = submitted.kind === 'parked' ? await this.deps.parked.park(submitted) : submitted;
    if (decision.kind === 'expired') {
      log.info({ key, reason: decision.wait?.reason ?? 'closing', lacking: decision.wait?.detail }, 'request not served: dependencies missing');
      return json(decision.reply.status, decision.reply.body);
    }
    if (decision.kind === 'forward') {
      // The client's bytes go on as they came (the member parses and checks them again).
      const relayed = body !== undefined && rawBody !== undefined ? new JsonText(rawBody) : body;
      return this.deps.forwarding.forward(method, path, relayed, decision.shard, decision.targets, hops, deadlineMs);
    }
    if (decision.lateMs !== undefined) {
      log.warn({ key, method, lateMs: decision.lateMs }, 'forwarded write arrived after its sender gave up; not applied');
    }
    if (decision.replicate) {
      // The step staged the write for the disk: durable, then sent, then acknowledged.
      const { epoch, shard, peers, version } = decision.replicate;
      try {
        await this.ctx.storage.flush();
      } catch {
        return json(503, { error: 'Storage failure: the write could not be made durable' });
      }
      this.ctx.replicator.enqueue(peers, epoch, shard, version);
    }
    return this.deps.gate.sealReply(decision.reply);
  }

  /**
   * A write this node would make while a shard peer that is up has more than half its replication
   * queue's bytes waiting: refused (503), so that a flood sheds at the door instead of filling the
   * queue to where its oldest versions are dropped (which sync would then have to repair).
   */
  replicationBacklogged(key: string): boolean {
    const core = this.ctx.core;
    const shard = core.shard;
    if (shard === null || shardOfKey(core.map, key) !== shard) return false;
    const backlogged = this.ctx.replicator.liveBacklogBytesMax() > this.ctx.config.replicationQueueBytesMax / 2;
    if (backlogged) {
      const suppressed = this.ctx.refusals.take('replication backlog');
      if (suppressed !== null) this.ctx.log.warn({ suppressed }, 'write refused: replication backlog to a shard peer is over half its bound');
    }
    return backlogged;
  }
}

/**
 * A request no entry serves. A method the table has no entry for on /kvs/{key} and /view: 405 (as
 * the API has always answered there); under /ui, the dashboard's own answer (405 for a method other
 * than GET and HEAD, else 404). Anything else: 404 "No route", except that under /shard/ a third
 * segment that is not valid URL encoding is a 400 first, as it always has been.
 */
function unrouted(method: string, path: string): HttpReply {
  if (path.startsWith('/kvs/')) return json(405, { error: `Method ${method} is not allowed on /kvs` });
  if (path === '/view') return json(405, { error: `Method ${method} is not allowed on /view` });
  if (path === '/ui' || path.startsWith('/ui/')) return dashboardRoute(method, path);
  const rawId = path.startsWith('/shard/') ? path.split('/')[3] : undefined;
  if (rawId !== undefined) shardIdOf(rawId);
  return json(404, { error: `No route for ${method} ${path}` });
}

const dashboard: RouteHandler = (_routes, { request }) => dashboardRoute(request.method, request.path);

/**
 * Every public route: what the node answers, and what GET /openapi.json describes (openapi.ts
 * has one operation per entry; test/integration/openapi.test.ts checks that both ways).
 */
export const PUBLIC_ROUTES = new RouteTable<RouteHandler>(
  [
    { method: 'GET', path: '/kvs/{key}', last: 'rest', handler: (r, call) => r.kvRoute('GET', call) },
    { method: 'PUT', path: '/kvs/{key}', last: 'rest', handler: (r, call) => r.kvRoute('PUT', call) },
    { method: 'DELETE', path: '/kvs/{key}', last: 'rest', handler: (r, call) => r.kvRoute('DELETE', call) },
    { method: 'GET', path: '/view', handler: (r) => r.view() },
    { method: 'PUT', path: '/view', handler: (r, call) => r.viewChange('PUT', call) },
    { method: 'DELETE', path: '/view', handler: (r, call) => r.viewChange('DELETE', call) },
    { method: 'GET', path: '/shard/ids', handler: (r) => r.shardIds() },
    { method: 'GET', path: '/shard/node-shard-id', handler: (r) => r.nodeShardId() },
    { method: 'GET', path: '/shard/members/{id}', last: 'segment, rest ignored', handler: (r, { params }) => r.members(params.id ?? '') },
    { method: 'GET', path: '/shard/key-count/{id}', last: 'segment, rest ignored', handler: (r, { params }) => r.keyCount(params.id ?? '') },
    { method: 'PUT', path: '/shard/add-member/{id}', last: 'segment, rest ignored', handler: (r, { params, request }) => r.addMember(params.id ?? '', request) },
    { method: 'PUT', path: '/shard/reshard', handler: (r, { request }) => r.reshard(request) },
    { method: 'GET', path: '/shard/reshard-plan/{count}', last: 'segment, rest ignored', handler: (r, { params }) => r.reshardPlan(params.count ?? '') },
    { method: 'GET', path: '/status', handler: (r) => r.status() },
    { method: 'GET', path: '/status/ready', handler: (r) => r.ready() },
    { method: 'GET', path: '/status/store', handler: (r) => r.storeStatus() },
    { method: 'GET', path: '/metrics', handler: (r) => r.metrics() },
    { method: 'GET', path: '/ui', handler: dashboard },
    { method: 'HEAD', path: '/ui', handler: dashboard },
    { method: 'GET', path: '/ui/', handler: dashboard },
    { method: 'HEAD', path: '/ui/', handler: dashboard },
    { method: 'GET', path: '/openapi.json', handler: () => json(200, OPENAPI) },
  ],
  unrouted,
);
