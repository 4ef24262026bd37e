// Scripted scenarios with golden transcripts (harness/sim/script.ts has the language): each file
// under test/sim/scenarios/ runs in the simulator, and what every directive prints must equal the
// text after its `----`. REWRITE=1 writes what they print into the files instead (then read the
// diff: it is the change of behaviour). The simulator is seeded, so a file prints the same bytes on
// every run.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runScenario } from '../../harness/sim/script.ts';

const DIR = join(import.meta.dirname, 'scenarios');
const REWRITE = process.env.REWRITE === '1';

for (const name of readdirSync(DIR).filter((f) => f.endsWith('.txt')).sort()) {
  test(`scenario ${name}`, async () => {
    const path = join(DIR, name);
    const text = readFileSync(path, 'utf8');
    const run = await runScenario(text, `test/sim/scenarios/${name}`);
    if (REWRITE) {
      if (run.text !== text) writeFileSync(path, run.text);
      return;
    }
    for (const [i, block] of run.file.blocks.entries()) {
      assert.equal(
        run.outputs[i],
        block.expected,
        `test/sim/scenarios/${name}:${block.line}: ${block.input.join(' ')}\n(REWRITE=1 node --test test/sim/scenarios.test.ts rewrites the expected output)`,
      );
    }
    assert.equal(run.text, text, 'the file is not in its rewritten form (REWRITE=1 formats it)');
  });
}
