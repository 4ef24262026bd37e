// `npm run bench [-- WHAT [flags]]`: which benchmark to run.
//   (none)  the store against a bare node:http echo under wrk (bench/http.ts), then throughput and
//           latency (bench/run.ts), then anti-entropy repair (bench/repair.ts), then a reshard
//           2 -> 3 of 100k keys (bench/reshard.ts)
//   http | run | repair | reshard | flood | parked   one of them, with the flags that follow
//   memory   RSS per node of 3 replicas holding 1M keys (a few minutes: not in the default run)
// Without wrk, bench/http.ts exits with status 3 after saying so: the default run goes on without it.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const benches: Record<string, string> = { http: 'http.ts', run: 'run.ts', repair: 'repair.ts', flood: 'flood.ts', parked: 'parked.ts', memory: 'memory.ts', reshard: 'reshard.ts' };
/** bench/http.ts's exit status when wrk is not installed. */
const wrkMissingStatus = 3;
const [first, ...rest] = process.argv.slice(2);
const chosen = first !== undefined && Object.hasOwn(benches, first) ? [first] : ['http', 'run', 'repair', 'reshard'];
const args = first !== undefined && Object.hasOwn(benches, first) ? rest : process.argv.slice(2);
for (const name of chosen) {
  const result = spawnSync(process.execPath, [join(import.meta.dirname, benches[name] as string), ...args], { stdio: 'inherit' });
  if (result.status === wrkMissingStatus && name === 'http' && chosen.length > 1) continue;
  if (result.status !== 0) process.exit(result.status ?? 1);
}
