import { assert } from './assert.ts';
import { REPAIR_BYTES_MAX } from './contract.ts';
import { versionBytes } from './json-value.ts';
import type { Replica } from './replica.ts';
import type { Clock, NodeAddress, Version } from './types.ts';
import { counterOf } from './vector-clock.ts';

// Anti-entropy between replicas of one shard: which partitions to answer with, and when tombstones
// may go. The runtime runs the rounds (src/node/sync.ts); what they exchange is decided here.

/**
 * The answering side of a digest exchange: the partitions whose digests differ from the asker's,
 * starting at `cursor` (where the previous answer stopped), with our versions of them, at most
 * about REPAIR_BYTES_MAX of versions (whole partitions, at least one). `next`: where the next answer
 * starts (0 when this one took every differing partition).
 */
export function digestAnswer(
  replica: Replica,
  digests: readonly number[],
  cursor: number,
): { differing: number[]; versions: Version[]; more: boolean; next: number } {
  const all = replica.differingPartitions(digests);
  const start = all.findIndex((p) => p >= cursor);
  const differing = start <= 0 ? all : [...all.slice(start), ...all.slice(0, start)];
  const byPartition = replica.versionsByPartition(differing);
  const taken: number[] = [];
  const versions: Version[] = [];
  let bytes = 0;
  for (const partition of differing) {
    const list = byPartition.get(partition) ?? [];
    let size = 0;
    for (const version of list) size += versionBytes(version);
    if (taken.length > 0 && bytes + size > REPAIR_BYTES_MAX) break;
    taken.push(partition);
    for (const version of list) versions.push(version);
    bytes += size;
  }
  const more = taken.length < differing.length;
  const last = taken.at(-1);
  assert(!more || last !== undefined, 'an answer with more to come took at least one partition');
  return { differing: taken, versions, more, next: more ? (last as number) + 1 : 0 };
}

/**
 * The clock every member of the shard reflects (tombstones at or below it may be collected), or
 * null when it cannot be known. `peerApplied` must hold the applied clock of every other member
 * (from their pings, this epoch); with any missing, null: a member we cannot hear from may hold an
 * older version the tombstone must still beat. Null too until this replica has applied every
 * member's own writes up to its ping: a write made concurrently with a delete, before its
 * coordinator applied the delete, is among those, and arriving after the collection it would bring
 * the key back here. (The graveyard also refuses it, but does not survive a restart.)
 */
export function appliedEverywhere(
  replica: Replica,
  members: readonly NodeAddress[],
  self: NodeAddress,
  peerApplied: ReadonlyMap<NodeAddress, Clock>,
): Clock | null {
  let everywhere: Clock = { ...replica.applied };
  for (const member of members) {
    if (member === self) continue;
    const clock = peerApplied.get(member);
    if (clock === undefined) return null;
    if (counterOf(replica.applied, member) < counterOf(clock, member)) return null;
    const min: Clock = {};
    for (const [node, counter] of Object.entries(everywhere)) min[node] = Math.min(counter, counterOf(clock, node));
    everywhere = min;
  }
  return everywhere;
}
