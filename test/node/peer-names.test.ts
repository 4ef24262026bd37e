// The address check without a cluster secret, for nodes named by host name: the IPs behind the
// names are looked up in the background (never while a request waits), kept fresh, bounded, and a
// failed lookup is reported without losing the last answer.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LogLimiter } from '../../src/node/background.ts';
import type { TimerHandle, Timers } from '../../src/node/env.ts';
import type { Logger } from '../../src/node/logger.ts';
import {
  NAME_CHECK_MS,
  NAME_KICK_MS,
  NAME_LOOKUP_TIMEOUT_MS,
  NAME_LOOKUPS_MAX,
  NAME_REFRESH_MS,
  normalizeIp,
  PeerNames,
} from '../../src/node/peer-names.ts';
import type { NodeAddress } from '../../src/core/types.ts';

/** A clock moved by hand; timers fire when it passes them. */
function manualTimers(): Timers & { advance(ms: number): void } {
  let now = 0;
  let nextId = 0;
  const timers = new Map<number, { atMs: number; everyMs: number | null; callback: () => void }>();
  return {
    now: () => now,
    advance(ms) {
      const end = now + ms;
      for (;;) {
        const next = [...timers].filter(([, t]) => t.atMs <= end).sort(([, a], [, b]) => a.atMs - b.atMs)[0];
        if (next === undefined) break;
        const [id, timer] = next;
        now = timer.atMs;
        if (timer.everyMs === null) timers.delete(id);
        else timer.atMs += timer.everyMs;
        timer.callback();
      }
      now = end;
    },
    setTimeout: (callback, ms) => {
      timers.set(++nextId, { atMs: now + ms, everyMs: null, callback });
      return nextId;
    },
    clearTimeout: (handle: TimerHandle) => void timers.delete(handle as number),
    setInterval: (callback, ms) => {
      timers.set(++nextId, { atMs: now + ms, everyMs: ms, callback });
      return nextId;
    },
    clearInterval: (handle: TimerHandle) => void timers.delete(handle as number),
  };
}

function recordingLogger(): { log: Logger; lines: { level: string; fields: Record<string, unknown>; message: string }[] } {
  const lines: { level: string; fields: Record<string, unknown>; message: string }[] = [];
  const at = (level: string) => (fields: Record<string, unknown>, message: string): void => void lines.push({ level, fields, message });
  return { log: { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') } as unknown as Logger, lines };
}

/** A resolver whose answers the test gives, one lookup at a time. */
function scriptedResolver() {
  const asked: { host: string; answer(ips: string[]): void; fail(code: string): void }[] = [];
  const lookup = (host: string) =>
    new Promise<string[]>((resolve, reject) => {
      asked.push({ host, answer: resolve, fail: (code) => reject(Object.assign(new Error(`lookup ${host}: ${code}`), { code })) });
    });
  return { asked, lookup };
}

/** Lets settled lookups run their continuations. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

function setup(known: NodeAddress[]) {
  const timers = manualTimers();
  const { log, lines } = recordingLogger();
  const resolver = scriptedResolver();
  const failures: unknown[] = [];
  const names = new PeerNames({
    timers,
    log,
    limiter: new LogLimiter(timers),
    known: () => known,
    lookup: resolver.lookup,
    run: (_task, work) => void work().catch((error: unknown) => failures.push(error)),
  });
  return { timers, lines, resolver, names, known, failures };
}

test('an IP is in any of its forms what a socket or a resolver says', () => {
  assert.equal(normalizeIp('::ffff:10.0.0.2'), '10.0.0.2');
  assert.equal(normalizeIp('::FFFF:a00:2'), '10.0.0.2');
  assert.equal(normalizeIp('0:0:0:0:0:0:0:1'), '::1');
  assert.equal(normalizeIp('FE80::0001'), 'fe80::1');
  assert.equal(normalizeIp('10.0.0.2'), '10.0.0.2');
});

test("a named node's IPs count once looked up, in the background: the request before is refused, and asks for the lookup", async () => {
  const { resolver, names, failures } = setup(['kvs-0.kvs:8090', '10.0.0.9:8090', 'kvs-1.kvs:8090'] as NodeAddress[]);
  // Not started: nothing looked up yet. A request from a node's IP is refused, and kicks the lookups.
  assert.equal(names.isNodeIp('127.0.0.1'), false);
  assert.deepEqual(resolver.asked.map((a) => a.host).sort(), ['kvs-0.kvs', 'kvs-1.kvs'], 'IP hosts are never looked up');
  // More requests while the lookups run start no more lookups.
  for (let i = 0; i < 10; i++) assert.equal(names.isNodeIp('127.0.0.1'), false);
  assert.equal(resolver.asked.length, 2);
  resolver.asked.find((a) => a.host === 'kvs-0.kvs')!.answer(['::1', '127.0.0.1']);
  resolver.asked.find((a) => a.host === 'kvs-1.kvs')!.answer(['10.1.0.3']);
  await settle();
  // Both families, however the socket writes them (a dual-stack listener maps IPv4 into IPv6).
  assert.equal(names.isNodeIp('127.0.0.1'), true);
  assert.equal(names.isNodeIp('::ffff:127.0.0.1'), true);
  assert.equal(names.isNodeIp('::1'), true);
  assert.equal(names.isNodeIp('10.1.0.3'), true);
  assert.equal(names.isNodeIp('10.1.0.4'), false);
  assert.deepEqual(names.snapshot(), { names: 2, failing: [], lookupFailures: 0 });
  assert.deepEqual(failures, []);
});

test('a name that moves is followed: by the periodic refresh, and at once when a request comes from an IP no name had', async () => {
  const { timers, resolver, names } = setup(['kvs-0.kvs:8090'] as NodeAddress[]);
  names.start();
  assert.equal(resolver.asked.length, 1, 'looked up at start');
  resolver.asked[0]!.answer(['10.0.0.2']);
  await settle();
  assert.equal(names.isNodeIp('10.0.0.2'), true);
  // Checked every second, but looked up again only when the answer is old.
  timers.advance(NAME_REFRESH_MS - NAME_CHECK_MS);
  assert.equal(resolver.asked.length, 1);
  timers.advance(NAME_CHECK_MS);
  assert.equal(resolver.asked.length, 2, 'refreshed');
  resolver.asked[1]!.answer(['10.0.0.7']);
  await settle();
  assert.equal(names.isNodeIp('10.0.0.7'), true);
  assert.equal(resolver.asked.length, 2, 'a request from a known IP looks nothing up');
  assert.equal(names.isNodeIp('10.0.0.2'), false, 'the old IP no longer counts');
  resolver.asked[2]!.answer(['10.0.0.7']);
  await settle();
  // The pod moves again; its first request (from the new IP) is refused and makes the name be looked up.
  timers.advance(NAME_KICK_MS);
  assert.equal(names.isNodeIp('10.0.0.8'), false);
  assert.equal(resolver.asked.length, 4, 'looked up again before the refresh is due');
  resolver.asked[3]!.answer(['10.0.0.8']);
  await settle();
  assert.equal(names.isNodeIp('10.0.0.8'), true);
  // Requests from outsiders cost at most one round of lookups per NAME_KICK_MS.
  timers.advance(NAME_KICK_MS);
  for (let i = 0; i < 5; i++) names.isNodeIp('192.0.2.1');
  assert.equal(resolver.asked.length, 5, 'one round for the first outsider');
  resolver.asked[4]!.answer(['10.0.0.8']);
  await settle();
  timers.advance(NAME_KICK_MS - 1);
  for (let i = 0; i < 5; i++) names.isNodeIp('192.0.2.1');
  assert.equal(resolver.asked.length, 5, 'none for the rest within NAME_KICK_MS');
  timers.advance(1);
  names.isNodeIp('192.0.2.1');
  assert.equal(resolver.asked.length, 6, 'and another round after it');
  names.stop();
});

test('a failed lookup is logged (rate limited) and counted, and keeps the last answer; a name that no longer exists loses it', async () => {
  const { timers, lines, resolver, names } = setup(['kvs-0.kvs:8090'] as NodeAddress[]);
  names.start();
  resolver.asked[0]!.answer(['10.0.0.2']);
  await settle();
  timers.advance(NAME_REFRESH_MS);
  resolver.asked[1]!.fail('EAI_AGAIN');
  await settle();
  assert.equal(names.isNodeIp('10.0.0.2'), true, 'the resolver failing is no reason to refuse the node');
  assert.deepEqual(names.snapshot(), { names: 1, failing: ['kvs-0.kvs'], lookupFailures: 1 });
  const warnings = () => lines.filter((l) => l.level === 'warn' && l.fields.host === 'kvs-0.kvs');
  assert.equal(warnings().length, 1);
  assert.equal(warnings()[0]!.fields.reason, 'EAI_AGAIN');
  // Retried sooner than a refresh; a second failure within the log interval is not logged again.
  timers.advance(NAME_CHECK_MS * 2);
  assert.equal(resolver.asked.length, 3);
  resolver.asked[2]!.fail('ENOTFOUND');
  await settle();
  assert.equal(warnings().length, 1, 'rate limited');
  assert.equal(names.isNodeIp('10.0.0.2'), false, 'the name has no address now');
  assert.deepEqual(names.snapshot(), { names: 1, failing: ['kvs-0.kvs'], lookupFailures: 2 });
  names.stop();
});

test('a resolver that hangs: the lookup is failed after its timeout, and no more than NAME_LOOKUPS_MAX are in flight', async () => {
  const known = ['a.kvs:1', 'b.kvs:1', 'c.kvs:1', 'd.kvs:1'] as NodeAddress[];
  const { timers, resolver, names } = setup(known);
  names.start();
  assert.equal(resolver.asked.length, NAME_LOOKUPS_MAX);
  timers.advance(NAME_LOOKUP_TIMEOUT_MS);
  assert.equal(names.snapshot().lookupFailures, NAME_LOOKUPS_MAX);
  assert.equal(resolver.asked.length, NAME_LOOKUPS_MAX, 'a timed-out lookup still holds its thread until the resolver answers');
  // The resolver answers late: the answer counts, and the next names are looked up.
  for (const asked of resolver.asked) asked.answer(['10.0.0.1']);
  await settle();
  assert.equal(names.isNodeIp('10.0.0.1'), true);
  assert.equal(resolver.asked.length, 2 * NAME_LOOKUPS_MAX);
  names.stop();
});

test('a name no longer known is forgotten, and its IPs no longer count', async () => {
  const { timers, resolver, names, known } = setup(['kvs-0.kvs:8090', 'kvs-1.kvs:8090'] as NodeAddress[]);
  names.start();
  resolver.asked[0]!.answer(['10.0.0.2']);
  resolver.asked[1]!.answer(['10.0.0.3']);
  await settle();
  assert.equal(names.isNodeIp('10.0.0.3'), true);
  known.pop();
  assert.equal(names.isNodeIp('10.0.0.3'), false, 'not a node any more, even before the cache is pruned');
  timers.advance(NAME_CHECK_MS);
  assert.equal(names.snapshot().names, 1);
  assert.deepEqual(names.ipsOf('kvs-1.kvs'), []);
  names.stop();
});
