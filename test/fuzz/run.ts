// `npm run fuzz -- --runs N --seed S`: the fuzz properties of test/fuzz/fuzz.test.ts (and the raw
// HTTP-layer cases of test/integration/hostile.test.ts), longer, against stores this script starts
// itself: 3 nodes replicated-only at --base-port (default 19300) and 4 nodes in 2 shards at
// --base-port + 10. Prints the seed first, a summary per property, and how to replay each failure;
// exits 1 if anything failed.
//
// Options:
//   --runs N          cases per property (default 200)
//   --seed S          fast-check seed (default: time-based, printed)
//   --only a,b        only these properties (view, kvs, shard-read, shard-write, unknown-path, http-odd, raw)
//   --store which     replicated | sharded | both (default both)
//   --keep-going      record every failing case and go on (grouped by kind, no shrinking)
//   --path P          fast-check replay path of a counterexample (with --seed and --only)
//   --base-port P     first port (default 19300)

import { parseArgs } from 'node:util';
import { Cluster } from '../helpers/cluster.ts';
import { getShardIds, type NodeAddress } from '../helpers/http.ts';
import {
  RAW_CASES,
  checkAlive,
  closeFuzzConnections,
  formatStatuses,
  fuzzProperties,
  judgeRaw,
  rawExchange,
  runFuzzProperty,
  type FuzzOutcome,
  type FuzzTarget,
} from './cases.ts';

const USAGE = 'usage: npm run fuzz -- [--runs N] [--seed S] [--only view,kvs,...,raw] [--store replicated|sharded|both] [--keep-going] [--path P] [--base-port P]';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '200' },
    seed: { type: 'string' },
    only: { type: 'string' },
    store: { type: 'string', default: 'both' },
    'keep-going': { type: 'boolean', default: false },
    path: { type: 'string' },
    'base-port': { type: 'string', default: '19300' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});

if (values.help) {
  console.log(USAGE);
  process.exit(0);
}

const runs = positiveInt('runs', values.runs);
const seed = values.seed === undefined ? Date.now() % 2 ** 31 : positiveInt('seed', values.seed, true);
const basePort = positiveInt('base-port', values['base-port']);
const only = values.only === undefined ? null : new Set(values.only.split(',').map((s) => s.trim()).filter(Boolean));
const KNOWN = ['view', 'kvs', 'shard-read', 'shard-write', 'unknown-path', 'http-odd', 'raw'];
for (const name of only ?? []) if (!KNOWN.includes(name)) fail(`--only: no property ${JSON.stringify(name)} (have ${KNOWN.join(', ')})\n${USAGE}`);
const keepGoing = values['keep-going'];
if (!['replicated', 'sharded', 'both'].includes(values.store)) fail(`--store must be replicated, sharded or both\n${USAGE}`);

function positiveInt(name: string, text: string, zeroOk = false): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < (zeroOk ? 0 : 1)) fail(`--${name} must be a ${zeroOk ? 'non-negative' : 'positive'} integer, got ${JSON.stringify(text)}\n${USAGE}`);
  return n;
}

function fail(message: string): never {
  console.error(message);
  process.exit(2);
}

interface StoreSpec {
  label: string;
  start: () => Promise<Cluster>;
}

const stores: StoreSpec[] = [];
if (values.store !== 'sharded') stores.push({ label: '3 nodes, replicated only', start: () => Cluster.start({ basePort, nodeCount: 3 }) });
if (values.store !== 'replicated') stores.push({ label: '4 nodes, 2 shards', start: () => Cluster.start({ basePort: basePort + 10, nodeCount: 4, shardCount: 2 }) });

const replay = (name: string, s: number, path?: string): string =>
  `npm run fuzz -- --seed ${s} --runs ${runs} --only ${name} --store ${values.store}${path ? ` --path ${path}` : ''}`;

console.log(`fuzz: seed ${seed}, ${runs} runs per property${keepGoing ? ', keep going' : ''}${only ? `, only ${[...only].join(',')}` : ''}`);
console.log(`replay: npm run fuzz -- --seed ${seed} --runs ${runs}${values.only ? ` --only ${values.only}` : ''} --store ${values.store}`);

const outcomes: FuzzOutcome[] = [];
let rawCases = 0;
const rawFailures: string[] = [];
const started = performance.now();

for (const spec of stores) {
  console.log(`\n== ${spec.label}: starting`);
  let cluster: Cluster | undefined;
  try {
    cluster = await spec.start();
    const c = cluster;
    const nodes = c.addresses();
    const target: FuzzTarget = {
      label: spec.label,
      nodes,
      crashed: () => {
        const gone = [...c.nodes.values()].filter((n) => n.crashed !== null);
        return gone.length === 0 ? null : gone.map((n) => `${n.addr}: ${n.crashed}\n${n.tail(20)}`).join('\n');
      },
    };
    const properties = fuzzProperties({ nodeCount: nodes.length, shardIds: await getShardIds(nodes[0] as NodeAddress) });
    for (const property of properties) {
      if (only && !only.has(property.name)) continue;
      const t0 = performance.now();
      const outcome = await runFuzzProperty(target, property, {
        seed,
        numRuns: runs,
        keepGoing,
        aliveEvery: 25,
        ...(values.path !== undefined ? { path: values.path } : {}),
        replay,
      });
      outcomes.push(outcome);
      const failed = outcome.ok ? 'ok' : keepGoing ? `${[...outcome.failures.values()].reduce((n, f) => n + f.count, 0)} failing cases` : 'FAILED';
      console.log(`  ${property.name.padEnd(13)} ${String(outcome.cases).padStart(6)} cases  ${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s  ${failed}  (statuses ${formatStatuses(outcome.statuses)})`);
    }
    if (!only || only.has('raw')) {
      for (const rc of RAW_CASES) {
        rawCases++;
        const addr = nodes[0] as NodeAddress;
        const result = await rawExchange(addr, rc.bytes(addr));
        const problems = judgeRaw(rc.statuses, result);
        const alive = await checkAlive(nodes, target.crashed);
        if (alive) problems.push(`afterwards: ${alive.detail}`);
        if (problems.length > 0) rawFailures.push(`[${spec.label}] raw case "${rc.name}": ${problems.join('; ')}`);
      }
      console.log(`  ${'raw'.padEnd(13)} ${String(RAW_CASES.length).padStart(6)} cases  ${rawFailures.length === 0 ? 'ok' : `${rawFailures.length} failing so far`}`);
    }
  } catch (err) {
    rawFailures.push(`[${spec.label}] the run itself failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
  } finally {
    if (cluster) {
      const crashed = [...cluster.nodes.values()].filter((n) => n.crashed !== null);
      for (const n of crashed) rawFailures.push(`[${spec.label}] node ${n.addr} crashed: ${n.crashed}\n${n.tail(30)}`);
      await cluster.stop();
    }
  }
}
await closeFuzzConnections().catch(() => undefined);

// ---- summary -----------------------------------------------------------------------------------

const totalCases = outcomes.reduce((n, o) => n + o.cases, 0) + rawCases;
const failedOutcomes = outcomes.filter((o) => !o.ok);
console.log(`\n== summary: ${totalCases} cases in ${((performance.now() - started) / 1000).toFixed(1)} s, seed ${seed}`);
for (const o of failedOutcomes) {
  console.log(`\n-- ${o.property} on ${o.target}: FAILED (seed ${o.seed})`);
  if (o.report) console.log(indent(o.report));
  for (const [kind, f] of o.failures) {
    console.log(`  [${f.count}x] ${kind}\n${indent(f.example, 6)}`);
  }
  if (o.failures.size > 0) console.log(`  replay: ${replay(o.property, o.seed)}${keepGoing ? ' --keep-going' : ''}`);
}
for (const f of rawFailures) console.log(`\n-- ${f}`);
const failures = failedOutcomes.length + rawFailures.length;
console.log(`\n${failures === 0 ? 'PASS' : 'FAIL'}: ${outcomes.length} properties, ${rawCases} raw cases, ${failures} failing; seed ${seed}${failures ? `; replay: npm run fuzz -- --seed ${seed} --runs ${runs}${values.only ? ` --only ${values.only}` : ''} --store ${values.store}` : ''}`);
process.exit(failures === 0 ? 0 : 1);

function indent(text: string, n = 4): string {
  return text
    .split('\n')
    .map((l) => ' '.repeat(n) + l)
    .join('\n');
}
