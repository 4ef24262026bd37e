// GET /status/store: the whole store as this node sees it, for operators (`kvs status`, the
// dashboard). Every node of the store is listed, found through this node's view, the nodes it has
// on probation and the members of every shard of its map, so a dead node is listed too (as down).
// Each is asked for its /status at once, with a short timeout; what only a node can tell is null
// when it does not answer.

import { isNodeAddress, sortAddresses } from '../core/address.ts';
import type { NodeAddress, ShardId } from '../core/types.ts';
import type { CoreReader, NodeContext } from './context.ts';
import { STORE_STATUS_TIMEOUT_MS } from './limits.ts';
import { isObject } from './wire.ts';

export type NodeState = 'up' | 'probation' | 'down' | 'not ready';

/** A node's tombstones and their collection (from the `tombstones` of its /status). */
export interface TombstoneRow {
  /** Tombstones its replica holds. */
  held: number;
  /** How long ago it applied the oldest (null: it holds none). */
  oldestAgeSeconds: number | null;
  /** The oldest may be older than that (applied before the node kept time for it). */
  oldestAgeAtLeast: boolean;
  /** Members collection waits for (not heard from for less than the grace, or without a majority): blocked while not empty. */
  blockedBy: NodeAddress[];
  /** Members collection goes on without (not heard from for longer than the grace). */
  collectingWithout: NodeAddress[];
  /** Its replica is stale (missed tombstones collected without it): for how long, which peer showed it, whether its writes are handed off. */
  stale: { forSeconds: number; peer: NodeAddress | null; handedOff: boolean } | null;
}

export interface NodeRow {
  address: NodeAddress;
  shard: ShardId | null;
  state: NodeState;
  keys: number | null;
  /** Writes queued for shard peers that are up. */
  replicationBacklog: { versions: number; bytes: number } | null;
  /** Writes held for shard peers that are down (hints). */
  hintBacklog: { versions: number; bytes: number } | null;
  /** Since anti-entropy last found this node's replica equal to a peer's (null: not yet). */
  secondsSinceInSync: number | null;
  /** Key-value requests since the node started (cumulative). */
  requests: { total: number; errors: number; latencyMsSum: number } | null;
  uptimeSeconds: number | null;
  /** Null when the node does not answer, or its /status has no `tombstones`. */
  tombstones: TombstoneRow | null;
}

export interface StoreStatus {
  answeredBy: NodeAddress;
  epoch: number;
  mode: 'replicated' | 'sharded';
  shards: { id: ShardId; members: NodeAddress[]; keys: number | null }[];
  nodes: NodeRow[];
  /** A reshard this node coordinates, or one any node reports coordinating. */
  reshard: Record<string, unknown> | null;
}

/** Every node of the store as `core` knows it: the view, nodes on probation, every shard's members. */
export function storeNodes(core: CoreReader): NodeAddress[] {
  const all = new Set<NodeAddress>([...core.view(), ...core.onProbation(), ...Object.values(core.map.shards).flat()]);
  return sortAddresses([...all]);
}

export async function storeStatus(ctx: NodeContext, ownStatus: () => Record<string, unknown>): Promise<StoreStatus> {
  const { core, config } = ctx;
  const nodes = storeNodes(core);
  const statuses = await Promise.all(
    nodes.map(async (node): Promise<Record<string, unknown> | null> => {
      if (node === config.address) return ownStatus();
      try {
        const reply = await ctx.peers.call(node, 'GET', '/status', undefined, { timeoutMs: STORE_STATUS_TIMEOUT_MS, lane: 'control' });
        return reply.status === 200 && isObject(reply.body) ? reply.body : null;
      } catch {
        return null;
      }
    }),
  );
  const probation = new Set(core.onProbation());
  const rows = nodes.map((address, i) => row(core, address, statuses[i] ?? null, probation));
  const shards = Object.entries(core.map.shards).map(([id, members]) => {
    // A shard's key count as its members that answered report it (they agree once in sync).
    const counts = rows.filter((r) => members.includes(r.address) && r.keys !== null).map((r) => r.keys as number);
    return { id: id as ShardId, members: [...members], keys: counts.length === 0 ? null : Math.max(...counts) };
  });
  const reshard = statuses.map((s) => s?.reshard).find((r): r is Record<string, unknown> => isObject(r)) ?? null;
  return { answeredBy: config.address, epoch: core.map.epoch, mode: core.map.mode, shards, nodes: rows, reshard };
}

function row(core: CoreReader, address: NodeAddress, status: Record<string, unknown> | null, probation: ReadonlySet<NodeAddress>): NodeRow {
  const shard = (Object.entries(core.map.shards).find(([, members]) => members.includes(address))?.[0] ?? null) as ShardId | null;
  if (status === null) {
    return { address, shard, state: 'down', keys: null, replicationBacklog: null, hintBacklog: null, secondsSinceInSync: null, requests: null, uptimeSeconds: null, tombstones: null };
  }
  const replication = isObject(status.replication) ? status.replication : {};
  const repair = isObject(status.repair) ? status.repair : {};
  const requests = isObject(status.requests) ? status.requests : null;
  // Answers, but is not in the view: on probation (found down, answering through the hold-down),
  // or removed by request while still a shard member.
  let state: NodeState = 'up';
  if (status.ready !== true) state = 'not ready';
  else if (probation.has(address) || !core.isMember(address)) state = 'probation';
  return {
    address,
    shard,
    state,
    keys: count(status.keys),
    replicationBacklog: { versions: count(replication.queued) ?? 0, bytes: count(replication.queuedBytes) ?? 0 },
    hintBacklog: { versions: count(replication.hints) ?? 0, bytes: count(replication.hintBytes) ?? 0 },
    secondsSinceInSync: typeof repair.msSinceFullSync === 'number' ? repair.msSinceFullSync / 1000 : null,
    requests:
      requests === null ? null : { total: count(requests.total) ?? 0, errors: count(requests.errors) ?? 0, latencyMsSum: typeof requests.latencyMsSum === 'number' ? requests.latencyMsSum : 0 },
    uptimeSeconds: typeof status.uptimeMs === 'number' ? status.uptimeMs / 1000 : null,
    tombstones: tombstoneRow(status.tombstones),
  };
}

/** The row's tombstones from the `tombstones` object of a node's /status; null when it has none. */
function tombstoneRow(value: unknown): TombstoneRow | null {
  if (!isObject(value)) return null;
  const held = count(value.held);
  if (held === null) return null;
  const age = count(value.oldestAgeMs);
  const stale = isObject(value.stale) ? value.stale : null;
  return {
    held,
    oldestAgeSeconds: age === null ? null : age / 1000,
    oldestAgeAtLeast: value.oldestAgeAtLeast === true,
    blockedBy: addresses(value.blockedBy),
    collectingWithout: addresses(value.collectingWithout),
    stale: stale === null ? null : { forSeconds: (count(stale.forMs) ?? 0) / 1000, peer: isNodeAddress(stale.peer) ? stale.peer : null, handedOff: stale.handedOff === true },
  };
}

function addresses(value: unknown): NodeAddress[] {
  return Array.isArray(value) ? value.filter(isNodeAddress) : [];
}

function count(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : null;
}
