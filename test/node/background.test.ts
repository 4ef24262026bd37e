// Background work never stops a node: a failing task is logged (rate limited) and counted, and no
// promise in the runtime is left floating where its rejection would become an unhandled one.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { InvariantError } from '../../src/core/assert.ts';
import { AssertionError } from 'node:assert';
import { Background, isBrokenInvariant, LOG_INTERVAL_MS, LogLimiter } from '../../src/node/background.ts';
import type { Timers } from '../../src/node/env.ts';
import type { Logger } from '../../src/node/logger.ts';

const NODE_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'node');

function manualTimers(): Timers & { advance(ms: number): void } {
  let now = 0;
  return {
    now: () => now,
    advance: (ms) => {
      now += ms;
    },
    setTimeout: () => undefined,
    clearTimeout: () => undefined,
    setInterval: () => undefined,
    clearInterval: () => undefined,
  };
}

function recordingLogger(): { log: Logger; lines: { level: string; fields: Record<string, unknown>; message: string }[] } {
  const lines: { level: string; fields: Record<string, unknown>; message: string }[] = [];
  const at =
    (level: string) =>
    (fields: Record<string, unknown>, message: string): void => {
      lines.push({ level, fields, message });
    };
  const log = { error: at('error'), fatal: at('fatal'), warn: at('warn'), info: at('info'), debug: at('debug') } as unknown as Logger;
  return { log, lines };
}

test('a failing background task is logged once per interval with a count of the rest, and counted', async () => {
  const timers = manualTimers();
  const { log, lines } = recordingLogger();
  const background = new Background(log, timers);
  let unhandled = 0;
  const onUnhandled = (): void => {
    unhandled++;
  };
  process.on('unhandledRejection', onUnhandled);
  try {
    for (let i = 0; i < 5; i++) background.run('pull sync', async () => Promise.reject(new RangeError('Maximum call stack size exceeded')));
    background.run('pull sync', () => {
      throw new TypeError('thrown before the first await');
    });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(background.snapshot()['pull sync'], 6, 'every failure is counted');
    assert.equal(lines.length, 1, `one line per interval: ${JSON.stringify(lines)}`);
    assert.equal(lines[0]?.fields.task, 'pull sync');
    timers.advance(LOG_INTERVAL_MS);
    background.run('pull sync', async () => Promise.reject(new Error('again')));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(lines.length, 2, 'a new line after the interval');
    assert.equal(lines[1]?.fields.suppressed, 5, 'the new line counts the lines suppressed since the last');
    assert.equal(unhandled, 0, 'no failure escaped as an unhandled rejection');
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});

test('the log limiter forgets the oldest keys beyond its bound, so request data cannot grow it', () => {
  const timers = manualTimers();
  const limiter = new LogLimiter(timers);
  for (let i = 0; i < 10_000; i++) assert.equal(limiter.take(`reason ${i}`), 0, 'a new key is logged at once');
  // The first keys were forgotten: they log again at once instead of being suppressed.
  assert.equal(limiter.take('reason 0'), 0);
  assert.equal(limiter.take('reason 9999'), null, 'a recent key is still suppressed');
});

test('the runtime leaves no promise floating: background work goes through Background.run', () => {
  const offenders: string[] = [];
  for (const file of readdirSync(NODE_DIR).filter((f) => f.endsWith('.ts'))) {
    readFileSync(join(NODE_DIR, file), 'utf8').split('\n').forEach((line, i) => {
      if (/^\s*(\/\/|\*|\/\*)/.test(line)) return;
      // `void promise` discards a rejection: it would become an unhandled rejection and stop the node.
      if (/\bvoid\s+(this\b|[A-Za-z_$][\w$]*\s*[.(])/.test(line)) offenders.push(`${file}:${i + 1}: ${line.trim()}`);
    });
  }
  assert.deepEqual(offenders, [], 'use Background.run (or await) instead of void');
});

test("a broken invariant in a background task stops the node: the core's InvariantError counts, as node's AssertionError does", () => {
  assert.equal(isBrokenInvariant(new InvariantError('planted')), true);
  assert.equal(isBrokenInvariant(new AssertionError({ message: 'planted' })), true);
  assert.equal(isBrokenInvariant(new Error('a peer did not answer')), false);
  assert.equal(isBrokenInvariant('not an error'), false);
});
