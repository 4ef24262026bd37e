// The routes of clients and operators: /kvs/<key> (served here, forwarded, or waited on within a
// bound), /view, /shard/*, /status and /metrics.

import type { StoreStatus } from './store-status.ts';
import { isNodeAddress } from '../core/address.ts';
import { MESSAGES } from '../core/api-messages.ts';
import type { KvMethod } from '../core/node-core.ts';
import { asShardId, membersOf, shardIds, shardOfKey } from '../core/shard-map.ts';
import type { Clock, ShardId } from '../core/types.ts';
import type { NodeContext } from './context.ts';
import { dashboardRoute } from './dashboard.ts';
import type { FailureDetector } from './failure-detector.ts';
import type { Forwarding } from './forwarding.ts';
import type { HttpReply, HttpRequest } from './http-server.ts';
import type { Maps } from './maps.ts';
import type { ParkedRequests } from './parked-requests.ts';
import type { PeerGate, PeerHeaders } from './peer-gate.ts';
import { BadRequest, json } from './replies.ts';
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

function isKvMethod(method: string): method is KvMethod {
  return method === 'GET' || method === 'PUT' || method === 'DELETE';
}

export class PublicRoutes {
  private readonly ctx: NodeContext;
  private readonly deps: PublicRoutesDeps;

  constructor(ctx: NodeContext, deps: PublicRoutesDeps) {
    this.ctx = ctx;
    this.deps = deps;
  }

  /**
   * A request to any route but /internal/ (`peer`: its node-to-node headers, when a node sent it):
   * the answer, or the promise of it when the route waits for something.
   */
  route(request: HttpRequest, peer: PeerHeaders): HttpReply | Promise<HttpReply> {
    const { method, path } = request;
    const body = request.body;
    if (path.startsWith('/kvs/')) {
      if (!isKvMethod(method)) return json(405, { error: `Method ${method} is not allowed on /kvs` });
      let key: string;
      try {
        key = decodeURIComponent(path.slice('/kvs/'.length));
      } catch {
        return json(400, { error: 'Key is not valid URL encoding' });
      }
      return this.kv(method, key, path, body, peer.hops, peer.deadlineMs);
    }
    if (path === '/view') return this.viewRoute(method, body, peer, request);
    if (path.startsWith('/shard/')) return this.shardRoute(method, path, body, request);
    if (path === '/status' && method === 'GET') return json(200, this.deps.status());
    if (path === '/metrics' && method === 'GET') return this.deps.metrics();
    if (path === '/status/store' && method === 'GET') return this.deps.storeStatus().then((store) => json(200, store));
    if (path === '/ui' || path.startsWith('/ui/')) return dashboardRoute(method, path);
    return json(404, { error: `No route for ${method} ${path}` });
  }

  private async viewRoute(method: string, body: unknown, peer: PeerHeaders, request: HttpRequest): Promise<HttpReply> {
    const { core, log, timers } = this.ctx;
    const downReport = peer.downReport;
    if (method === 'GET') return json(200, { view: core.view() });
    if (method !== 'PUT' && method !== 'DELETE') return json(405, { error: `Method ${method} is not allowed on /view` });
    const refusal = this.deps.gate.adminRefusal(request, `${method} /view`);
    if (refusal !== null) return refusal;
    const address = field(body, 'socket-address');
    if (!isNodeAddress(address)) throw new BadRequest('socket-address must be a string IP:PORT');
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

  private async shardRoute(method: string, path: string, body: unknown, request: HttpRequest): Promise<HttpReply> {
    const core = this.ctx.core;
    const map = core.map;
    if (method === 'GET' && path === '/shard/ids') return json(200, { 'shard-ids': shardIds(map) });
    if (method === 'GET' && path === '/shard/node-shard-id') return json(200, { 'node-shard-id': core.shard });
    const [, , action, rawId] = path.split('/');
    if (method === 'PUT' && ((action === 'add-member' && rawId !== undefined) || path === '/shard/reshard')) {
      const refusal = this.deps.gate.adminRefusal(request, action === 'add-member' ? 'PUT /shard/add-member' : 'PUT /shard/reshard');
      if (refusal !== null) return refusal;
    }
    let id: ShardId | undefined;
    try {
      // Any text: it is looked up in the map, and an unknown id is answered with 404.
      id = rawId === undefined ? undefined : asShardId(decodeURIComponent(rawId));
    } catch {
      throw new BadRequest('Shard id is not valid URL encoding');
    }
    if (method === 'GET' && action === 'members' && id !== undefined) {
      const members = membersOf(map, id);
      if (!members) return json(404, { error: `Shard ${id} does not exist` });
      return json(200, { 'shard-members': members });
    }
    if (method === 'GET' && action === 'key-count' && id !== undefined) return this.deps.forwarding.keyCount(id);
    if (method === 'PUT' && action === 'add-member' && id !== undefined) {
      const address = field(body, 'socket-address');
      if (!isNodeAddress(address)) throw new BadRequest('socket-address must be a string IP:PORT');
      const reply = this.ctx.step({ kind: 'add-member', shard: id, node: address });
      if (reply.status === 200) {
        this.ctx.log.info({ shard: id, peer: address }, 'node added to shard');
        await this.deps.maps.pushMap([...core.viewPeers(), address]);
        if (reply.joined) this.ctx.background.run('full sync', () => this.deps.sync.fullSync('added to a shard'));
      }
      return json(reply.status, reply.body);
    }
    if (method === 'PUT' && path === '/shard/reshard') return this.deps.resharding.reshard(field(body, 'shard-count'));
    if (method === 'GET' && action === 'reshard-plan' && rawId !== undefined) {
      // A preview: nothing moves, so no admin token is asked for.
      return this.deps.resharding.plan(/^[1-9][0-9]{0,5}$/.test(rawId) ? Number(rawId) : rawId);
    }
    return json(404, { error: `No route for ${method} ${path}` });
  }

  // ---------------------------------------------------------------- key-value

  private async kv(
    method: KvMethod,
    key: string,
    path: string,
    body: unknown,
    hops: number,
    deadlineMs: number | null,
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
      return this.deps.forwarding.forward(method, path, body, decision.shard, decision.targets, hops, deadlineMs);
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
