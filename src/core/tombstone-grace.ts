import { assert } from './assert.ts';
import type { Clock, NodeAddress } from './types.ts';
import { counterOf } from './vector-clock.ts';

// The tombstone grace: how a shard goes on collecting tombstones while one of its members is down
// (or never came up). A tombstone is collected once every member has applied it. A member whose
// applied clock this node does not know (down, out of the view, never heard from) would hold every
// tombstone for ever, so after the grace it is not waited for: a tombstone every member this node
// hears from has applied, and that this node applied at least the grace ago, is collected all the
// same. The member left out then holds a replica that may still have versions those tombstones
// deleted; when it is back it must not merge it (see ReplicationCore.onSyncResponse): its writes go
// to the live members, and it copies its shard afresh.

/** Default TOMBSTONE_GRACE_MS: 3 hours, far longer than a restart or a network blip. */
export const TOMBSTONE_GRACE_MS_DEFAULT = 3 * 60 * 60 * 1000;

/** Checkpoints an AppliedHistory keeps: with one every grace/32, they span a little over the grace. */
export const HISTORY_POINTS_MAX = 40;

/**
 * When this replica had applied what: checkpoints of its applied clock, at least `spacingMs` apart,
 * at most HISTORY_POINTS_MAX (the oldest dropped first). `asOf(t)` is the clock as it was at time t
 * (the latest checkpoint at or before t): every write it names was applied here at t or earlier.
 * Kept in memory only: after a restart nothing is older than the restart, so the grace starts over
 * (collection without a down member waits a grace longer; it never happens early).
 */
export class AppliedHistory {
  private readonly points: { atMs: number; applied: Readonly<Clock> }[] = [];
  readonly spacingMs: number;

  constructor(graceMs: number) {
    assert(Number.isSafeInteger(graceMs) && graceMs > 0, 'the tombstone grace is a positive number of milliseconds');
    this.spacingMs = Math.max(1, Math.floor(graceMs / 32));
  }

  /** Notes the applied clock now, if the last checkpoint is at least spacingMs old. Clocks are replaced, never changed in place. */
  record(nowMs: number, applied: Readonly<Clock>): void {
    const last = this.points.at(-1);
    if (last !== undefined && nowMs - last.atMs < this.spacingMs) return;
    assert(last === undefined || nowMs >= last.atMs, 'checkpoints are taken in time order');
    this.points.push({ atMs: nowMs, applied });
    if (this.points.length > HISTORY_POINTS_MAX) this.points.shift();
  }

  /** The applied clock as it was at `atMs`; null when no checkpoint is that old. */
  asOf(atMs: number): Readonly<Clock> | null {
    let found: Readonly<Clock> | null = null;
    for (const point of this.points) {
      if (point.atMs > atMs) break;
      found = point.applied;
    }
    return found;
  }

  /** The time of the first checkpoint that had applied `node`'s write `counter`; null when none has (yet). */
  appliedAt(node: NodeAddress, counter: number): number | null {
    for (const point of this.points) if (counterOf(point.applied, node) >= counter) return point.atMs;
    return null;
  }

  /** The time of the oldest checkpoint; null before the first. */
  get sinceMs(): number | null {
    return this.points[0]?.atMs ?? null;
  }
}

/**
 * Of a shard's members, what every one this node knows the applied clock of has applied (with this
 * replica's own `applied`), and the members it does not know (`missing`). Null when a known member
 * has writes of its own this replica has not applied: a tombstone of that member's could then still
 * be on its way here, and nothing is collected (as before the grace existed).
 */
export function appliedByKnownMembers(
  applied: Readonly<Clock>,
  members: readonly NodeAddress[],
  self: NodeAddress,
  peerApplied: ReadonlyMap<NodeAddress, Clock>,
): { everywhere: Clock; missing: NodeAddress[] } | null {
  let everywhere: Clock = { ...applied };
  const missing: NodeAddress[] = [];
  for (const member of members) {
    if (member === self) continue;
    const clock = peerApplied.get(member);
    if (clock === undefined) {
      missing.push(member);
      continue;
    }
    if (counterOf(applied, member) < counterOf(clock, member)) return null;
    everywhere = clockMin(everywhere, clock);
  }
  return { everywhere, missing };
}

/** The pointwise minimum of two clocks (a node absent from either counts 0, and is left out). */
export function clockMin(a: Readonly<Clock>, b: Readonly<Clock>): Clock {
  const min: Clock = {};
  for (const [node, counter] of Object.entries(a)) {
    const other = counterOf(b, node);
    if (other > 0) min[node] = Math.min(counter, other);
  }
  return min;
}
