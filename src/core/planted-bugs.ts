// Known bugs the core can be told to have, for one purpose: to show that the simulator (harness/sim)
// and its checker catch bugs of these kinds. Only the simulator sets them (through NodeEnv); no
// configuration, environment variable or request can, so a running store never has them.

export const PLANTED_BUGS = [
  /** Reads are served without checking that the replica has the reader's causal past. */
  'read-skips-deps',
  /**
   * Anti-entropy collects tombstones the other replicas may not have seen yet, and forgets them:
   * no graveyard, no horizon.
   */
  'forget-tombstones',
  /** A reshard leaves the first partition with data to move behind. */
  'reshard-skips-partition',
  /**
   * A reshard's senders leave out of their transfers what any other replica of their old shard
   * reflects, as if every one of them were counted on to send it: no full sender.
   */
  'reshard-no-full-sender',
  /**
   * A member that missed tombstones collected without it (away longer than the tombstone grace)
   * merges its old replica back as if it had not: its peers' horizons are not checked, and what it
   * pulls carries no collected tombstones (which would otherwise delete what it still holds: the
   * graveyard keeps those collected without a member, see Graveyard).
   */
  'stale-replica-merge',
] as const;

export type PlantedBug = (typeof PLANTED_BUGS)[number];

export function isPlantedBug(value: string): value is PlantedBug {
  return (PLANTED_BUGS as readonly string[]).includes(value);
}

export const NO_BUGS: ReadonlySet<PlantedBug> = new Set();
