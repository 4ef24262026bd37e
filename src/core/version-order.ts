import type { Stamp, Version } from './types.ts';

/**
 * The one order every replica uses to pick a winner among versions of a key: higher Lamport
 * timestamp, then higher node address. A causally later write has a higher Lamport timestamp, so it
 * always wins; concurrent writes resolve the same way everywhere.
 */
export function compareStamps(a: Stamp, b: Stamp): number {
  if (a.lamport !== b.lamport) return a.lamport - b.lamport;
  if (a.node === b.node) return 0;
  return a.node < b.node ? -1 : 1;
}

/** True when `candidate` should replace `current` as the stored version. */
export function supersedes(candidate: Version, current: Version | undefined): boolean {
  return current === undefined || compareStamps(candidate.stamp, current.stamp) > 0;
}
