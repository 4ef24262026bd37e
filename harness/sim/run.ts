// npm run sim -- --seed S          one world, replayed exactly; prints its history hash
// npm run sim -- --seeds N         a swarm of N worlds (seeds from --first, default random)
// npm run sim -- --scenario FILE   a scripted scenario (harness/sim/script.ts): prints its transcript,
//                                  exits 1 when it differs from the file's; --rewrite writes it in
// Options: --bug NAME (plant a known bug; repeatable), --without FAULT (leave a fault out of every
// world's mix; repeatable), --seconds N (client load per world),
// --log FILE (JSON lines of every node of a single world, with simulated time), --verbose.
// The last line of output is one JSON object: {seeds, failures, ops, simSeconds, wallSeconds, ...}.

import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { isPlantedBug, PLANTED_BUGS, type PlantedBug } from '../../src/core/planted-bugs.ts';
import { runScenario } from './script.ts';
import { FAULTS, settingsFor, World, type Fault, type WorldResult, type WorldSettings } from './world.ts';

export interface SwarmOptions {
  first: number;
  seeds: number;
  bugs?: readonly PlantedBug[];
  seconds?: number;
  /** Faults left out of every world's mix. */
  without?: readonly Fault[];
  /** Stop at the first failing seed. */
  stopAtFailure?: boolean;
  onResult?: (result: WorldResult) => void;
}

export interface SwarmSummary {
  seeds: number;
  failures: number;
  failingSeeds: number[];
  ops: number;
  simSeconds: number;
  wallSeconds: number;
  opsPerWallSecond: number;
  events: number;
}

export async function runWorld(
  seed: number,
  bugs: readonly PlantedBug[] = [],
  seconds?: number,
  log?: (line: string) => void,
  without: readonly Fault[] = [],
): Promise<WorldResult> {
  const settings: Partial<WorldSettings> = {};
  if (seconds !== undefined) settings.seconds = seconds;
  if (without.length > 0) settings.faults = settingsFor(seed).faults.filter((f) => !without.includes(f));
  return new World({ seed, bugs, settings, ...(log ? { log } : {}) }).run();
}

export async function runSwarm(options: SwarmOptions): Promise<SwarmSummary> {
  const started = performance.now();
  const summary: SwarmSummary = { seeds: 0, failures: 0, failingSeeds: [], ops: 0, simSeconds: 0, wallSeconds: 0, opsPerWallSecond: 0, events: 0 };
  for (let i = 0; i < options.seeds; i++) {
    const seed = (options.first + i) >>> 0;
    const result = await runWorld(seed, options.bugs, options.seconds, undefined, options.without);
    summary.seeds++;
    summary.ops += result.ops;
    summary.simSeconds += result.simSeconds;
    summary.events += result.events;
    if (!result.passed) {
      summary.failures++;
      summary.failingSeeds.push(seed);
    }
    options.onResult?.(result);
    if (!result.passed && options.stopAtFailure) break;
  }
  summary.wallSeconds = (performance.now() - started) / 1000;
  summary.opsPerWallSecond = Math.round(summary.ops / summary.wallSeconds);
  summary.simSeconds = Math.round(summary.simSeconds);
  summary.wallSeconds = Math.round(summary.wallSeconds * 10) / 10;
  return summary;
}

export function replayCommand(seed: number, bugs: readonly PlantedBug[], seconds?: number, without: readonly Fault[] = []): string {
  return [
    'npm run sim --',
    `--seed ${seed}`,
    ...bugs.map((b) => `--bug ${b}`),
    ...(seconds !== undefined ? [`--seconds ${seconds}`] : []),
    ...without.map((f) => `--without ${f}`),
  ].join(' ');
}

function describe(result: WorldResult, bugs: readonly PlantedBug[], seconds?: number, without: readonly Fault[] = []): string {
  const verdict = result.passed ? 'ok  ' : 'FAIL';
  const s = result.settings;
  const line =
    `${verdict} seed ${result.seed} hash ${result.hash}: ${result.ops} ops (${result.ok} ok, ${result.failed} failed, ${result.unknown} unknown), ` +
    `${s.nodes} nodes, ${s.shards === 0 ? 'replicated' : `${s.shards} shards`}, faults [${s.faults.join(' ')}], ` +
    `${result.simSeconds.toFixed(1)} s simulated, quiescent ${result.quiescenceMs === null ? 'NEVER' : `after ${(result.quiescenceMs / 1000).toFixed(1)} s`}`;
  if (result.passed) return line;
  const why = [
    `  causal violations ${result.causalViolations}, lost writes ${result.lostWrites}, divergent keys ${result.divergentKeys}`,
    ...(result.notQuiescentBecause ? [`  not quiescent: ${result.notQuiescentBecause}`] : []),
    ...result.nodeErrors.slice(0, 5).map((e) => `  node error: ${e}`),
    `  replay: ${replayCommand(result.seed, bugs, seconds, without)}`,
  ];
  return [line, ...why].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seed: { type: 'string' },
      seeds: { type: 'string' },
      first: { type: 'string' },
      bug: { type: 'string', multiple: true },
      without: { type: 'string', multiple: true },
      seconds: { type: 'string' },
      log: { type: 'string' },
      scenario: { type: 'string' },
      rewrite: { type: 'boolean', default: false },
      verbose: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      'usage: npm run sim -- (--seed S | --seeds N [--first S]) [--bug NAME]... [--without FAULT]... [--seconds N] [--log FILE] [--verbose]\n' +
        '       npm run sim -- --scenario FILE [--rewrite] [--log FILE]\n' +
        `faults: ${FAULTS.join(', ')}\n` +
        `planted bugs: ${PLANTED_BUGS.join(', ')}\n`,
    );
    return;
  }
  if (values.scenario !== undefined) {
    const path = values.scenario;
    const logFile = values.log;
    if (logFile) writeFileSync(logFile, '');
    const text = readFileSync(path, 'utf8');
    const run = await runScenario(text, path, logFile ? { log: (line) => appendFileSync(logFile, `${line}\n`) } : {});
    process.stdout.write(run.text);
    if (values.rewrite) {
      if (run.text !== text) writeFileSync(path, run.text);
    } else if (run.text !== text) {
      process.stderr.write(`${path}: the transcript differs from the file (--rewrite writes it in)\n`);
      process.exitCode = 1;
    }
    return;
  }
  const bugs = (values.bug ?? []).map((name) => {
    if (!isPlantedBug(name)) throw new Error(`unknown bug ${name}; known: ${PLANTED_BUGS.join(', ')}`);
    return name;
  });
  const seconds = values.seconds === undefined ? undefined : Number(values.seconds);
  const without = (values.without ?? []).map((name) => {
    if (!(FAULTS as readonly string[]).includes(name)) throw new Error(`unknown fault ${name}; known: ${FAULTS.join(', ')}`);
    return name as Fault;
  });
  if (values.seed !== undefined) {
    const seed = Number(values.seed);
    const logFile = values.log;
    if (logFile) writeFileSync(logFile, '');
    const started = performance.now();
    const result = await runWorld(seed, bugs, seconds, logFile ? (line) => appendFileSync(logFile, `${line}\n`) : undefined, without);
    process.stdout.write(`${describe(result, bugs, seconds, without)}\n`);
    if (values.verbose || !result.passed) {
      process.stdout.write(`nemesis:\n${result.nemesis.map((l) => `  ${l}`).join('\n')}\n`);
      if (result.report) process.stdout.write(`${result.report}\n`);
    }
    const wallSeconds = (performance.now() - started) / 1000;
    process.stdout.write(
      `${JSON.stringify({ seeds: 1, failures: result.passed ? 0 : 1, ops: result.ops, simSeconds: Math.round(result.simSeconds), wallSeconds: Math.round(wallSeconds * 10) / 10, seed, hash: result.hash, events: result.events, network: result.network })}\n`,
    );
    process.exitCode = result.passed ? 0 : 1;
    return;
  }
  const count = Number(values.seeds ?? 20);
  const first = values.first !== undefined ? Number(values.first) : Math.floor(Math.random() * 2 ** 31);
  const summary = await runSwarm({
    first,
    seeds: count,
    bugs,
    ...(seconds !== undefined ? { seconds } : {}),
    without,
    onResult: (result) => {
      if (values.verbose || !result.passed) process.stdout.write(`${describe(result, bugs, seconds, without)}\n`);
    },
  });
  process.stdout.write(`${JSON.stringify({ ...summary, first, bugs, without, replay: summary.failingSeeds.map((s) => replayCommand(s, bugs, seconds, without)) })}\n`);
  process.exitCode = summary.failures === 0 ? 0 : 1;
}

if (import.meta.main) await main();
