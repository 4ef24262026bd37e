// The routes under /internal/, asked only by nodes of this store (the gate checked it): pings and
// state, replication, syncs and repairs, maps, and the participant's side of a reshard. Every
// POST body is decoded by its message's decoder (wire.ts) before anything reads it.

import type { PingInfo } from '../core/node-core.ts';
import { isShardId } from '../core/shard-map.ts';
import type { NodeAddress } from '../core/types.ts';
import type { NodeContext } from './context.ts';
import type { FailureDetector } from './failure-detector.ts';
import type { HttpReply } from './http-server.ts';
import type { Maps } from './maps.ts';
import { json } from './replies.ts';
import type { Resharding } from './reshard.ts';
import type { Sync } from './sync.ts';
import {
  decodeDigestRequest,
  decodeMapPush,
  decodeRepair,
  decodeReplicate,
  decodeReshardAbort,
  decodeReshardCommit,
  decodeReshardPrepare,
  decodeReshardSend,
  decodeReshardTransfer,
  decodeSyncRequest,
} from './wire.ts';

/** Routes that move replica data between nodes: refused over a link held down (reshard routes are not: a reshard is asked for). */
const DATA_ROUTES: ReadonlySet<string> = new Set(['/internal/replicate', '/internal/sync', '/internal/digest', '/internal/repair']);

/** What the peer routes ask of the other concerns. */
export interface PeerRoutesDeps {
  failures: Pick<FailureDetector, 'heldLinkRefusal'>;
  maps: Pick<Maps, 'adoptMap'>;
  sync: Pick<Sync, 'countRepaired'>;
  resharding: Pick<Resharding, 'prepare' | 'sendReshardData' | 'commit' | 'abort'>;
}

export class PeerRoutes {
  private readonly ctx: NodeContext;
  private readonly deps: PeerRoutesDeps;

  constructor(ctx: NodeContext, deps: PeerRoutesDeps) {
    this.ctx = ctx;
    this.deps = deps;
  }

  /** A request under /internal/ from node `from` (its process `incarnation`), when it named itself. */
  async route(method: string, path: string, body: unknown, from: NodeAddress | null, incarnation: string | null): Promise<HttpReply> {
    const { core, log, replicator, storage } = this.ctx;
    if (method === 'GET' && path === '/internal/ping') {
      // A node that pings us is up and counts us in its view; if we dropped it (we found it down,
      // then restarted with a VIEW that predates it, or missed its announcement), we probe it again.
      if (from !== null && this.ctx.step({ kind: 'learn', node: from })) {
        log.info({ peer: from }, 'pinged by a node not in the view; probing it before admitting it');
      }
      const replicating = from === null ? 0 : replicator.liveQueued(from);
      const info: PingInfo = { ...core.pingInfo(), incarnation: this.ctx.incarnation };
      if (replicating > 0) info.replicating = replicating;
      return json(200, info);
    }
    if (method === 'GET' && path === '/internal/state') {
      return json(200, { map: core.map, view: core.view(), ready: core.ready });
    }
    if (method === 'GET' && path.startsWith('/internal/key-count/')) {
      const shard = decodeURIComponent(path.slice('/internal/key-count/'.length));
      const replica = core.replica;
      if (replica === null || replica.shard !== shard) return json(409, { error: `not a replica of ${shard}` });
      return json(200, { 'shard-key-count': replica.liveKeyCount() });
    }
    if (method === 'GET' && path.startsWith('/internal/partition-keys/')) {
      // Live keys per partition of this replica: what a reshard would move (reshard.ts).
      const shard = decodeURIComponent(path.slice('/internal/partition-keys/'.length));
      const counts = isShardId(shard) ? core.partitionKeys(shard) : null;
      if (counts === null) return json(409, { error: `not a ready replica of ${shard}` });
      return json(200, { shard, counts });
    }
    if (method !== 'POST') return json(404, { error: `No route for ${method} ${path}` });
    // Data between replicas does not cross a link this node holds down, in either direction: the
    // sender learns how long from the answer and holds the link too.
    if (from !== null && DATA_ROUTES.has(path)) {
      const refusal = this.deps.failures.heldLinkRefusal(from, incarnation, path);
      if (refusal !== null) return refusal;
    }
    switch (path) {
      case '/internal/map': {
        const message = decodeMapPush(body);
        this.deps.maps.adoptMap(message.map, { source: 'pushed by peer', syncNow: true });
        return json(200, { ok: true });
      }
      case '/internal/replicate': {
        const batch = decodeReplicate(body);
        const result = this.ctx.step({ kind: 'replicate', epoch: batch.epoch, shard: batch.shard, versions: batch.versions });
        if (!result.ok) return json(409, { error: result.reason });
        await storage.flush();
        return json(200, { applied: result.applied });
      }
      case '/internal/digest': {
        const request = decodeDigestRequest(body);
        // Still pushing writes to the asker: our digests differ by what is in flight; next round.
        if (request.from !== null && replicator.liveQueued(request.from) > 0) {
          return json(409, { error: 'replication to the asking node is in flight; try the next round' });
        }
        const result = this.ctx.step({ kind: 'digest-request', epoch: request.epoch, shard: request.shard, digests: request.digests });
        if (!result.ok) return json(409, { error: result.reason });
        return json(200, { differing: result.differing, versions: result.versions, more: result.more, collected: result.collected });
      }
      case '/internal/repair': {
        const repair = decodeRepair(body);
        const changed = this.ctx.step({ kind: 'repair', ...repair });
        if (changed === null) return json(409, { error: `not a replica of ${repair.shard} at epoch ${repair.epoch}` });
        this.deps.sync.countRepaired(changed);
        await storage.flush();
        return json(200, { changed });
      }
      case '/internal/sync': {
        const request = decodeSyncRequest(body);
        const result = this.ctx.step({ kind: 'sync-request', ...request });
        if (!result.ok) return json(409, { error: result.reason });
        return json(200, { versions: result.versions, applied: result.applied, lamport: result.lamport, base: result.base, collected: result.collected });
      }
      case '/internal/reshard/prepare': {
        const prepare = decodeReshardPrepare(body);
        return this.deps.resharding.prepare(prepare.map, prepare.coordinator);
      }
      case '/internal/reshard/send': {
        const send = decodeReshardSend(body);
        return this.deps.resharding.sendReshardData(send.epoch, new Set(send.targets), send.holdings);
      }
      case '/internal/reshard/transfer': {
        const transfer = decodeReshardTransfer(body);
        return this.ctx.step({ kind: 'reshard-transfer', ...transfer })
          ? json(200, { ok: true })
          : json(409, { error: `no prepared reshard for epoch ${transfer.epoch}` });
      }
      case '/internal/reshard/commit': {
        return this.deps.resharding.commit(decodeReshardCommit(body).epoch);
      }
      case '/internal/reshard/abort': {
        return this.deps.resharding.abort(decodeReshardAbort(body).epoch);
      }
      default:
        return json(404, { error: `No route for ${method} ${path}` });
    }
  }
}
