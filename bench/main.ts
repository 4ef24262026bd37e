// `npm run bench [-- WHAT [flags]]`: which benchmark to run.
//   (none)  throughput and latency (bench/run.ts), then anti-entropy repair (bench/repair.ts)
//   run | repair | flood | parked   one of them, with the flags that follow
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const benches: Record<string, string> = { run: 'run.ts', repair: 'repair.ts', flood: 'flood.ts', parked: 'parked.ts' };
const [first, ...rest] = process.argv.slice(2);
const chosen = first !== undefined && Object.hasOwn(benches, first) ? [first] : ['run', 'repair'];
const args = first !== undefined && Object.hasOwn(benches, first) ? rest : process.argv.slice(2);
for (const name of chosen) {
  const result = spawnSync(process.execPath, [join(import.meta.dirname, benches[name] as string), ...args], { stdio: 'inherit' });
  if (result.status !== 0) process.exit(result.status ?? 1);
}
