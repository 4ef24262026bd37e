// The import rules of ARCHITECTURE.md, checked: which folder may import which. (The purity of
// src/core, down to the globals it may touch, is checked by core-purity.test.ts.)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');

/** Folder (relative to the root) -> folders and files its .ts files may import from (besides node:* and packages). */
const RULES: Record<string, { may: string[]; why: string }> = {
  'src/core': { may: ['src/core'], why: 'the core is pure and stands alone' },
  'src/client': { may: ['src/client', 'src/core/types.ts'], why: 'the client ships alone: only the types it shares with the store' },
  'src/node': { may: ['src/node', 'src/core', 'src/client/errors.ts'], why: 'the runtime runs the core; from the client only the transport failures that prove a request never left' },
  'src/cli': { may: ['src/cli', 'src/client', 'src/node/main.ts', 'src/node/version.ts'], why: 'the command runs nodes and speaks to them as a client; it prints the version the nodes report' },
  'harness/check': { may: ['harness/check', 'src/core/types.ts', 'src/client'], why: 'the checker judges histories; it knows the store only as a client does' },
  'harness/lab': { may: ['harness/lab', 'harness/check', 'src/core', 'src/client'], why: 'the lab starts real node processes and talks HTTP to them' },
  'harness/sim': { may: ['harness/sim', 'harness/check', 'harness/lab/prng.ts', 'src'], why: 'the simulator runs the runtime itself on a simulated world' },
  bench: { may: ['bench', 'src/client', 'src/core', 'src/cli/local-cluster.ts', 'harness/lab/lab.ts'], why: 'benchmarks start clusters and load them as clients' },
};

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...tsFiles(path));
    else if (name.endsWith('.ts')) out.push(path);
  }
  return out;
}

/** Relative import specifiers of a file (static imports and exports, and dynamic imports of a literal). */
function importsOf(source: string): string[] {
  const out: string[] = [];
  for (const match of source.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;'"]*?from\s*'([^']+)'|(?:^|\n)\s*import\s*'([^']+)'|import\(\s*'([^']+)'\s*\)/g)) {
    const specifier = match[1] ?? match[2] ?? match[3];
    if (specifier !== undefined && specifier.startsWith('.')) out.push(specifier);
  }
  return out;
}

const allowed = (target: string, may: string[]) => may.some((prefix) => target === prefix || target.startsWith(`${prefix}/`));

test('every folder imports only what ARCHITECTURE.md lets it', () => {
  const violations: string[] = [];
  for (const [folder, rule] of Object.entries(RULES)) {
    for (const file of tsFiles(join(ROOT, folder))) {
      for (const specifier of importsOf(readFileSync(file, 'utf8'))) {
        const target = relative(ROOT, resolve(dirname(file), specifier));
        if (!allowed(target, rule.may)) violations.push(`${relative(ROOT, file)} imports ${target} (${folder}: ${rule.why})`);
      }
    }
  }
  assert.deepEqual(violations, []);
});

test('nothing that ships imports the harnesses, the benchmarks or the tests', () => {
  const violations: string[] = [];
  for (const file of tsFiles(join(ROOT, 'src'))) {
    for (const specifier of importsOf(readFileSync(file, 'utf8'))) {
      const target = relative(ROOT, resolve(dirname(file), specifier));
      if (!target.startsWith('src/')) violations.push(`${relative(ROOT, file)} imports ${target}`);
    }
  }
  assert.deepEqual(violations, []);
});

test('the import scanner sees static, re-exported and dynamic imports', () => {
  assert.deepEqual(importsOf("import { a } from './a.ts';\nexport * from '../b.ts';\nconst c = await import('./c.ts');\nimport 'node:fs';"), ['./a.ts', '../b.ts', './c.ts']);
});

test('each file that ships reads in one sitting (at most 500 lines), and the composition root holds wiring only (under 350)', () => {
  const lines = (file: string) => readFileSync(file, 'utf8').split('\n').length - 1;
  const long = tsFiles(join(ROOT, 'src'))
    .filter((file) => lines(file) > 500)
    .map((file) => `${relative(ROOT, file)}: ${lines(file)} lines`);
  assert.deepEqual(long, []);
  assert.ok(lines(join(ROOT, 'src/node/node.ts')) < 350, `src/node/node.ts: ${lines(join(ROOT, 'src/node/node.ts'))} lines`);
});

test('only the core loop hands inputs to the core', () => {
  const callers = tsFiles(join(ROOT, 'src'))
    .filter((file) => /\bcore\.step\(/.test(readFileSync(file, 'utf8')))
    .map((file) => relative(ROOT, file));
  assert.deepEqual(callers, ['src/node/core-loop.ts']);
});
