// Durable nodes under real faults, judged by the history checker: every replica of a shard
// SIGKILLed at once under write load, then restarted, loses no acknowledged write; a 30 s partition
// with writes on both sides converges after the heal (the time it takes is printed).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatReport } from '../../harness/check/checker.ts';
import type { Lab } from '../../harness/lab/lab.ts';
import { runTorture, type TortureResult } from '../../harness/lab/torture.ts';
import { skipReason, sleep } from './helpers.ts';

function verdict(result: TortureResult): string {
  const { report, ...summary } = result;
  return `${JSON.stringify(summary)}\n${report !== undefined ? formatReport(report, 20) : ''}`;
}

function assertClean(result: TortureResult): void {
  const context = verdict(result);
  assert.equal(result.causalViolations, 0, context);
  assert.equal(result.lostWrites, 0, context);
  assert.equal(result.divergentKeys, 0, context);
  assert.ok(result.quiescent, `no quiescence after the heal; ${context}`);
  assert.deepEqual(result.crashes, {}, context);
}

async function membersByShard(lab: Lab): Promise<Map<string, string[]>> {
  const shards = new Map<string, string[]>();
  for (const node of lab.addresses()) {
    const status = await lab.status(node);
    const shard = status?.shard as string | undefined;
    if (shard === undefined) throw new Error(`no shard for ${node}: ${JSON.stringify(status)}`);
    shards.set(shard, [...(shards.get(shard) ?? []), node]);
  }
  return shards;
}

test('every replica of a shard SIGKILLed under write load and restarted: no acknowledged write lost', { skip: skipReason, timeout: 180_000 }, async (t) => {
  let victims: string[] = [];
  const result = await runTorture({
    seconds: 10,
    seed: 4242,
    nodes: 4,
    shards: 2,
    clients: 6,
    keys: 12,
    faults: [],
    log: () => {},
    scenario: async (lab, log) => {
      await sleep(3_000);
      const [first] = [...(await membersByShard(lab)).values()];
      victims = first ?? [];
      log(`SIGKILL ${victims.join(' ')} at once`);
      await Promise.all(victims.map((node) => lab.kill(node)));
      await sleep(2_000);
      for (const node of victims) lab.start(node);
      await lab.waitReady(victims, 30_000);
      log('restarted');
      await sleep(3_000);
    },
  });
  t.diagnostic(`killed ${victims.join(', ')}; ${result.ok} operations acknowledged, ${result.failed} failed, ${result.unknown} unknown`);
  assert.equal(victims.length, 2, 'a whole shard (2 replicas) was killed');
  assert.ok(result.ok > 200, `the clients got work done: ${verdict(result)}`);
  assertClean(result);
});

test('a 30 s partition with writes on both sides converges after the heal', { skip: skipReason, timeout: 240_000 }, async (t) => {
  const result = await runTorture({
    seconds: 5,
    seed: 3030,
    nodes: 4,
    shards: 1,
    clients: 6,
    keys: 12,
    faults: [],
    log: () => {},
    scenario: async (lab, log) => {
      await sleep(2_000);
      const nodes = lab.addresses();
      const sides = [nodes.slice(0, 2), nodes.slice(2)];
      log(`partition ${sides.map((s) => s.join(' ')).join(' | ')} for 30 s`);
      await lab.partition(sides);
      await sleep(30_000);
      await lab.heal();
    },
  });
  t.diagnostic(`converged ${result.quiescenceMs} ms after the heal; ${result.ok} operations acknowledged`);
  assert.ok(result.ok > 300, `both sides took writes: ${verdict(result)}`);
  assertClean(result);
});
