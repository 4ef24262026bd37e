// The deterministic simulator: a seed replays exactly, a swarm of 200 seeds with random fault
// settings passes the checker and the liveness bound, and each bug planted in the core is caught
// within a bounded number of seeds (and the same seed passes without it).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PLANTED_BUGS, type PlantedBug } from '../../src/core/planted-bugs.ts';
import { replayCommand, runSwarm } from '../../harness/sim/run.ts';
import { settingsFor, World, type WorldSettings } from '../../harness/sim/world.ts';

/** The first seed of the swarm npm test runs; `npm run sim -- --seeds 200 --first 2000` is the same run. */
const SWARM_FIRST = 2000;
const SWARM_SEEDS = 200;
/** A planted bug must be caught within this many seeds. */
const SEEDS_TO_CATCH = 30;

function world(seed: number, bugs: PlantedBug[], overrides: Partial<WorldSettings> = {}): World {
  const base = settingsFor(seed);
  const settings = { ...overrides, ...(overrides.nodeEnv ? { nodeEnv: { ...base.nodeEnv, ...overrides.nodeEnv } } : {}) };
  return new World({ seed, bugs, settings });
}

test('one seed gives one history: the same seed twice, the same hash; another seed, another', async () => {
  const first = await world(7, []).run();
  const again = await world(7, []).run();
  const other = await world(8, []).run();
  assert.ok(first.ops > 50, `a world runs a workload (${first.ops} operations)`);
  assert.equal(again.hash, first.hash);
  assert.equal(again.events, first.events);
  assert.deepEqual(again.nemesis, first.nemesis);
  assert.notEqual(other.hash, first.hash);
});

async function swarm(t: { diagnostic(message: string): void }, seeds: number): Promise<void> {
  const failures: string[] = [];
  const summary = await runSwarm({
    first: SWARM_FIRST,
    seeds,
    onResult: (result) => {
      if (!result.passed) {
        failures.push(
          `seed ${result.seed}: ${result.causalViolations} causal violations, ${result.lostWrites} lost writes, ${result.divergentKeys} divergent keys, ` +
            `quiescent ${result.quiescent} ${result.notQuiescentBecause ?? ''} ${result.nodeErrors.join('; ')}\n  ${replayCommand(result.seed, [])}`,
        );
      }
    },
  });
  t.diagnostic(JSON.stringify(summary));
  assert.equal(summary.seeds, seeds);
  assert.ok(summary.ops > seeds * 50, `the swarm ran a real workload (${summary.ops} operations)`);
  assert.deepEqual(failures, []);
}

test(`a swarm of ${SWARM_SEEDS} seeds with random fault settings, reshards included: every history checks out and the store converges`, async (t) => {
  await swarm(t, SWARM_SEEDS);
});

/**
 * Seeds that once failed, each for a real bug since fixed (the commit that fixed it says more). They
 * run in well under a second each; should the world generator change, they stay ordinary seeds.
 */
const REGRESSIONS: [seed: number, bug: string][] = [
  [2126, 'a client saw a write of a node cut off during a reshard, then read the new epoch without it'],
  [18, 'the same, with crashes and several reshards'],
  [20253, 'a write concurrent with a delete arrived after the tombstone was collected and revived the key'],
  [30673, 'a node dropped from every view while it restarted was never probed again'],
  [30832, 'a late transfer reached replicas frozen for the next reshard and was dropped at its commit'],
  [40075, 'add-member sent to the added node itself left it a member without a replica'],
  [50062, 'a late old-epoch version revived a key whose tombstone was collected before a restart'],
  [50241, 'a new member copied a shard whose last delete was collected, and stamped its next write below it'],
  [60038, 'a restart restored base versions after the base clocks and dropped them as old news'],
  [60519, 'a replica that collected a tombstone refused the base tombstone its peers kept, and never converged'],
  [60539, 'a tombstone collected before the collector knew of a new member never reached it, though its clock said so'],
];

for (const [seed, bug] of REGRESSIONS) {
  test(`regression seed ${seed} passes: ${bug}`, async () => {
    const result = await world(seed, []).run();
    assert.equal(result.passed, true, result.report ?? result.notQuiescentBecause ?? '');
  });
}

/** For each planted bug, a fault mix that gives it a chance (swarm testing narrowed to the bug's ground). */
const GROUND: Record<PlantedBug, Partial<WorldSettings>> = {
  'read-skips-deps': { faults: ['partition', 'slow'] },
  'forget-tombstones': { faults: ['partition', 'slow'], keys: 4, nodeEnv: { ANTI_ENTROPY_INTERVAL_MS: '500' } },
  'reshard-skips-partition': { faults: ['reshard', 'partition'], keys: 12, shards: 2, nodes: 4 },
  'reshard-no-full-sender': { faults: ['reshard', 'partition'], keys: 12, shards: 2, nodes: 4 },
  'stale-replica-merge': {
    faults: ['crash', 'isolate'],
    keys: 12,
    nodes: 3,
    shards: 0,
    nodeEnv: { TOMBSTONE_GRACE_MS: '500', ANTI_ENTROPY_INTERVAL_MS: '250' },
  },
};

for (const bug of PLANTED_BUGS) {
  test(`planted bug ${bug}: caught within ${SEEDS_TO_CATCH} seeds, and that seed passes without it`, async (t) => {
    let caught: number | null = null;
    let what = '';
    for (let seed = 1; seed <= SEEDS_TO_CATCH && caught === null; seed++) {
      const result = await world(seed, [bug], GROUND[bug]).run();
      if (!result.passed) {
        caught = seed;
        what = `${result.causalViolations} causal violations, ${result.lostWrites} lost writes, ${result.divergentKeys} divergent keys, quiescent ${result.quiescent}`;
      }
    }
    assert.notEqual(caught, null, `${bug} went unnoticed for ${SEEDS_TO_CATCH} seeds`);
    t.diagnostic(`${bug}: caught at seed ${caught}: ${what}`);
    const clean = await world(caught as number, [], GROUND[bug]).run();
    assert.equal(clean.passed, true, `seed ${caught} fails without the planted bug too: ${clean.report ?? clean.notQuiescentBecause}`);
  });
}
