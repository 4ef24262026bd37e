import type { Stamp, Version } from './types.ts';

/**
 * The one order every replica uses to pick a winner among versions of a key: later epoch, then
 * higher Lamport timestamp, then higher node address. Within an epoch a causally later write has a
 * higher Lamport timestamp, so it wins; concurrent writes resolve the same way everywhere.
 *
 * The epoch comes first because Lamport timestamps are not ordered across a reshard: a node cut off
 * during one keeps writing in the old epoch, and hands those writes to the new owners only when it is
 * back. Such a write is never causally after a write of the new epoch (a client that saw the new
 * epoch is not served by a node still in the old one), but its timestamp can be higher; by timestamp
 * alone it would overwrite a newer write that depends on it. (Found by the simulator.)
 */
export function compareStamps(a: Stamp, b: Stamp): number {
  const epochA = a.epoch ?? 0;
  const epochB = b.epoch ?? 0;
  if (epochA !== epochB) return epochA - epochB;
  if (a.lamport !== b.lamport) return a.lamport - b.lamport;
  if (a.node === b.node) return 0;
  return a.node < b.node ? -1 : 1;
}

/** True when `candidate` should replace `current` as the stored version. */
export function supersedes(candidate: Version, current: Version | undefined): boolean {
  return current === undefined || compareStamps(candidate.stamp, current.stamp) > 0;
}
