import { FIRST_EPOCH, membersOf, partitionOfKey, shardIds, shardOfKey } from './shard-map.ts';
import type { Clock, Epoch, EpochClocks, NodeAddress, ShardId, ShardMap, Version } from './types.ts';
import { mergeClocks, mergeEpochClocks, minEpochClocks } from './vector-clock.ts';

// The participant's side of a reshard (every node): what it holds between the prepare and the
// commit, and the pure functions that say what goes where. The coordinator's three phases are
// sequenced by the runtime (src/node/reshard-coordinator.ts); every decision is here or in NodeCore.

export interface PendingReshard {
  map: ShardMap;
  coordinator: NodeAddress;
  startedMs: number;
  /** Versions received for this node's shard in the new epoch, merged by version order. */
  incoming: Map<string, Version>;
  /** What the senders of `incoming` reflected, one claim per sender whose transfer arrived whole. */
  claims: TransferClaim[];
  /** This node delivered all its transfers (phase 2 done here). */
  sent: boolean;
  /**
   * What this node's replica held when it froze (null: none), as its prepare answered: other
   * senders leave out of their transfers what it reflects (see `leftOut`). `generation` names that
   * replica: phase 2 here refuses if it was replaced since, as the promise would no longer hold.
   */
  holding: { claim: TransferClaim; generation: number } | null;
}

/**
 * Sent with the last part of a reshard transfer: the sender's replica (its old shard, its applied
 * clock, what its own base reflected). The sender sent every version it holds for the receiver's
 * new shard, so the receiver now reflects all of that for its keys.
 */
export interface TransferClaim {
  shard: ShardId;
  applied: Clock;
  base: EpochClocks;
}

/** Phase 1's answer: frozen, with what this node's replica holds (null: none), or refused. */
export type PrepareOutcome = { ok: true; holding: TransferClaim | null } | { ok: false; reason: string };

/** A reshard transfer to one node: versions in base form, and the sender's claim. */
export interface Transfer {
  versions: Version[];
  claim: TransferClaim;
}

/** Planted bug 'reshard-skips-partition': the versions without those of the lowest partition that changes shard. */
export function skipFirstMovedPartition(from: ShardMap, to: ShardMap, versions: Iterable<Version>): Version[] {
  const all = [...versions];
  const moved = all.filter((v) => shardOfKey(from, v.key) !== shardOfKey(to, v.key)).map((v) => partitionOfKey(v.key));
  if (moved.length === 0) return all;
  const skipped = Math.min(...moved);
  return all.filter((v) => partitionOfKey(v.key) !== skipped);
}

/**
 * What a new replica's base reflects, from the claims of the senders whose transfers arrived whole.
 * Of the old epoch: for each old shard, what its senders had applied (each sent all it held for our
 * keys). Of epochs before it: a sender's base spoke for its old shard's keys only, and our keys come
 * from every old shard, so per old shard the best sender counts, and over old shards the worst.
 */
export function reflectedByClaims(oldMap: ShardMap, claims: readonly TransferClaim[]): EpochClocks {
  const applied: Record<ShardId, Clock> = {};
  const bases = new Map<ShardId, EpochClocks>();
  for (const claim of claims) {
    applied[claim.shard] = mergeClocks(applied[claim.shard] ?? {}, claim.applied);
    bases.set(claim.shard, mergeEpochClocks(bases.get(claim.shard) ?? {}, claim.base));
  }
  let earlier: EpochClocks | null = null;
  for (const shard of shardIds(oldMap)) {
    if ((membersOf(oldMap, shard) ?? []).length === 0) continue;
    const base = bases.get(shard) ?? {};
    earlier = earlier === null ? base : minEpochClocks(earlier, base);
  }
  return mergeEpochClocks(earlier ?? {}, { [String(oldMap.epoch)]: applied });
}

/**
 * What the prepared nodes held when they froze (their prepare answers), by node: phase 2's senders
 * leave out what a receiver, or their old shard's full sender, already reflects.
 */
export type Holdings = ReadonlyMap<NodeAddress, TransferClaim>;

/**
 * True when `holding`, a replica of `shard` in epoch `epoch` (the one ending), reflects the write of
 * `version`, a version of that same replica group: it stores that version or one that won over it
 * (or a tombstone every member of the shard had applied, since collected). A write of `epoch` (a
 * dot) is judged by the holding's applied clock, a base version (an origin) by its base clocks:
 * the replica's invariants say both mean exactly that.
 */
export function holdingReflects(holding: TransferClaim | undefined, epoch: Epoch, shard: ShardId, version: Version): boolean {
  if (holding === undefined || holding.shard !== shard) return false;
  const dot = version.dot;
  if (dot !== null) return (version.stamp.epoch ?? FIRST_EPOCH) === epoch && (holding.applied[dot.node] ?? 0) >= dot.counter;
  const origin = version.origin;
  if (origin === undefined || origin.epoch >= epoch) return false;
  return (holding.base[String(origin.epoch)]?.[origin.shard]?.[origin.node] ?? 0) >= origin.counter;
}

/**
 * The member of old shard `shard` that sends, in phase 2, everything it holds (but what each
 * receiver reflects already): the first in address order among the prepared nodes that hold a
 * replica of it. Every sender computes it from the same holdings (the coordinator sends them all
 * the same), so they agree on it. Null when no prepared node declared a replica of `shard`.
 */
export function fullSender(holdings: Holdings, shard: ShardId): NodeAddress | null {
  let first: NodeAddress | null = null;
  for (const [node, holding] of holdings) if (holding.shard === shard && (first === null || node < first)) first = node;
  return first;
}

/**
 * Whether a sender that holds old shard `shard`'s `version` leaves it out of its transfer to
 * `receiver`. Only what some replica still sends is left out: the receiver reflects it already (its
 * own replica goes into its new shard at its own phase 2), or the shard's full sender (not this
 * node) reflects it and sends all it holds. So the receiver gets every write once from the full
 * sender, plus only what that sender lacks from the others, where it used to get each version
 * from every replica of the old shard, moving or not.
 */
export function leftOut(
  holdings: Holdings,
  sender: { self: NodeAddress; epoch: Epoch; shard: ShardId; full: NodeAddress | null },
  receiver: NodeAddress,
  version: Version,
  noFullSender = false,
): boolean {
  const { self, epoch, shard, full } = sender;
  if (holdingReflects(holdings.get(receiver), epoch, shard, version)) return true;
  if (noFullSender) {
    // Planted bug 'reshard-no-full-sender': every replica counts on some other one to send it.
    for (const [node, holding] of holdings) if (node !== self && holdingReflects(holding, epoch, shard, version)) return true;
    return false;
  }
  return full !== null && full !== self && holdingReflects(holdings.get(full), epoch, shard, version);
}

/** Every node that is a member of some shard of `map`. */
export function allMembers(map: ShardMap): Set<NodeAddress> {
  return new Set(Object.values(map.shards).flat());
}

/**
 * Versions grouped by the members of their key's shard in `map`, each as `convert` makes it (once
 * a version, and only for a version that goes somewhere); this node's share goes to `onSelf`, and
 * a version `skip` names for a member (judged as it was given) is not sent to it.
 */
export function groupByOwners(
  map: ShardMap,
  versions: Iterable<Version>,
  self: NodeAddress,
  onSelf: (version: Version) => void,
  skip?: (member: NodeAddress, version: Version) => boolean,
  convert: (version: Version) => Version = (version) => version,
): Map<NodeAddress, Version[]> {
  const out = new Map<NodeAddress, Version[]>();
  for (const version of versions) {
    let converted: Version | null = null;
    for (const member of map.shards[shardOfKey(map, version.key)] ?? []) {
      if (member !== self && skip?.(member, version) === true) continue;
      converted ??= convert(version);
      if (member === self) {
        onSelf(converted);
        continue;
      }
      let list = out.get(member);
      if (!list) out.set(member, (list = []));
      list.push(converted);
    }
  }
  return out;
}


// ---------------------------------------------------------------- the coordinator's rules

/** What a node answered to one reshard phase (a node not reached answers `{ unreachable: true }`). */
export interface PhaseReply {
  status: number;
  body: unknown;
}

/** Why the coordinator gives a reshard up, and what its client hears. */
export interface Abandon {
  kind: 'abandon';
  reply: { status: number; body: Record<string, unknown> };
  /** For the log line. */
  why: string;
  detail: Record<string, unknown>;
}

const unreachable = (reply: PhaseReply | undefined) => (reply?.body as { unreachable?: unknown } | undefined)?.unreachable === true;

/**
 * After phase 1 (prepare) at every node of `nodes`: go on with the nodes that froze, or abandon.
 * Every shard's data must move, so some member of each old shard must take part, and some member
 * of each new shard must take part to receive it: a shard whose members are all down would start
 * the new epoch without its keys, and their old versions arriving later would overwrite what
 * clients wrote meanwhile. A node that refused (another reshard is in progress there) stops it too.
 */
export function afterPrepare(current: ShardMap, next: ShardMap, nodes: readonly NodeAddress[], replies: readonly PhaseReply[]): { kind: 'send'; prepared: NodeAddress[] } | Abandon {
  const refused = replies.filter((reply) => reply.status !== 200);
  const prepared = nodes.filter((_, i) => replies[i]?.status === 200 && !unreachable(replies[i]));
  const stranded = shardsWithout(current, next, new Set(prepared));
  if (refused.length === 0 && stranded.length === 0) return { kind: 'send', prepared };
  const detail = { refused: refused.map((r) => r.body), stranded };
  if (refused.length > 0) return { kind: 'abandon', reply: { status: 503, body: { error: 'Another reshard is in progress; try again later' } }, why: 'refused', detail };
  return {
    kind: 'abandon',
    reply: { status: 503, body: { error: `No member of shard ${stranded.join(', ')} is reachable, so its keys cannot move; try again later` } },
    why: 'a shard is unreachable',
    detail,
  };
}

/**
 * After phase 2 (send) at the prepared nodes: commit, or abandon when a node's data did not reach
 * every new owner (it would drop that data at the commit), or when phase 2 took more than half the
 * participants' freeze (`freezeMs`, counted at each from when phase 2 reached it): a commit sent
 * later could reach a participant after it gave the reshard up, and the data sent to it would be
 * lost with it.
 */
export function afterSend(prepared: readonly NodeAddress[], replies: readonly PhaseReply[], timing?: { phaseMs: number; freezeMs: number }): { kind: 'commit' } | Abandon {
  const incomplete = prepared.filter((_, i) => {
    const reply = replies[i];
    const body = reply?.body as { failed?: unknown[] } | undefined;
    return reply?.status !== 200 || unreachable(reply) || (body?.failed?.length ?? 0) > 0;
  });
  if (incomplete.length > 0) {
    return {
      kind: 'abandon',
      reply: { status: 503, body: { error: 'A node could not hand over its keys during the reshard; try again later' } },
      why: 'transfers incomplete',
      detail: { incomplete },
    };
  }
  if (timing !== undefined && timing.phaseMs > timing.freezeMs / 2) {
    return {
      kind: 'abandon',
      reply: { status: 503, body: { error: 'The reshard took too long to hand over its keys; try again later' } },
      why: 'transfers too slow to commit safely',
      detail: { phaseMs: timing.phaseMs, freezeMs: timing.freezeMs },
    };
  }
  return { kind: 'commit' };
}

/**
 * Shards with members but none in `nodes`: of the current map (their data could not move) and of
 * `next` (no member could receive it).
 */
export function shardsWithout(current: ShardMap, next: ShardMap, nodes: ReadonlySet<NodeAddress>): string[] {
  const without = (map: ShardMap) =>
    shardIds(map).filter((shard) => {
      const members = membersOf(map, shard) ?? [];
      return members.length > 0 && !members.some((member) => nodes.has(member));
    });
  return [...without(current).map((s) => `${s} (epoch ${current.epoch})`), ...without(next).map((s) => `${s} (epoch ${next.epoch})`)];
}
