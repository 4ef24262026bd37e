import { MESSAGES, KEY_LENGTH_MAX } from './api-messages.ts';
import { assert } from './assert.ts';
import { dependenciesAt, makeMetadata, parseCausalMetadata } from './causal-metadata.ts';
import type { KvDecision, KvMethod, KvRequest, Reply } from './contract.ts';
import { valueFault } from './json-value.ts';
import type { PlantedBug } from './planted-bugs.ts';
import type { Replica } from './replica.ts';
import { shardOfKey } from './shard-map.ts';
import type { CausalMetadata, NodeAddress, ShardId, ShardMap } from './types.ts';
import { clockLacks, mergeEpochClocks, mergeShardClocks, withDot } from './vector-clock.ts';

// A client's key-value request: checked once when it arrives, then decided against the node's
// state (as often as the state changes while it is parked).

/** What of a node's state a key-value decision reads (NodeCore). */
export interface KvState {
  readonly self: NodeAddress;
  readonly map: ShardMap;
  readonly ready: boolean;
  readonly reshardInProgress: unknown;
  readonly plantedBugs: ReadonlySet<PlantedBug>;
  /** Without a cluster secret: metadata must name only shards and nodes of this store. */
  readonly checksMetadataOrigin: boolean;
  metadataOrigin(metadata: CausalMetadata): string | null;
  forwardTargets(shard: ShardId): NodeAddress[];
  shardPeers(): NodeAddress[];
}

/**
 * A client's key-value request, checked once: the body is an object, the key has a length the
 * store takes, a PUT has a value the store can hold, and the causal metadata parses. `deadlineMs`:
 * a forwarded write's deadline (the forwarding node gave up on it then).
 */
export function parseKv(method: KvMethod, key: string, rawBody: unknown, deadlineMs: number | null = null): { ok: true; request: KvRequest } | { ok: false; reply: Reply } {
  const body = rawBody === undefined ? {} : rawBody;
  const refuse = (error: string) => ({ ok: false as const, reply: { status: 400, body: { error } } });
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return refuse('Request body must be a JSON object');
  const fields = body as Record<string, unknown>;
  if ([...key].length > KEY_LENGTH_MAX) return refuse(MESSAGES.keyTooLong);
  if (key.length === 0) return refuse('Key is empty');
  if (method === 'PUT' && !Object.hasOwn(fields, 'value')) return refuse(MESSAGES.noValue);
  const fault = method === 'PUT' ? valueFault(fields.value) : null;
  if (fault !== null) return refuse(fault);
  const parsed = parseCausalMetadata(fields['causal-metadata']);
  if (!parsed.ok) return refuse(`Invalid causal metadata: ${parsed.reason}`);
  return { ok: true, request: { method, key, value: fields.value, metadata: parsed.metadata, deadlineMs } };
}

/**
 * What to do with a checked request now: reply (a write is applied here, and says what to
 * replicate), forward to the key's shard, or wait for the state to change (and why).
 */
export function decideKv(core: KvState, replica: Replica | null, request: KvRequest, nowMs: number): KvDecision {
  const { method, key, metadata } = request;
  // The node that forwarded this write answered its client 503 at its deadline: applying it now
  // would make a write behind the client's back (and perhaps a second one, if the client retried).
  if (method !== 'GET' && request.deadlineMs !== null && nowMs > request.deadlineMs) {
    return { kind: 'reply', reply: { status: 503, body: { error: 'The forwarded write arrived too late and was not applied; try again' } }, lateMs: nowMs - request.deadlineMs };
  }
  const map = core.map;
  const shard = shardOfKey(map, key);
  if (replica === null || replica.shard !== shard) {
    return { kind: 'forward', shard, targets: core.forwardTargets(shard) };
  }
  if (metadata !== null && core.checksMetadataOrigin) {
    const origin = core.metadataOrigin(metadata);
    if (origin !== null) return reply(400, { error: `Invalid causal metadata: ${origin}` });
  }
  if (!core.ready) return { kind: 'wait', reason: 'syncing' };
  if (metadata !== null && metadata.e > map.epoch) return { kind: 'wait', reason: 'epoch' };
  if (method !== 'GET' && core.reshardInProgress !== null) return { kind: 'wait', reason: 'reshard' };

  const deps = dependenciesAt(metadata, map.epoch);
  const clocks = deps.clocks;
  const need = clocks[shard] ?? {};
  const skipCheck = method === 'GET' && core.plantedBugs.has('read-skips-deps');
  if (!skipCheck && !replica.covers(need)) return { kind: 'wait', reason: 'causal', detail: clockLacks(replica.applied, need) };
  if (!skipCheck && !replica.coversOld(deps.old)) return { kind: 'wait', reason: 'handover' };

  const current = replica.get(key);
  const live = current !== undefined && !current.deleted;
  if (method === 'GET') {
    if (!live) return reply(404, { error: MESSAGES.keyMissing });
    let seen = mergeShardClocks(clocks, current.deps);
    if (current.dot) seen = withDot(seen, shard, current.dot.node, current.dot.counter);
    return reply(200, {
      result: MESSAGES.found,
      value: current.value,
      'causal-metadata': makeMetadata(map.epoch, seen, mergeEpochClocks(deps.old, current.past ?? {})),
      'shard-id': shard,
    });
  }
  if (method === 'DELETE' && !live) return reply(404, { error: MESSAGES.keyMissing });

  const version =
    method === 'PUT'
      ? replica.write(key, { deleted: false, value: request.value }, clocks, deps.old)
      : replica.write(key, { deleted: true }, clocks, deps.old);
  const dot = version.dot;
  assert(dot !== null && dot.node === core.self, 'a write coordinated here carries a dot of this node');
  const answer: Record<string, unknown> = {
    result: method === 'DELETE' ? MESSAGES.deleted : live ? MESSAGES.replaced : MESSAGES.created,
    'causal-metadata': makeMetadata(map.epoch, withDot(clocks, shard, dot.node, dot.counter), deps.old),
    'shard-id': shard,
  };
  return {
    kind: 'reply',
    reply: { status: method === 'PUT' && !live ? 201 : 200, body: answer },
    replicate: { epoch: map.epoch, shard, peers: core.shardPeers(), version },
  };
}

function reply(status: number, body: Record<string, unknown>): KvDecision {
  return { kind: 'reply', reply: { status, body } };
}
