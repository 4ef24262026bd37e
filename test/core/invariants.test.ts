// Assertions that stay on in production (src/core/assert.ts): each one fires when its invariant is
// broken (by inconsistent input, or by tampering with private state: a test-only path), and normal
// use, however it is interleaved, never fires one.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { assert as invariant, assertNever, InvariantError, unreachable } from '../../src/core/assert.ts';
import { LINKS_MAX, Links } from '../../src/core/links.ts';
import { Membership } from '../../src/core/membership.ts';
import { digestOfVersions, GRAVEYARD_MAX, Replica } from '../../src/core/replica.ts';
import type { StoredVersion } from '../../src/core/stored-version.ts';
import { planReshard } from '../../src/core/reshard-plan.ts';
import { asEpoch, checkShardMap, initialShardMap, mergeShardMaps, shardIdFor, shardOfKey, withMember } from '../../src/core/shard-map.ts';
import type { Clock, EpochClocks, NodeAddress, ShardMap, Version } from '../../src/core/types.ts';
import { nodeAddress } from '../../src/core/address.ts';

const A = nodeAddress('10.10.0.2:8090');
const B = nodeAddress('10.10.0.3:8090');
const C = nodeAddress('10.10.0.4:8090');
const D = nodeAddress('10.10.0.5:8090');
const SHARD = shardIdFor(0);

/** Asserts that `run` throws an InvariantError whose message matches `pattern`. */
function fires(run: () => unknown, pattern: RegExp): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof InvariantError, `an InvariantError, not ${String(error)}`);
    assert.equal(error.name, 'InvariantError');
    assert.match(error.message, pattern);
    return true;
  });
}

/** A replica's private state, for tests that break it on purpose. */
interface ReplicaInternals {
  store: Map<string, StoredVersion>;
  appliedClock: Clock;
  lamportClock: number;
  buffer: { byOrigin: Map<NodeAddress, Map<number, Version>>; count: number; bytes: number; max: number; add(version: Version, dot: { node: NodeAddress; counter: number }, applied: Clock): boolean };
  digestSums: Uint32Array;
  digestTotal: number;
  graveyard: { forgettable: Map<string, Version>; keptEntries: Map<string, Version> };
  collectedUpTo: Clock;
  baseClocks: EpochClocks;
  apply(version: Version, dot: { node: NodeAddress; counter: number }): void;
}
const internals = (replica: Replica): ReplicaInternals => replica as unknown as ReplicaInternals;

function replica(self: NodeAddress, epoch = 1, pendingMax = 100): Replica {
  return new Replica({ self, shard: SHARD, epoch: asEpoch(epoch), pendingMax });
}

/** A write of `node` (its `counter`-th in this shard), as a peer would push it. */
function pushed(node: NodeAddress, counter: number, key: string, lamport: number, extra: Partial<Version> = {}): Version {
  return { key, deleted: false, value: `${node}#${counter}`, dot: { node, counter }, stamp: { epoch: asEpoch(1), lamport, node }, deps: {}, ...extra };
}

// ------------------------------------------------------------------ assert.ts

test('assert throws an InvariantError only when the condition is false, and builds a lazy message only then', () => {
  let built = 0;
  const message = (): string => {
    built++;
    return 'built';
  };
  invariant(true, message);
  invariant(1, 'constant');
  assert.equal(built, 0, 'a passing assertion builds no message');
  fires(() => invariant(false, message), /^invariant broken: built$/);
  assert.equal(built, 1);
  fires(() => invariant(null, 'a constant message'), /a constant message/);
  fires(() => unreachable('never here'), /never here/);
  fires(() => assertNever('x' as never, 'case'), /unexpected case: x/);
  assert.ok(new InvariantError('x') instanceof Error);
});

// ------------------------------------------------------------------ replica: normal use

type ReplicaStep =
  | { kind: 'write'; at: number; key: number; del: boolean }
  | { kind: 'push'; from: number; to: number; pick: number[] }
  | { kind: 'sync'; from: number; to: number }
  | { kind: 'repair'; from: number; to: number }
  | { kind: 'collect'; at: number };

const NODES = [A, B, C];
const KEYS = ['a', 'b', 'c', 'd', 'e'];
const index = (n: number) => fc.integer({ min: 0, max: n - 1 });
const replicaStep: fc.Arbitrary<ReplicaStep> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('write' as const), at: index(3), key: index(KEYS.length), del: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('push' as const), from: index(3), to: index(3), pick: fc.array(fc.nat(40), { maxLength: 6 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('sync' as const), from: index(3), to: index(3) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('repair' as const), from: index(3), to: index(3) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('collect' as const), at: index(3) }) },
);

test('replicas in normal use never break an invariant: writes, pushes in any order with duplicates, syncs, repairs, collection', () => {
  fc.assert(
    fc.property(fc.array(replicaStep, { maxLength: 60 }), (steps) => {
      // A small pending bound, so buffering and dropping both happen.
      const replicas = NODES.map((self) => replica(self, 1, 3));
      const written: Version[][] = NODES.map(() => []);
      for (const step of steps) {
        if (step.kind === 'write') {
          const at = replicas[step.at] as Replica;
          const key = KEYS[step.key] as string;
          const change = step.del ? { deleted: true as const } : { deleted: false as const, value: step.key };
          written[step.at]?.push(at.write(key, change, { [SHARD]: { ...at.applied } }));
        } else if (step.kind === 'push') {
          const log = written[step.from] ?? [];
          const batch = step.pick.map((i) => log[i % Math.max(1, log.length)]).filter((v): v is Version => v !== undefined);
          if (step.from !== step.to) replicas[step.to]?.deliver(batch);
        } else if (step.kind === 'sync') {
          const from = replicas[step.from] as Replica;
          const to = replicas[step.to] as Replica;
          to.mergeState(from.versionsSince(to.applied, { base: false, collected: true }), { ...from.applied }, undefined, from.lamport);
        } else if (step.kind === 'repair') {
          const from = replicas[step.from] as Replica;
          replicas[step.to]?.repair([...from.allVersions()]);
        } else {
          // What every replica applied: the pointwise minimum of the applied clocks.
          let everywhere: Clock = { ...(replicas[step.at] as Replica).applied };
          for (const other of replicas) {
            const min: Clock = {};
            for (const [node, counter] of Object.entries(everywhere)) min[node] = Math.min(counter, other.applied[node] ?? 0);
            everywhere = min;
          }
          replicas[step.at]?.collectTombstones(everywhere);
        }
        for (const r of replicas) {
          r.checkInvariants();
          // The store digest kept at O(1) per change is the one a disk recomputes from the versions.
          assert.deepEqual(r.storeDigest(), digestOfVersions(r.allVersions()));
        }
      }
    }),
    { numRuns: 150 },
  );
});

test('anti-entropy stores a version ahead of the applied clock: that is why "applied covers every stored dot" is not asserted', () => {
  const a = replica(A);
  const b = replica(B);
  const v = a.write('k', { deleted: false, value: 1 }, {});
  assert.equal(b.repair([v]), 1);
  assert.equal(b.get('k')?.dot?.counter, 1);
  assert.equal(b.applied[A], undefined, 'the clock is left alone');
  b.checkInvariants();
  // The push arrives later and is applied: no longer ahead.
  assert.equal(b.deliver([v]).applied, 1);
  b.checkInvariants();
});

// ------------------------------------------------------------------ replica: each assertion fires

test('write: a dot of this node that a key already holds is never reused', () => {
  // A node that lost what it wrote (no disk, no peer to copy from) and got its old write back by repair.
  const a = replica(A);
  a.repair([pushed(A, 5, 'k', 9)]);
  fires(() => a.write('k', { deleted: false, value: 'again' }, {}), /reuses dot 10\.10\.0\.2:8090#1/);
  // Another key is fine: the check is about the key written, O(1).
  a.write('other', { deleted: false, value: 1 }, {});
});

test('write: a write coordinated here wins over what its key holds (its Lamport time is above every stamp seen)', () => {
  const a = replica(A);
  a.deliver([pushed(B, 1, 'k', 7)]);
  a.write('k', { deleted: false, value: 'wins' }, {});
  // Break it: the Lamport clock goes back below a stored stamp.
  const b = replica(A);
  b.deliver([pushed(B, 1, 'k', 7)]);
  internals(b).lamportClock = 2;
  fires(() => b.write('k', { deleted: false, value: 'loses' }, {}), /write of k at lamport 3 lost/);
});

test('put: no version of a later epoch than the replica is stored', () => {
  const a = replica(A, 1);
  const later = /no replica stores a version of a later epoch than its own/;
  fires(() => a.deliver([pushed(B, 1, 'k', 1, { stamp: { epoch: asEpoch(2), lamport: 1, node: B } })]), later);
  fires(() => a.mergeState([pushed(B, 1, 'k', 1, { stamp: { epoch: asEpoch(3), lamport: 1, node: B } })], { [B]: 1 }), later);
  fires(() => a.repair([pushed(B, 1, 'k', 1, { stamp: { epoch: asEpoch(2), lamport: 1, node: B } })]), later);
  // Earlier epochs (base versions from a reshard) are stored.
  const base: Version = { key: 'old', deleted: false, value: 0, dot: null, stamp: { epoch: asEpoch(0), lamport: 4, node: B }, deps: {} };
  a.mergeBase([base], {});
  assert.equal(a.get('old')?.value, 0);
});

test('apply: each origin is applied one write after the other', () => {
  const a = replica(A);
  fires(() => internals(a).apply(pushed(B, 3, 'k', 1), { node: B, counter: 3 }), /applied in order, none skipped or twice/);
  // deliver never gets there: a gap is buffered.
  assert.equal(a.deliver([pushed(B, 3, 'k', 1)]).buffered, 1);
  a.checkInvariants();
});

test('pending: an early arrival is counted once, and the count and bytes stay exact', () => {
  const a = replica(A);
  const early = pushed(B, 2, 'k', 2);
  assert.equal(a.deliver([early, early]).buffered, 1, 'a duplicate is not buffered twice');
  fires(() => internals(a).buffer.add(early, { node: B, counter: 2 }, { ...a.applied }), /buffered once/);
  // Byte accounting drifts: the buffer drains to empty with bytes left over.
  internals(a).buffer.bytes += 1;
  fires(() => a.deliver([pushed(B, 1, 'j', 1)]), /pending count and bytes match/);
});

test('collectTombstones: nothing is collected beyond what this replica applied', () => {
  const a = replica(A);
  a.write('k', { deleted: true }, {});
  assert.equal(a.collectTombstones({ [A]: 1 }), 1);
  fires(() => a.collectTombstones({ [A]: 1, [B]: 4 }), /collected only up to what this replica applied/);
});

test('checkInvariants names each broken invariant of the whole state', () => {
  const broken: [string, (r: ReplicaInternals) => void, RegExp][] = [
    // The stored form holds no key of its own: a version under another key shows in its partition's digest.
    ['a version under another key', (r) => r.store.set('x', r.store.get('k') as StoredVersion), /digest of partition \d+ is not the sum/],
    ['a stamp above the Lamport time', (r) => (r.lamportClock = 0), /above the Lamport time/],
    ['a partition digest', (r) => (r.digestSums[0] = (r.digestSums[0] ?? 0) + 1), /digest of partition 0/],
    ['the store digest', (r) => (r.digestTotal += 1), /store digest is the sum/],
    ['the pending count', (r) => (r.buffer.count += 1), /pending count and bytes/],
    ['the pending bound', (r) => (r.buffer.max = 0), /within its count and byte bounds/],
    ['a pending write already applied', (r) => (r.appliedClock = { ...r.appliedClock, [B]: 3 }), /10\.10\.0\.3:8090#3 is pending though applied/],
    ['a pending write filed under another dot', (r) => r.buffer.byOrigin.get(B)?.set(4, r.buffer.byOrigin.get(B)?.get(3) as Version), /filed under 10\.10\.0\.3:8090#4, not its dot/],
    ['an applied counter', (r) => (r.appliedClock = { ...r.appliedClock, [C]: 0 }), /applied names 10\.10\.0\.4:8090 with counter 0/],
    ['the collection horizon', (r) => (r.collectedUpTo = { [C]: 9 }), /collected only up to/],
    ['a graveyard entry', (r) => r.graveyard.forgettable.set('g', pushed(B, 1, 'g', 1)), /graveyard entry of g/],
    ['a graveyard entry both kept and not', (r) => {
        const tombstone = pushed(B, 1, 'g', 1, { deleted: true });
        r.graveyard.forgettable.set('g', tombstone);
        r.graveyard.keptEntries.set('g', tombstone);
      }, /holds g once/],
    ['the base epochs', (r) => (r.baseClocks = { '5': { s0: { [B]: 1 } } }), /base names epoch 5/],
  ];
  for (const [what, breakIt, pattern] of broken) {
    const a = replica(A);
    a.write('k', { deleted: false, value: 1 }, {});
    a.deliver([pushed(B, 3, 'p', 5)]);
    a.checkInvariants();
    breakIt(internals(a));
    assert.throws(() => a.checkInvariants(), (error: unknown) => error instanceof InvariantError && pattern.test(error.message), what);
  }
  assert.ok(GRAVEYARD_MAX > 0);
});

// ------------------------------------------------------------------ membership

interface MembershipInternals {
  members: Set<NodeAddress>;
  failures: Map<NodeAddress, number>;
  probation: Map<NodeAddress, { answeringSinceMs: number | null; learnedAtMs?: number }>;
  removedByRequest: Set<NodeAddress>;
}
const membershipInternals = (m: Membership): MembershipInternals => m as unknown as MembershipInternals;

type MembershipStep = { op: 'add' | 'down' | 'request' | 'learn' | 'answer' | 'silent'; node: number; dt: number };

test('membership in normal use never breaks an invariant', () => {
  const nodes = [A, B, C, D, '10.10.0.6:8090'];
  const step: fc.Arbitrary<MembershipStep> = fc.record({
    op: fc.constantFrom('add', 'down', 'request', 'learn', 'answer', 'silent'),
    node: index(nodes.length),
    dt: fc.nat(3000),
  });
  fc.assert(
    fc.property(fc.array(step, { maxLength: 80 }), (steps) => {
      const m = new Membership({ self: A, failuresToRemove: 2, holdDownMs: 1000 }, [B, C]);
      let now = 0;
      for (const { op, node: i, dt } of steps) {
        const node = nodes[i] as NodeAddress;
        now += dt;
        if (op === 'add') m.add(node);
        else if (op === 'down' || op === 'request') m.remove(node, op);
        else if (op === 'learn') m.learn(node, now);
        else m.observe(node, op === 'answer', now);
        m.checkInvariants();
      }
    }),
    { numRuns: 200 },
  );
});

test('membership: self stays in the view unless a client removed it', () => {
  const m = new Membership({ self: A, failuresToRemove: 1, holdDownMs: 1000 }, [B]);
  m.remove(A, 'request');
  m.checkInvariants();
  m.add(A);
  membershipInternals(m).members.delete(A);
  fires(() => m.checkInvariants(), /self is in the view unless a client removed it/);
});

test('membership: a node is never both in the view and on probation (checked on the node each change is about)', () => {
  const m = new Membership({ self: A, failuresToRemove: 1, holdDownMs: 1000 }, [B, C]);
  // Break it: C is taken off the view by request behind the class's back, then found down.
  membershipInternals(m).removedByRequest.add(C);
  fires(() => m.remove(C, 'down'), /10\.10\.0\.4:8090 is in more than one of the view, probation and removed-by-request/);
  const n = new Membership({ self: A, failuresToRemove: 1, holdDownMs: 1000 }, [B]);
  membershipInternals(n).probation.set(B, { answeringSinceMs: null });
  fires(() => n.checkInvariants(), /in more than one/);
});

test('membership: failures are counted only for nodes in the view, below the bound; a node found down goes on probation', () => {
  const m = new Membership({ self: A, failuresToRemove: 3, holdDownMs: 1000 }, [B]);
  m.observe(B, false, 0);
  m.checkInvariants();
  membershipInternals(m).failures.set(C, 1);
  fires(() => m.checkInvariants(), /failures are counted for 10\.10\.0\.4:8090/);
  const n = new Membership({ self: A, failuresToRemove: 1, holdDownMs: 1000 }, [B]);
  // A removal that forgot probation (a broken remove) is caught where observe relies on it.
  (n as unknown as { remove: () => string }).remove = () => 'deleted';
  fires(() => n.observe(B, false, 0), /a node found down goes on probation/);
});

test('membership: at most LEARNED_MAX learned nodes wait on probation', () => {
  const m = new Membership({ self: A, failuresToRemove: 1, holdDownMs: 1000 }, []);
  for (let i = 0; i < 100; i++) m.learn(nodeAddress(`10.10.1.${i}:8090`), 0);
  m.checkInvariants();
  for (let i = 0; i < 100; i++) membershipInternals(m).probation.set(nodeAddress(`10.10.2.${i}:8090`), { answeringSinceMs: null, learnedAtMs: 0 });
  fires(() => m.checkInvariants(), /at most LEARNED_MAX/);
});

// ------------------------------------------------------------------ links

interface LinkInternals {
  links: Map<NodeAddress, { held: boolean; answeringSinceMs: number | null; heldUntilMs: number; mirroredUntilMs: number }>;
  options: { holdDownMs: number; probeLateMs: number };
}
const linkInternals = (l: Links): LinkInternals => l as unknown as LinkInternals;

type LinkStep = { op: 'heard' | 'announced' | 'probe' | 'answer' | 'fail' | 'refused' | 'late' | 'forget' | 'forgive'; peer: number; inc: number; dt: number; remaining: number | null };

test('links in normal use never break an invariant', () => {
  const peers = [B, C, D];
  const step: fc.Arbitrary<LinkStep> = fc.record({
    op: fc.constantFrom('heard', 'announced', 'probe', 'answer', 'fail', 'refused', 'late', 'forget', 'forgive'),
    peer: index(peers.length),
    inc: index(3),
    dt: fc.nat(2000),
    remaining: fc.option(fc.nat(100_000)),
  });
  fc.assert(
    fc.property(fc.array(step, { maxLength: 80 }), (steps) => {
      const links = new Links({ holdDownMs: 1500, probeLateMs: 500 });
      let now = 10_000;
      for (const { op, peer: i, inc, dt, remaining } of steps) {
        const peer = peers[i] as NodeAddress;
        const incarnation = `i${inc}`;
        now += dt;
        if (op === 'heard') links.heard(peer, incarnation, now);
        else if (op === 'announced') links.announced(peer, incarnation, now);
        else if (op === 'probe') links.probeSent(peer, now);
        else if (op === 'answer') links.probeAnswered(peer, links.incarnationOf(peer), incarnation, now);
        else if (op === 'fail') links.failed(peer, links.incarnationOf(peer), now);
        else if (op === 'refused') links.refusedBy(peer, remaining, now);
        else if (op === 'late') links.checkLate(peer, now);
        else if (op === 'forget') links.forget(peer);
        else links.forgiveProbes();
        links.checkInvariants();
      }
    }),
    { numRuns: 200 },
  );
});

test('links: a held link that answers has a release time a hold-down after it began to answer', () => {
  const links = new Links({ holdDownMs: 1000, probeLateMs: 500 });
  links.heard(B, 'i1', 0);
  links.failed(B, 'i1', 10);
  links.probeAnswered(B, 'i1', 'i1', 20);
  links.checkInvariants();
  const link = linkInternals(links).links.get(B);
  assert.ok(link?.held);
  link.heldUntilMs = 30;
  fires(() => links.probeAnswered(B, 'i1', 'i1', 25), /release time a hold-down after it began to answer/);
});

test('links: a link not held counts no answers', () => {
  const links = new Links({ holdDownMs: 1000, probeLateMs: 500 });
  links.heard(B, 'i1', 0);
  const link = linkInternals(links).links.get(B);
  assert.ok(link);
  link.answeringSinceMs = 5;
  fires(() => links.checkInvariants(), /a link not held counts no answers/);
});

test('links: a mirrored hold is capped by the hold-down, and ends', () => {
  const links = new Links({ holdDownMs: 1000, probeLateMs: 500 });
  links.heard(B, 'i1', 0);
  links.refusedBy(B, 10 ** 9, 0);
  assert.equal(links.isUp(B, 999), false);
  assert.equal(links.isUp(B, 1000), true, 'a peer cannot hold this end longer than its own hold-down');
  linkInternals(links).options.holdDownMs = Number.NaN;
  fires(() => links.refusedBy(B, null, 0), /not capped by the hold-down/);
  const other = new Links({ holdDownMs: 1000, probeLateMs: 500 });
  other.heard(B, 'i1', 0);
  fires(() => other.refusedBy(B, 5, Number.NaN), /a mirrored hold ends/);
});

test('links: at most LINKS_MAX links are tracked', () => {
  const links = new Links({ holdDownMs: 1000, probeLateMs: 500 });
  for (let i = 0; i < LINKS_MAX + 10; i++) links.heard(nodeAddress(`10.11.${i >> 8}.${i & 255}:8090`), 'i', 0);
  links.checkInvariants();
  linkInternals(links).links.set(nodeAddress('10.12.0.1:8090'), { held: false, answeringSinceMs: null, heldUntilMs: 0, mirroredUntilMs: 0 });
  fires(() => links.checkInvariants(), /at most LINKS_MAX/);
});

// ------------------------------------------------------------------ shard map

const VIEW = [A, B, C, D, nodeAddress('10.10.0.6:8090'), nodeAddress('10.10.0.7:8090')];

test('shard maps in normal use are well formed, and merging never lowers the epoch', () => {
  const replicated = initialShardMap(VIEW, null);
  const sharded = initialShardMap(VIEW, 3);
  const resharded = planReshard(sharded, VIEW, 2);
  const grown = withMember(sharded, shardIdFor(0), nodeAddress('10.10.0.9:8090'));
  for (const map of [replicated, sharded, resharded, grown]) checkShardMap(map);
  const maps = [replicated, sharded, resharded, grown, withMember(replicated, shardIdFor(0), nodeAddress('10.10.0.9:8090'))];
  for (const a of maps) {
    for (const b of maps) {
      const merged = mergeShardMaps(a, b);
      assert.equal(merged.epoch, Math.max(a.epoch, b.epoch));
    }
  }
});

test('shard maps: a merge that would yield a map no node can route by fires', () => {
  const good = initialShardMap(VIEW, 2);
  const short: ShardMap = { ...good, epoch: asEpoch(5), partitions: good.partitions.slice(1) };
  fires(() => mergeShardMaps(good, short), /has 1023 partitions, not 1024/);
  const orphan: ShardMap = { ...good, epoch: asEpoch(5), partitions: good.partitions.map((p, i) => (i === 7 ? shardIdFor(9) : p)) };
  fires(() => mergeShardMaps(orphan, good), /belongs to s9, which is no shard of the map/);
  const unsorted: ShardMap = { ...good, epoch: asEpoch(5), shards: { ...good.shards, s0: [C, A] } };
  fires(() => mergeShardMaps(good, unsorted), /members of s0 are not sorted and distinct/);
});

test('shard maps: shardOfKey relies on every partition being assigned', () => {
  const good = initialShardMap(VIEW, 2);
  assert.match(shardOfKey(good, 'k'), /^s[01]$/);
  fires(() => shardOfKey({ ...good, partitions: [] }, 'k'), /assigns each of the PARTITION_COUNT partitions/);
});
