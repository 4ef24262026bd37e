// The scenario language of harness/sim/script.ts: its file format (what REWRITE=1 writes, it reads
// back the same), and the directives the golden scenarios under test/sim/scenarios/ do not use.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatScenario, parseScenario, runScenario } from '../../harness/sim/script.ts';

test('a scenario file reads back as it was written: comments, empty outputs, outputs with blank lines, a trailer', () => {
  const text = [
    '# a comment',
    'store nodes=2',
    '----',
    'replicated epoch 0',
    's0: n1 n2',
    '',
    '',
    '# two blank lines before this one',
    'step 1s',
    '----',
    '',
    'put n1 k {"a": [1, 2]} client=alice',
    '----',
    '----',
    'line one',
    '',
    'line three',
    '----',
    '----',
    '',
    '# the end',
    '',
  ].join('\n');
  const file = parseScenario(text);
  assert.deepEqual(
    file.blocks.map((b) => [b.line, b.input.join(' '), b.expected]),
    [
      [2, 'store nodes=2', 'replicated epoch 0\ns0: n1 n2'],
      [9, 'step 1s', ''],
      [12, 'put n1 k {"a": [1, 2]} client=alice', 'line one\n\nline three'],
    ],
  );
  assert.deepEqual(file.trailer, ['# the end']);
  assert.equal(formatScenario(file, file.blocks.map((b) => b.expected)), text);
});

test('a directive without its ---- line is an error that names the line', () => {
  assert.throws(() => parseScenario('store nodes=2\n----\n\nstep 1s\n\nstep 2s\n----\n'), /line 4: the directive has no ---- line/);
});

test('one-way cuts, view changes and raw requests, in a run', async () => {
  const script = `store nodes=3 seed=5
----

step 6s
----

cut n1 -> n2
----

heal n1 -> n2
----

cut n1 n2
----

heal
----

partition n1 | n2 n3
----

heal
----

view-delete n3 via=n1
----

view n1
----

view-add n3 via=n1
----

request GET n2 /shard/ids
----

request PUT n1 /kvs/k {"value":"x y","causal-metadata":null} client=bob
----

get n3 k client=bob
----

node-shard n1 n2
----

pending
----

held
----
`;
  const first = await runScenario(script, 'inline');
  assert.deepEqual(first.outputs, [
    'replicated epoch 0\ns0: n1 n2 n3',
    '',
    'cuts: n1->n2',
    'cuts: none',
    'cuts: n1->n2 n2->n1',
    'cuts: none',
    'cuts: n1->n2 n1->n3 n2->n1 n3->n1',
    'cuts: none',
    '200 result="deleted"',
    '200 view=["n1","n2"]',
    '201 result="added"',
    '200 shard-ids=["s0"]',
    '201 result="created" shard-id="s0"',
    '200 result="found" value="x y" shard-id="s0"',
    'n1 200 node-shard-id="s0"\nn2 200 node-shard-id="s0"',
    'none',
    'none',
  ]);
  // Seeded: the same text prints the same bytes again.
  const second = await runScenario(script, 'inline');
  assert.equal(second.text, first.text);
});

test('unknown directives and bad arguments stop the run with the file and line', async () => {
  await assert.rejects(runScenario('store nodes=2\n----\n\nfrobnicate\n----\n', 'x.txt'), /x\.txt:4: unknown directive frobnicate/);
  await assert.rejects(runScenario('step 1s\n----\n', 'x.txt'), /x\.txt:1: the first directive must be store/);
  await assert.rejects(runScenario('store nodes=2\n----\n\nstep soon\n----\n', 'x.txt'), /x\.txt:4: not a duration/);
});
