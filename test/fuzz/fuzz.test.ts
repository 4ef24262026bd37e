// Seeded fast-check fuzzing of every public route of real nodes (see test/fuzz/cases.ts for the
// generators and the contract): arbitrary JSON and bytes as bodies, odd keys, ids, percent-encodings,
// methods and paths. Each case must get a 2xx or 4xx, an error must be a JSON object with an
// "error" string, and every node keeps answering GET /view.
//
// Two stores: 3 nodes replicated-only (ports 19100-19102) and 4 nodes in 2 shards (19110-19113).
// The seed is fixed so `npm test` is deterministic; FUZZ_SEED=<n> picks another, FUZZ_SCALE=<x>
// multiplies the number of cases. `npm run fuzz -- --runs N --seed S` runs the same properties longer.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster, printLogsOnFailure } from '../helpers/cluster.ts';
import { getShardIds, type NodeAddress } from '../helpers/http.ts';
import { checkAlive, formatStatuses, fuzzProperties, runFuzzProperty, type FuzzTarget } from './cases.ts';

const SEED = envNumber('FUZZ_SEED', 20_260_601);
const SCALE = envNumber('FUZZ_SCALE', 1);
/** Bound on each property, shrinking included, so a server that answers slowly cannot stall the suite. */
const PROPERTY_TIME_LIMIT_MS = 20_000;

function envNumber(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text.trim() === '') return fallback;
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got ${JSON.stringify(text)}`);
  return n;
}

function targetOf(cluster: Cluster, label: string): FuzzTarget {
  return {
    label,
    nodes: cluster.addresses(),
    crashed: () => {
      const gone = [...cluster.nodes.values()].filter((n) => n.crashed !== null);
      return gone.length === 0 ? null : gone.map((n) => `${n.addr}: ${n.crashed}\n${n.tail(20)}`).join('\n');
    },
  };
}

/** One describe per store: start it, run each property as its own test, check it is still whole. */
function fuzzStore(label: string, start: () => Promise<Cluster>, runs: Record<string, number>): void {
  describe(`fuzz: ${label}`, () => {
    let cluster: Cluster | undefined;
    let target: FuzzTarget;
    let names: string[] = [];
    let properties: ReturnType<typeof fuzzProperties> = [];

    before(async () => {
      cluster = await start();
      target = targetOf(cluster, label);
      const nodes = cluster.addresses();
      properties = fuzzProperties({ nodeCount: nodes.length, shardIds: await getShardIds(nodes[0] as NodeAddress) });
      names = properties.map((p) => p.name);
    });
    after(async () => {
      await cluster?.stop();
    });
    printLogsOnFailure(() => cluster, 30);

    for (const [name, numRuns] of Object.entries(runs)) {
      test(`${name}: ${Math.max(1, Math.round(numRuns * SCALE))} seeded cases (seed ${SEED})`, { timeout: PROPERTY_TIME_LIMIT_MS + 20_000 }, async (t) => {
        const property = properties.find((p) => p.name === name);
        assert.ok(property, `no fuzz property named ${name} (have ${names.join(', ')})`);
        const outcome = await runFuzzProperty(target, property, {
          seed: SEED,
          numRuns: Math.max(1, Math.round(numRuns * SCALE)),
          aliveEvery: 25,
          timeLimitMs: PROPERTY_TIME_LIMIT_MS,
          replay: (prop, seed, path) =>
            `FUZZ_SEED=${seed} node --test test/fuzz/fuzz.test.ts, or npm run fuzz -- --seed ${seed} --runs ${numRuns} --only ${prop}${path ? ` --path ${path}` : ''}`,
        });
        t.diagnostic(`${outcome.cases} cases sent, seed ${SEED}; statuses ${formatStatuses(outcome.statuses)}`);
        assert.ok(outcome.ok, outcome.report);
      });
    }

    test('afterwards every node is up, answers GET /view, and none crashed', async () => {
      cluster!.assertNoCrash();
      for (const addr of cluster!.addresses()) {
        assert.ok(cluster!.node(addr).alive, `${addr} must still be running`);
      }
      const problem = await checkAlive(target.nodes, target.crashed, 1_000);
      assert.equal(problem, null, problem?.detail);
    });
  });
}

fuzzStore('3 nodes, replicated only', () => Cluster.start({ basePort: 19100, nodeCount: 3 }), {
  view: 60,
  kvs: 150,
  'shard-read': 80,
  'shard-write': 60,
  'unknown-path': 50,
  'http-odd': 50,
});

fuzzStore('4 nodes, 2 shards', () => Cluster.start({ basePort: 19110, nodeCount: 4, shardCount: 2 }), {
  kvs: 120,
  'shard-read': 60,
  'shard-write': 40,
  view: 30,
  'http-odd': 30,
});
