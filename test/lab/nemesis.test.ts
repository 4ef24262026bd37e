// A short nemesis run (about a minute) on a lab cluster of 6 nodes in 2 shards, with DATA_DIR as
// in production: seeded clients while the nemesis partitions (both ways and one way), cuts nodes
// off, slows links and SIGKILLs and restarts nodes; then heal, quiescence, and the history checker.
//
// The seed is fixed so that CI runs the same schedule of faults each time (timing still varies:
// these are real processes); KVS_TORTURE_SEED picks another. Long runs with many seeds are
// `npm run torture`. The seed is printed, and in the failure message with the command that reruns it.
// KVS_TORTURE_SECONDS changes the length.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ALL_FAULTS, runTorture } from '../../harness/lab/torture.ts';
import { formatReport } from '../../harness/check/checker.ts';
import { skipReason } from './helpers.ts';

const SECONDS = Number(process.env.KVS_TORTURE_SECONDS ?? 45);
const DEFAULT_SEED = 31337;

test(`nemesis: ${SECONDS} s of partitions, one-way partitions, cut-off nodes, latency and SIGKILLs; the checker finds nothing`, { skip: skipReason, timeout: (SECONDS + 150) * 1000 }, async () => {
  const seed = process.env.KVS_TORTURE_SEED !== undefined ? Number(process.env.KVS_TORTURE_SEED) : DEFAULT_SEED;
  const lines: string[] = [];
  const result = await runTorture({
    seconds: SECONDS,
    seed,
    nodes: 6,
    shards: 2,
    clients: 8,
    keys: 16,
    faults: [...ALL_FAULTS],
    log: (line) => {
      lines.push(line);
      console.log(line);
    },
  });
  const { report, ...summary } = result;
  console.log(JSON.stringify(summary));
  const context = `seed ${seed} (rerun: npm run torture -- --seconds ${SECONDS} --seed ${seed} --faults ${ALL_FAULTS.join(',')})\n` +
    `${JSON.stringify(summary)}\n${report !== undefined ? formatReport(report, 20) : ''}`;
  assert.equal(result.causalViolations, 0, context);
  assert.equal(result.lostWrites, 0, context);
  assert.equal(result.divergentKeys, 0, context);
  assert.ok(result.quiescent, `the store did not quiesce after heal; ${context}`);
  assert.deepEqual(result.crashes, {}, context);
  assert.ok(result.ok > 300, `too few operations succeeded to mean anything; ${context}`);
});
