// The core under src/core must stay pure: no I/O, no clock, no randomness, no ambient globals, and
// no imports but its own sibling files. This test scans the sources (comments and string literals
// stripped, so doc comments may talk about Date or process) and reports file:line of each violation.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, existsSync, statSync } from 'node:fs';
import { join, relative, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CORE = join(ROOT, 'src', 'core');

const FORBIDDEN_IDENTIFIERS = [
  'Date',
  'setTimeout',
  'setInterval',
  'setImmediate',
  'queueMicrotask',
  'process',
  'performance',
  'fetch',
  'require',
  'globalThis',
  'crypto',
  'console',
];

interface Stripped {
  /** The source with comments blanked and each string literal replaced by `__S<n>__` (newlines kept). */
  code: string;
  strings: string[];
}

const REGEX_PRECEDERS = new Set(['(', ',', '=', ':', '[', '!', '&', '|', '?', '{', '}', ';', '+', '-', '*', '%', '<', '>', '~', '^']);
const REGEX_KEYWORDS = new Set(['return', 'typeof', 'instanceof', 'in', 'of', 'new', 'delete', 'void', 'throw', 'case', 'do', 'else', 'yield', 'await']);

/** A small TypeScript lexer: enough to tell code from comments, strings, templates and regex literals. */
export function stripCommentsAndStrings(source: string): Stripped {
  let code = '';
  const strings: string[] = [];
  // Template nesting: each entry is the brace depth at which a `${` began.
  const templateStack: number[] = [];
  let braceDepth = 0;
  let i = 0;
  const n = source.length;

  const lastSignificant = (): string => {
    const trimmed = code.trimEnd();
    return trimmed.length === 0 ? '' : (trimmed[trimmed.length - 1] as string);
  };
  const lastWord = (): string => /([A-Za-z_$][\w$]*)\s*$/.exec(code)?.[1] ?? '';
  const placeholder = (text: string): string => `__S${strings.push(text) - 1}__` + '\n'.repeat((text.match(/\n/g) ?? []).length);

  /** Reads a template literal's text from `i` (just after a backtick or a closing `}`) up to `${` or the closing backtick. */
  const readTemplateChunk = (): void => {
    let text = '';
    while (i < n) {
      const ch = source[i] as string;
      if (ch === '\\') {
        text += source.slice(i, i + 2);
        i += 2;
        continue;
      }
      if (ch === '`') {
        i++;
        code += placeholder(text);
        return;
      }
      if (ch === '$' && source[i + 1] === '{') {
        i += 2;
        code += placeholder(text) + '(';
        templateStack.push(braceDepth);
        braceDepth++;
        return;
      }
      text += ch;
      i++;
    }
    code += placeholder(text);
  };

  while (i < n) {
    const ch = source[i] as string;
    const next = source[i + 1];
    if (ch === '/' && next === '/') {
      while (i < n && source[i] !== '\n') i++;
      continue;
    }
    if (ch === '/' && next === '*') {
      const end = source.indexOf('*/', i + 2);
      const stop = end < 0 ? n : end + 2;
      code += ' ' + '\n'.repeat((source.slice(i, stop).match(/\n/g) ?? []).length);
      i = stop;
      continue;
    }
    if (ch === '"' || ch === "'") {
      let text = '';
      i++;
      while (i < n && source[i] !== ch && source[i] !== '\n') {
        if (source[i] === '\\') {
          text += source.slice(i, i + 2);
          i += 2;
        } else {
          text += source[i];
          i++;
        }
      }
      i++;
      code += placeholder(text);
      continue;
    }
    if (ch === '`') {
      i++;
      readTemplateChunk();
      continue;
    }
    if (ch === '/') {
      const before = lastSignificant();
      const word = lastWord();
      const startsRegex = before === '' || REGEX_PRECEDERS.has(before) || (REGEX_KEYWORDS.has(word) && code.trimEnd().endsWith(word));
      if (startsRegex) {
        let inClass = false;
        i++;
        while (i < n && source[i] !== '\n') {
          const c = source[i];
          if (c === '\\') i += 2;
          else if (c === '[') (inClass = true), i++;
          else if (c === ']') (inClass = false), i++;
          else if (c === '/' && !inClass) break;
          else i++;
        }
        i++;
        while (i < n && /[a-z]/i.test(source[i] as string)) i++;
        code += '/__RE__/';
        continue;
      }
    }
    if (ch === '{') braceDepth++;
    if (ch === '}') {
      braceDepth--;
      if (templateStack.length > 0 && templateStack[templateStack.length - 1] === braceDepth) {
        templateStack.pop();
        code += ')';
        i++;
        readTemplateChunk();
        continue;
      }
    }
    code += ch;
    i++;
  }
  return { code, strings };
}

export interface Violation {
  file: string;
  line: number;
  what: string;
}

const ALLOWED_IMPORT = /^\.\/[A-Za-z0-9_.-]+\.ts$/;

/** Violations of core purity in one file's source. `siblings`, when given, are the files an import may name. */
export function scanSource(file: string, source: string, siblings?: Set<string>): Violation[] {
  const { code, strings } = stripCommentsAndStrings(source);
  const violations: Violation[] = [];
  const lineAt = (index: number): number => code.slice(0, index).split('\n').length;
  const stringAt = (token: string): string => strings[Number(token)] as string;

  // Static imports and re-exports: `import ... from 'x'`, `import 'x'`, `export ... from 'x'`.
  const staticImport = /\b(?:import|export)\b[^;]*?\bfrom\s*__S(\d+)__|\bimport\s*__S(\d+)__/g;
  for (const match of code.matchAll(staticImport)) {
    const specifier = stringAt((match[1] ?? match[2]) as string);
    const line = lineAt(match.index + match[0].length);
    if (!ALLOWED_IMPORT.test(specifier)) {
      violations.push({ file, line, what: `imports '${specifier}' (only ./*.ts siblings are allowed)` });
    } else if (siblings && !siblings.has(specifier.slice(2))) {
      violations.push({ file, line, what: `imports '${specifier}', which is not a file of src/core` });
    }
  }
  // Dynamic import() of anything at all.
  for (const match of code.matchAll(/\bimport\s*\(/g)) {
    violations.push({ file, line: lineAt(match.index), what: 'dynamic import()' });
  }
  // Forbidden globals, used as identifiers (not as a property name after a single dot).
  const identifier = new RegExp(`(?<![\\w$])(${FORBIDDEN_IDENTIFIERS.join('|')})(?![\\w$])`, 'g');
  for (const match of code.matchAll(identifier)) {
    const before = code.slice(Math.max(0, match.index - 3), match.index).replace(/\s+$/, '');
    const isPropertyAccess = before.endsWith('.') && !before.endsWith('...');
    if (isPropertyAccess) continue;
    violations.push({ file, line: lineAt(match.index), what: `uses ${match[1]}` });
  }
  for (const match of code.matchAll(/(?<![\w$.])Math\s*(?:\.\s*random\b|\[)/g)) {
    violations.push({ file, line: lineAt(match.index), what: 'uses Math.random' });
  }
  return violations.sort((a, b) => a.line - b.line);
}

function coreFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...coreFiles(path));
    else if (name.endsWith('.ts')) out.push(path);
  }
  return out.sort();
}

const format = (v: Violation): string => `${v.file}:${v.line}: ${v.what}`;

test('src/core imports only its own ./*.ts files and uses no ambient globals', () => {
  assert.ok(existsSync(CORE), `${CORE} exists`);
  const files = coreFiles(CORE);
  assert.ok(files.length >= 10, `found the core files (${files.length})`);
  const violations: Violation[] = [];
  for (const path of files) {
    const siblings = new Set(readdirSync(dirname(path)).filter((name) => name.endsWith('.ts')));
    violations.push(...scanSource(relative(ROOT, path), readFileSync(path, 'utf8'), siblings));
  }
  assert.deepEqual(violations.map(format), [], `core purity violations:\n${violations.map(format).join('\n')}`);
});

test('the purity scanner flags violations in a sample, with file:line', () => {
  const sample = [
    "import { readFileSync } from 'node:fs';", // 1
    "import type { Foo } from 'some-package';", // 2
    "import { ok } from './ok.ts';", // 3
    "import { up } from '../node/node.ts';", // 4
    'export function now(): number {', // 5
    '  return Date.now() + Math.random();', // 6
    '}', // 7
    'setTimeout(() => console.log(`t=${performance.now()}`), 1);', // 8
    'const env = process.env; const g = globalThis; // Date in a comment is fine', // 9
    "const r = require('x'); const c = crypto.randomUUID(); await fetch('http://x');", // 10
    "const s = 'Date process console'; /* setInterval(f) */", // 11
    'queueMicrotask(f); setImmediate(f); setInterval(f, 1);', // 12
    "export * from 'node:path';", // 13
    "const m = await import('./ok.ts');", // 14
    'const x = obj.process + `${ `nested ${Date}` }`;', // 15
    'const re = /Date"process/g; const f = Math["random"];', // 16
  ].join('\n');
  const found = scanSource('sample.ts', sample, new Set(['ok.ts'])).map(format);
  const expected = [
    "sample.ts:1: imports 'node:fs' (only ./*.ts siblings are allowed)",
    "sample.ts:2: imports 'some-package' (only ./*.ts siblings are allowed)",
    "sample.ts:4: imports '../node/node.ts' (only ./*.ts siblings are allowed)",
    'sample.ts:6: uses Date',
    'sample.ts:6: uses Math.random',
    'sample.ts:8: uses setTimeout',
    'sample.ts:8: uses console',
    'sample.ts:8: uses performance',
    'sample.ts:9: uses process',
    'sample.ts:9: uses globalThis',
    'sample.ts:10: uses require',
    'sample.ts:10: uses crypto',
    'sample.ts:10: uses fetch',
    'sample.ts:12: uses queueMicrotask',
    'sample.ts:12: uses setImmediate',
    'sample.ts:12: uses setInterval',
    "sample.ts:13: imports 'node:path' (only ./*.ts siblings are allowed)",
    'sample.ts:14: dynamic import()',
    'sample.ts:15: uses Date',
    'sample.ts:16: uses Math.random',
  ];
  assert.deepEqual([...found].sort(), [...expected].sort());

  // Comments, strings and property names that merely mention the words are not violations.
  const clean = [
    '/** Uses no Date, process or console: see setTimeout in the runtime. */',
    "import type { Clock } from './types.ts';",
    "export const note = 'fetch and crypto live elsewhere';",
    'export const t = `no ${"Date"} here`;',
    'export function f(o: Record<string, number>): number { return o.process + Math.max(1, 2) + o.Date; }',
  ].join('\n');
  assert.deepEqual(scanSource('clean.ts', clean, new Set(['types.ts'])).map(format), []);
});
