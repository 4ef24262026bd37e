// Link health: a link that failed is held down (no data either way) until it has answered every
// probe for the hold-down; a late probe is a failure; a refusal from the peer is mirrored for the
// time it names; a restart (new incarnation announced) releases at once.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LATE_GRACE_MS, Links, LINKS_MAX } from '../../src/core/links.ts';
import { nodeAddress } from '../../src/core/address.ts';

const B = nodeAddress('10.10.0.3:8090');
const C = nodeAddress('10.10.0.4:8090');
const HOLD = 5000;
const LATE = 500;

function links(): Links {
  const l = new Links({ holdDownMs: HOLD, probeLateMs: LATE });
  // Heard long enough ago that late probes count.
  l.heard(B, 'b1', -LATE_GRACE_MS);
  return l;
}

test('a peer never heard from is not tracked: its failures hold nothing (a node not started yet is not a failed link)', () => {
  const l = new Links({ holdDownMs: HOLD, probeLateMs: LATE });
  assert.equal(l.failed(C, null, 100), null);
  assert.equal(l.isUp(C, 100), true);
  assert.equal(l.accepts(C, 100), true);
  assert.deepEqual(l.held(100), []);
});

test('one failure holds the link both ways; it is released only after answering every probe for the hold-down', () => {
  const l = links();
  assert.equal(l.failed(B, 'b1', 1000), 'held');
  assert.equal(l.failed(B, 'b1', 1100), null, 'already held');
  assert.equal(l.isUp(B, 1200), false);
  assert.equal(l.accepts(B, 1200), false);
  assert.equal(l.remainingMs(B, 1200), null, 'not answering yet: no end in sight');
  assert.equal(l.probeAnswered(B, 'b1', 'b1', 2000), null);
  assert.equal(l.remainingMs(B, 2000), HOLD);
  assert.equal(l.probeAnswered(B, 'b1', 'b1', 2000 + HOLD - 1), null);
  assert.equal(l.isUp(B, 2000 + HOLD - 1), false);
  assert.deepEqual(l.held(2000 + HOLD - 1), [{ peer: B, heldMs: HOLD + 999, remainingMs: 1 }]);
  assert.equal(l.probeAnswered(B, 'b1', 'b1', 2000 + HOLD), 'released');
  assert.equal(l.isUp(B, 2000 + HOLD), true);
  assert.equal(l.accepts(B, 2000 + HOLD), true);
  assert.equal(l.remainingMs(B, 2000 + HOLD), 0);
});

test('a failure during the hold-down starts it again from the next answer', () => {
  const l = links();
  l.failed(B, 'b1', 0);
  l.probeAnswered(B, 'b1', 'b1', 1000);
  l.failed(B, 'b1', 4000);
  assert.equal(l.probeAnswered(B, 'b1', 'b1', 4500), null);
  assert.equal(l.probeAnswered(B, 'b1', 'b1', 1000 + HOLD), null, 'the first run of answers was broken');
  assert.equal(l.probeAnswered(B, 'b1', 'b1', 4500 + HOLD - 1), null);
  assert.equal(l.probeAnswered(B, 'b1', 'b1', 4500 + HOLD), 'released');
});

test('release, as a property: exactly when the last unbroken run of answers reaches the hold-down', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 1, max: 2000 })), { minLength: 1, maxLength: 40 }), (steps) => {
      const l = links();
      let now = 0;
      l.failed(B, 'b1', now);
      let runStart: number | null = null;
      let held = true;
      for (const [answered, gap] of steps) {
        now += gap;
        // Each probe is answered at once, so none is late.
        l.probeSent(B, now);
        if (!answered) {
          l.failed(B, 'b1', now);
          if (held) runStart = null;
          else {
            held = true;
            runStart = null;
          }
          continue;
        }
        const change = l.probeAnswered(B, 'b1', 'b1', now);
        if (!held) {
          assert.equal(change, null);
          continue;
        }
        runStart ??= now;
        if (now - runStart >= HOLD) {
          assert.equal(change, 'released', `answering since ${runStart}, now ${now}`);
          held = false;
        } else assert.equal(change, null);
        assert.equal(l.isUp(B, now), !held);
      }
    }),
  );
});

test('a probe in flight longer than probeLateMs holds the link, before its timeout', () => {
  const l = links();
  l.probeSent(B, 1000);
  assert.equal(l.checkLate(B, 1000 + LATE), null, 'not late yet');
  assert.equal(l.isUp(B, 1000 + LATE), true);
  assert.equal(l.isUp(B, 1000 + LATE + 1), false, 'late: no data is sent');
  assert.equal(l.accepts(B, 1000 + LATE + 1), false, 'late: no data is taken');
  assert.equal(l.checkLate(B, 1000 + LATE + 1), 'held');
  // The late answer starts the hold-down.
  assert.equal(l.probeAnswered(B, 'b1', 'b1', 2200), null);
  assert.equal(l.probeAnswered(B, 'b1', 'b1', 2200 + HOLD), 'released');
});

test('a probe answered late is a failure of the link, then an answer', () => {
  const l = links();
  l.probeSent(B, 1000);
  assert.equal(l.probeAnswered(B, 'b1', 'b1', 1000 + LATE + 200), 'held');
  assert.equal(l.isUp(B, 1000 + LATE + 200), false);
  assert.equal(l.remainingMs(B, 1000 + LATE + 200), HOLD);
  // An answer in time is no failure.
  const m = links();
  m.probeSent(B, 1000);
  assert.equal(m.probeAnswered(B, 'b1', 'b1', 1000 + LATE), null);
  assert.equal(m.isUp(B, 1000 + LATE), true);
});

test('a restart announced with a new incarnation releases at once; the same incarnation again does not', () => {
  const l = links();
  l.failed(B, 'b1', 0);
  assert.equal(l.announced(B, 'b1', 0), null, 'the same process announcing again is no restart');
  assert.equal(l.isHeld(B), true);
  assert.equal(l.announced(B, 'b2', 0), 'released');
  assert.equal(l.isUp(B, 1), true);
  assert.equal(l.incarnationOf(B), 'b2');
  // A request sent to the old process that fails now says nothing about the new one.
  assert.equal(l.failed(B, 'b1', 2), null);
  assert.equal(l.isUp(B, 2), true);
  // One sent to the new process does.
  assert.equal(l.failed(B, 'b2', 3), 'held');
});

test('a new incarnation heard without an announcement does not release (this node may be the one reconnecting)', () => {
  const l = links();
  l.failed(B, 'b1', 0);
  l.heard(B, 'b2', 0);
  assert.equal(l.isHeld(B), true);
  assert.equal(l.probeAnswered(B, 'b2', 'b2', 100), null);
  assert.equal(l.probeAnswered(B, 'b2', 'b2', 100 + HOLD), 'released');
});

test('a refusal from the peer is mirrored: no data sent for the time it names (at most the hold-down), data still taken', () => {
  const l = links();
  l.refusedBy(B, 1200, 1000);
  assert.equal(l.isUp(B, 2199), false);
  assert.equal(l.accepts(B, 2199), true, 'a mirrored hold is not a failure seen here: the peer may send');
  assert.equal(l.remainingMs(B, 2199), 0, 'this end does not hold it, so it never refuses for it');
  assert.deepEqual(l.held(2000), [{ peer: B, heldMs: 0, remainingMs: 200, mirrored: true }]);
  assert.equal(l.isUp(B, 2200), true, 'ends by time alone');
  // Unknown (the peer's probes still fail) or absurd times are bounded by this node's hold-down.
  l.refusedBy(B, null, 3000);
  assert.equal(l.isUp(B, 3000 + HOLD - 1), false);
  assert.equal(l.isUp(B, 3000 + HOLD), true);
  l.refusedBy(B, 1e12, 10_000);
  assert.equal(l.isUp(B, 10_000 + HOLD), true);
});

test('the table is bounded: peers beyond LINKS_MAX are not tracked', () => {
  const l = new Links({ holdDownMs: HOLD, probeLateMs: LATE });
  for (let i = 0; i < LINKS_MAX + 10; i++) l.heard(nodeAddress(`10.1.${i >> 8}.${i & 255}:8090`), 'x', 0);
  const beyond = nodeAddress(`10.1.${(LINKS_MAX + 5) >> 8}.${(LINKS_MAX + 5) & 255}:8090`);
  assert.equal(l.incarnationOf(beyond), null);
  assert.equal(l.failed(beyond, null, 0), null);
  assert.equal(l.incarnationOf(nodeAddress('10.1.0.0:8090')), 'x');
});

test('a peer that answered any request is tracked before its incarnation is known: a failure then holds its link', () => {
  const l = new Links({ holdDownMs: HOLD, probeLateMs: LATE });
  l.answered(C, -LATE_GRACE_MS);
  assert.equal(l.incarnationOf(C), null);
  l.probeSent(C, 0);
  assert.equal(l.checkLate(C, LATE + 1), 'held', 'a late probe counts');
  // The first incarnation heard is learned, and it is no restart.
  assert.equal(l.probeAnswered(C, null, 'c1', 600), null);
  assert.equal(l.incarnationOf(C), 'c1');
  assert.equal(l.isHeld(C), true);
  // An announcement while only "answered" was known: a process that just started.
  const m = new Links({ holdDownMs: HOLD, probeLateMs: LATE });
  m.answered(C, -LATE_GRACE_MS);
  assert.equal(m.failed(C, null, 10), 'held');
  assert.equal(m.announced(C, 'c2', 0), 'released');
});

test('a process just heard from or restarted is busy: its late probes do not hold its link for LATE_GRACE_MS, its silence does', () => {
  const l = new Links({ holdDownMs: HOLD, probeLateMs: LATE });
  l.heard(B, 'b1', 0);
  l.probeSent(B, 1000);
  assert.equal(l.checkLate(B, 1000 + LATE + 100), null, 'late, but within the grace');
  assert.equal(l.probeAnswered(B, 'b1', 'b1', 1000 + LATE + 200), null);
  l.probeSent(B, LATE_GRACE_MS);
  assert.equal(l.checkLate(B, LATE_GRACE_MS + LATE + 1), 'held', 'after the grace, late counts');
  // A restart starts a new grace.
  const m = new Links({ holdDownMs: HOLD, probeLateMs: LATE });
  m.heard(B, 'b1', -LATE_GRACE_MS);
  assert.equal(m.announced(B, 'b2', 10_000), null);
  m.probeSent(B, 10_100);
  assert.equal(m.checkLate(B, 10_100 + LATE + 1), null);
  assert.equal(m.failed(B, 'b2', 10_700), 'held', 'no answer at all counts at once');
});

test("this node's own stall forgives the probes in flight: none of them is judged late", () => {
  const l = links();
  l.probeSent(B, 1000);
  l.forgiveProbes();
  assert.equal(l.checkLate(B, 1000 + LATE + 300), null);
  assert.equal(l.probeAnswered(B, 'b1', 'b1', 1000 + LATE + 400), null);
  assert.equal(l.isUp(B, 1000 + LATE + 400), true);
});

test('a held link still takes data from a new process at that address: a restarted node copies its shard before its announcement arrives', () => {
  const l = links();
  l.failed(B, 'b1', 0);
  assert.equal(l.accepts(B, 10, 'b1'), false, 'the process the hold is about');
  assert.equal(l.accepts(B, 10, null), false, 'a request that names no process');
  assert.equal(l.accepts(B, 10, 'b2'), true, 'a process that started since');
  assert.equal(l.isUp(B, 10), false, 'this end still sends nothing until the announcement or the hold-down');
});

test('a probe that reaches the restarted process before its announcement does not make the announcement look like a repeat', () => {
  const l = links();
  l.failed(B, 'b1', 0);
  // The new process answers a probe first: its incarnation is heard, the hold stays.
  l.probeSent(B, 100);
  assert.equal(l.probeAnswered(B, 'b1', 'b2', 150), null);
  assert.equal(l.isHeld(B), true);
  assert.equal(l.accepts(B, 160, 'b2'), true, 'the new process is served');
  // Then its announcement: a restart, released.
  assert.equal(l.announced(B, 'b2', 200), 'released');
  assert.equal(l.announced(B, 'b2', 300), null, 'and a repeat of it is nothing');
});
