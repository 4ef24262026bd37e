// `npm run build` (and prepack): compiles src/ into dist/ as JavaScript with declarations, so the
// package runs where Node does not strip types (under node_modules). Three steps:
//   1. remove dist/, so no module deleted from src/ survives in the package;
//   2. tsc -p tsconfig.build.json (relative `.ts` imports, dynamic ones too, become `.js`);
//   3. copy every file of src/ that is not TypeScript (src/node/ui/dashboard.html...) to the same
//      place under dist/, since modules read them beside themselves at run time.

import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';

const ROOT = join(import.meta.dirname, '..');
const SRC = join(ROOT, 'src');
const DIST = join(ROOT, 'dist');

/** Files of `dir` and below, as paths relative to `dir`. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)));
}

rmSync(DIST, { recursive: true, force: true });

const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const compiled = spawnSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json')], { cwd: ROOT, stdio: 'inherit' });
if (compiled.status !== 0) {
  console.error(`build: tsc failed (${compiled.status ?? compiled.signal})`);
  process.exit(1);
}

const assets = filesUnder(SRC).filter((file) => !file.endsWith('.ts'));
for (const file of assets) {
  mkdirSync(dirname(join(DIST, file)), { recursive: true });
  copyFileSync(join(SRC, file), join(DIST, file));
}
// On stderr, as npm's own lines are: `npm pack --json` (which runs this on prepack) keeps a clean stdout.
console.error(`build: dist/ from src/ (${assets.length} asset${assets.length === 1 ? '' : 's'} copied: ${assets.join(', ') || 'none'})`);
