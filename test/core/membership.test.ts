// The view and its failure detector: consecutive failures remove a node, a node removed as down is
// probed on probation and re-admitted only after answering steadily for the hold-down.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Membership } from '../../src/core/membership.ts';
import { nodeAddress } from '../../src/core/address.ts';

const SELF = nodeAddress('10.10.0.2:8090');
const B = nodeAddress('10.10.0.3:8090');
const C = nodeAddress('10.10.0.4:8090');
const D = nodeAddress('10.10.0.10:8090');
const HOLD = 3000;

function membership(failuresToRemove = 3, holdDownMs = HOLD): Membership {
  return new Membership({ self: SELF, failuresToRemove, holdDownMs }, [B, C, D]);
}

test('the view includes self, sorted by address; peers exclude self', () => {
  const m = new Membership({ self: SELF, failuresToRemove: 1, holdDownMs: HOLD }, [D, C, B]);
  assert.deepEqual(m.view(), [SELF, B, C, D]);
  assert.deepEqual(m.peers(), [B, C, D]);
  assert.equal(m.size, 4);
  assert.deepEqual(m.probeTargets(), [B, C, D]);
});

test('failure counting: failuresToRemove consecutive failures remove a node; an answer resets the count', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 6 }), fc.array(fc.boolean(), { maxLength: 30 }), (threshold, answers) => {
      const m = membership(threshold);
      let streak = 0;
      let removedAt = -1;
      answers.forEach((answered, i) => {
        const outcome = m.observe(B, answered, 1000 * i);
        if (removedAt >= 0) return;
        streak = answered ? 0 : streak + 1;
        if (streak === threshold) {
          assert.deepEqual(outcome, { kind: 'removed', node: B });
          removedAt = i;
        } else {
          assert.deepEqual(outcome, { kind: 'none' });
          assert.ok(m.has(B));
        }
      });
      if (removedAt >= 0) {
        assert.ok(!m.has(B) || answers.slice(removedAt + 1).some((a) => a), 'removed, unless re-admitted later');
      } else {
        assert.ok(m.has(B));
      }
      // Other nodes are untouched.
      assert.ok(m.has(C) && m.has(D));
    }),
    { numRuns: 300 },
  );
});

test('removal as down puts the node on probation: still probed, not in the view', () => {
  const m = membership(2);
  m.observe(B, false, 0);
  assert.deepEqual(m.observe(B, false, 100), { kind: 'removed', node: B });
  assert.ok(!m.has(B));
  assert.ok(m.isOnProbation(B));
  assert.deepEqual(m.peers(), [C, D]);
  assert.deepEqual(m.probeTargets(), [B, C, D]);
  // A DELETE /view report that a node is down does the same.
  assert.equal(m.remove(C, 'down'), 'deleted');
  assert.ok(m.isOnProbation(C));
  assert.deepEqual(m.probeTargets(), [B, C, D]);
});

test('re-admission only after answering continuously for holdDownMs', () => {
  const m = membership(1);
  assert.deepEqual(m.observe(B, false, 0), { kind: 'removed', node: B });
  assert.deepEqual(m.observe(B, true, 1000), { kind: 'none' }); // answering since 1000
  assert.deepEqual(m.observe(B, true, 2000), { kind: 'none' });
  assert.deepEqual(m.observe(B, true, 1000 + HOLD - 1), { kind: 'none' });
  assert.ok(!m.has(B));
  assert.deepEqual(m.observe(B, true, 1000 + HOLD), { kind: 'readmitted', node: B });
  assert.ok(m.has(B));
  assert.ok(!m.isOnProbation(B));
  assert.deepEqual(m.peers(), [B, C, D]);
});

test('a failed probe during the hold-down restarts it', () => {
  const m = membership(1);
  m.observe(B, false, 0);
  m.observe(B, true, 1000);
  m.observe(B, true, 3500);
  assert.deepEqual(m.observe(B, false, 3900), { kind: 'none' }); // 2900 ms of answers, then a failure
  assert.deepEqual(m.observe(B, true, 4000), { kind: 'none' }); // answering again since 4000
  assert.deepEqual(m.observe(B, true, 4000 + HOLD - 1), { kind: 'none' });
  assert.ok(!m.has(B));
  assert.deepEqual(m.observe(B, true, 4000 + HOLD), { kind: 'readmitted', node: B });
});

test('hold-down, as a property: re-admitted exactly when the last unbroken run of answers reaches holdDownMs', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.integer({ min: 1, max: 1500 }), fc.boolean()), { minLength: 1, maxLength: 40 }),
      fc.integer({ min: 1, max: 5000 }),
      (probes, hold) => {
        const m = membership(1, hold);
        m.observe(B, false, 0);
        let now = 0;
        let since: number | null = null;
        for (const [gap, answered] of probes) {
          now += gap;
          const outcome = m.observe(B, answered, now);
          if (!answered) {
            since = null;
            assert.deepEqual(outcome, { kind: 'none' });
            continue;
          }
          since ??= now;
          if (now - since >= hold) {
            assert.deepEqual(outcome, { kind: 'readmitted', node: B });
            assert.ok(m.has(B));
            return;
          }
          assert.deepEqual(outcome, { kind: 'none' });
          assert.ok(!m.has(B));
        }
        assert.ok(!m.has(B));
      },
    ),
    { numRuns: 300 },
  );
});

test('add() (a node announcing itself) skips probation and clears failures', () => {
  const m = membership(2);
  m.observe(B, false, 0);
  m.observe(B, false, 1);
  assert.ok(m.isOnProbation(B));
  assert.equal(m.add(B), 'added');
  assert.ok(m.has(B));
  assert.ok(!m.isOnProbation(B));
  assert.equal(m.add(B), 'already');
  // Its failure count starts over: one failure is not enough to remove it again.
  m.observe(C, false, 2);
  assert.equal(m.add(C), 'already');
  assert.deepEqual(m.observe(C, false, 3), { kind: 'none' });
  assert.ok(m.has(C));
  // A brand new node.
  assert.equal(m.add(nodeAddress('10.10.0.20:8090')), 'added');
  assert.deepEqual(m.view(), [SELF, B, C, D, '10.10.0.20:8090']);
});

test("remove by 'request' is not probed and is not re-admitted by answering", () => {
  const m = membership(1);
  assert.equal(m.remove(B, 'request'), 'deleted');
  assert.ok(!m.has(B));
  assert.ok(!m.isOnProbation(B));
  assert.ok(!m.probeTargets().includes(B));
  for (let t = 0; t <= 5 * HOLD; t += 500) assert.deepEqual(m.observe(B, true, t), { kind: 'none' });
  assert.ok(!m.has(B));
  assert.equal(m.remove(B, 'request'), 'absent');
  // A node on probation removed by request leaves probation too.
  m.observe(C, false, 0);
  assert.ok(m.isOnProbation(C));
  assert.equal(m.remove(C, 'request'), 'absent');
  assert.ok(!m.isOnProbation(C));
  assert.ok(!m.probeTargets().includes(C));
  // It comes back when it announces itself.
  assert.equal(m.add(B), 'added');
});

test("a 'down' report about self is ignored; observations of self change nothing", () => {
  const m = membership(1);
  assert.equal(m.remove(SELF, 'down'), 'absent');
  assert.ok(m.has(SELF));
  assert.ok(!m.isOnProbation(SELF));
  assert.deepEqual(m.observe(SELF, false, 0), { kind: 'none' });
  assert.ok(m.has(SELF));
  assert.ok(!m.probeTargets().includes(SELF));
});

test('observations of unknown nodes (never in the view, not on probation) change nothing', () => {
  const m = membership(1);
  assert.deepEqual(m.observe(nodeAddress('10.10.0.77:8090'), true, 0), { kind: 'none' });
  assert.deepEqual(m.observe(nodeAddress('10.10.0.77:8090'), false, 1), { kind: 'none' });
  assert.deepEqual(m.view(), [SELF, B, C, D]);
});
