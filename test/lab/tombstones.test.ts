// The tombstone grace on a real network (README, "Deletes and the tombstone grace"): a member of a
// shard that is down must not hold the shard's tombstones for ever, and a member that comes back
// after the live members collected tombstones without it must copy its shard afresh rather than
// merge back what those tombstones deleted. Real node processes, each in its own network
// namespace; the faults are SIGKILLs. Short TOMBSTONE_GRACE_MS and ANTI_ENTROPY_INTERVAL_MS (the
// collection runs at the end of each anti-entropy round).

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import type { Lab } from '../../harness/lab/lab.ts';
import { NotYet, pollUntil } from '../helpers/cluster.ts';
import { Client, get, type CausalMetadata, type NodeAddress, type Reply } from '../helpers/http.ts';
import { skipReason, sleep, useLab } from './helpers.ts';

const GRACE_MS = 4_000;
const ANTI_ENTROPY_MS = 500;
/**
 * How long past the grace a tombstone may still be held: the collection runs once an anti-entropy
 * round (500 ms), goes by the applied clock as of a checkpoint taken at an earlier round (up to
 * 500 ms older), and counts the live peer's applied clock from its pings (every 500 ms). Four
 * rounds cover that with a round to spare.
 */
const COLLECTION_LAG_MS = 4 * ANTI_ENTROPY_MS;
/** The workload after the kill. */
const RUN_AFTER_KILL_MS = 20_000;
const SAMPLE_EVERY_MS = 1_000;
/** Each worker does one key (a PUT, then a DELETE or a second PUT) every this many ms, at most. */
const WORKER_PACE_MS = 25;
const CONVERGE_TIMEOUT_MS = 20_000;
/**
 * How long after their start the nodes may still name a live member in blockedBy: until a collection
 * round has the member's ping (it may still be starting, or copying its shard, when the first rounds
 * run). Pings and rounds come every 500 ms; the slowest node is ready within about a second.
 */
const SETTLE_MS = 3_000;

type TombstoneStatus = {
  held: number;
  oldestAgeMs: number | null;
  oldestAgeAtLeast: boolean;
  graceMs: number;
  blockedBy: string[];
  collectingWithout: string[];
  collectedUpTo: Record<string, number>;
  kept: number;
  keptMax: number;
  graveyardFull: boolean;
  stale: null | { forMs: number; peer: string; handedOff: boolean };
};

async function statusOf(lab: Lab, node: NodeAddress): Promise<Record<string, any>> {
  const status = await lab.status(node, 5_000);
  if (status === undefined) throw new NotYet(`${node} does not answer /status`);
  return status;
}

/** Runs `fn` over `items`, at most `limit` at once. */
async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

/** A vector clock as text, its entries in order (two clocks with the same entries read the same). */
function clockText(clock: Record<string, number> | null | undefined): string {
  return JSON.stringify(Object.entries(clock ?? {}).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)));
}

/** The last octet of a node's IP, for compact tables: 10.10.7.4:8090 -> .4 */
function short(node: string): string {
  return `.${node.split(':')[0]!.split('.').at(-1)}`;
}

// ------------------------------------------------------------------------------------------------

type Op = { key: string; kind: 'put' | 'delete'; value?: string; node: NodeAddress; startedMs: number; endedMs: number; status: number; text: string };

/**
 * One client session: each key it touches is new; it PUTs the key at one live node, then DELETEs it
 * at the other with the metadata of the PUT (9 keys in 10), or PUTs a second value there (1 in 10,
 * keys that stay). Every operation is recorded, acknowledged or not.
 */
class Worker {
  readonly client = new Client();
  readonly ops: Op[] = [];
  /** The last acknowledged operation of each key: the value, or null when it was deleted. */
  readonly last = new Map<string, string | null>();
  /** When each DELETE was sent. */
  readonly deleteStarts: number[] = [];
  readonly name: string;
  readonly putAt: NodeAddress;
  readonly deleteAt: NodeAddress;

  constructor(name: string, putAt: NodeAddress, deleteAt: NodeAddress) {
    this.name = name;
    this.putAt = putAt;
    this.deleteAt = deleteAt;
  }

  async run(shouldStop: () => boolean): Promise<void> {
    let nextAt = performance.now();
    for (let i = 0; !shouldStop(); i++) {
      const key = `${this.name}-${i}`;
      await this.op(key, 'put', this.putAt, `${key}-v1`);
      if (i % 10 === 9) await this.op(key, 'put', this.deleteAt, `${key}-v2`);
      else await this.op(key, 'delete', this.deleteAt);
      nextAt += WORKER_PACE_MS;
      await sleep(Math.max(0, nextAt - performance.now()));
    }
  }

  private async op(key: string, kind: 'put' | 'delete', node: NodeAddress, value?: string): Promise<void> {
    const startedMs = performance.now();
    if (kind === 'delete') this.deleteStarts.push(startedMs);
    let reply: Reply;
    try {
      reply = kind === 'put' ? await this.client.put(node, key, value) : await this.client.del(node, key);
    } catch (error) {
      reply = { status: 0, body: undefined, text: (error as Error).message };
    }
    this.ops.push({ key, kind, value, node, startedMs, endedMs: performance.now(), status: reply.status, text: reply.text.slice(0, 200) });
    if (reply.status >= 200 && reply.status < 300) this.last.set(key, kind === 'put' ? value! : null);
  }
}

type Sample = {
  /** When the /status requests went out and when the last answer came, ms since the kill (negative: before it). */
  sentMs: number;
  doneMs: number;
  /** Deletes started so far, and how many of them within the grace and the collection lag before the sample. */
  deletesSoFar: number;
  bound: number;
  at: Record<NodeAddress, TombstoneStatus>;
};

describe('tombstones with a member killed for good: 3 replicas, no SHARD_COUNT, in memory', { skip: skipReason }, () => {
  const lab = useLab({
    nodeCount: 3,
    persist: false,
    env: { TOMBSTONE_GRACE_MS: String(GRACE_MS), ANTI_ENTROPY_INTERVAL_MS: String(ANTI_ENTROPY_MS) },
  });

  test('a member killed for good does not hold tombstones for ever', { timeout: 120_000 }, async (t) => {
    const [a, b, dead] = lab().addresses() as [NodeAddress, NodeAddress, NodeAddress];
    const live = [a, b];
    const workers = [new Worker('w0', a, b), new Worker('w1', b, a)];
    let stopped = false;
    const workload = Promise.all(workers.map((w) => w.run(() => stopped)));
    const allDeleteStarts = (): number[] => workers.flatMap((w) => w.deleteStarts);

    // Every second, from the workload's start: both live nodes' tombstones, with the bound the
    // deletes so far allow (times are made relative to the kill afterwards).
    type RawSample = Omit<Sample, 'sentMs' | 'doneMs'> & { sent: number; done: number };
    const raw: RawSample[] = [];
    let samplerError: unknown;
    const sampler = (async () => {
      for (let next = performance.now(); !stopped; next += SAMPLE_EVERY_MS) {
        await sleep(Math.max(0, next - performance.now()));
        if (stopped) return;
        const sent = performance.now();
        const statuses = await Promise.all(live.map((node) => statusOf(lab(), node)));
        const done = performance.now();
        const starts = allDeleteStarts();
        raw.push({
          sent,
          done,
          deletesSoFar: starts.filter((s) => s <= done).length,
          // A tombstone of a delete started before this may still be held only if it is at most the
          // grace and the collection lag old.
          bound: starts.filter((s) => s > sent - GRACE_MS - COLLECTION_LAG_MS && s <= done).length,
          at: Object.fromEntries(live.map((node, i) => [node, statuses[i]!.tombstones as TombstoneStatus])),
        });
      }
    })().catch((error: unknown) => {
      samplerError = error;
    });

    // A store that has been running for longer than the grace before the member dies: "within the
    // grace" is then about the member's absence, not about the nodes' own start.
    const { value: uptimeAtKill } = await pollUntil(
      `the live nodes up for more than the grace (${GRACE_MS} ms)`,
      async () => {
        const uptimes = await Promise.all(live.map(async (node) => (await statusOf(lab(), node)).uptimeMs as number));
        if (!uptimes.every((ms) => ms > GRACE_MS + 1_000)) throw new NotYet(`up ${uptimes.join('/')} ms`);
        return Math.min(...uptimes);
      },
      { timeoutMs: GRACE_MS + 15_000, intervalMs: 200 },
    );
    await lab().kill(dead);
    const killedAt = performance.now();
    await sleep(RUN_AFTER_KILL_MS);
    stopped = true;
    await Promise.all([workload, sampler]);
    if (samplerError !== undefined) throw samplerError;
    const samples: Sample[] = raw.map(({ sent, done, ...rest }) => ({ ...rest, sentMs: sent - killedAt, doneMs: done - killedAt }));

    // The curve, for the closing note: printed before anything is judged.
    const list = (xs: string[]): string => (xs.length === 0 ? '-' : xs.map(short).join(','));
    const header = `dead ${short(dead)} SIGKILLed at t=0, the live nodes up ${Math.round(uptimeAtKill / 1000)} s; grace ${GRACE_MS} ms, anti-entropy every ${ANTI_ENTROPY_MS} ms; bound = deletes started in the last ${GRACE_MS + COLLECTION_LAG_MS} ms`;
    const columns = ['t(s)', 'deletes', 'bound', ...live.map((n) => `held${short(n)}`), ...live.map((n) => `${short(n)} blockedBy / collectingWithout`)];
    const rows = samples.map((s) => [
      (s.sentMs / 1000).toFixed(1),
      String(s.deletesSoFar),
      String(s.bound),
      ...live.map((n) => String(s.at[n]!.held)),
      ...live.map((n) => `${list(s.at[n]!.blockedBy)} / ${list(s.at[n]!.collectingWithout)}`),
    ]);
    const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((r) => r[i]!.length)));
    const line = (cells: string[]): string => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
    t.diagnostic([header, line(columns), ...rows.map(line)].join('\n'));

    // (c) Every operation was acknowledged by the live nodes.
    const ops = workers.flatMap((w) => w.ops);
    const failed = ops.filter((op) => op.status < 200 || op.status >= 300);
    assert.deepEqual(
      failed.slice(0, 5).map((op) => `${op.kind} ${op.key} at ${op.node}, ${Math.round(op.startedMs - killedAt)} ms after the kill: ${op.status} ${op.text}`),
      [],
      `${failed.length} of ${ops.length} operations were not acknowledged`,
    );
    const deletes = allDeleteStarts().length;
    assert.ok(deletes > 500, `a delete-heavy workload: ${deletes} deletes`);

    // (b) Held stays bounded: never more than what was deleted within the grace and the collection
    // lag before the sample (plus the few deletes whose start raced the sample). If tombstones were
    // never collected, held would be every delete so far: well past the bound after the first
    // grace.
    const SLACK = 2 * workers.length;
    const over = samples.filter((s) => live.some((n) => s.at[n]!.held > s.bound + SLACK));
    assert.deepEqual(
      over.map((s) => `t=${(s.sentMs / 1000).toFixed(1)} s: held ${live.map((n) => s.at[n]!.held).join('/')} > bound ${s.bound} + ${SLACK} (deletes so far ${s.deletesSoFar})`),
      [],
      'tombstones held beyond the grace and the collection lag',
    );
    const lastSample = samples.at(-1)!;
    assert.ok(lastSample.sentMs > RUN_AFTER_KILL_MS - 2 * SAMPLE_EVERY_MS, `sampled to the end of the run (last at ${lastSample.sentMs} ms)`);
    for (const node of live) {
      assert.ok(
        lastSample.at[node]!.held < lastSample.deletesSoFar / 2,
        `${node} at the end holds ${lastSample.at[node]!.held} of ${lastSample.deletesSoFar} tombstones: they are collected`,
      );
    }

    // (c) The final read of every key, at both live nodes, agrees with its last acknowledged
    // operation. Each worker's keys are read with its session's metadata, so a node that has not
    // applied all of them yet waits (a 503 would fail): first wait until the live nodes agree.
    await pollUntil(
      'the live nodes applied the same writes',
      async () => {
        const [sa, sb] = await Promise.all(live.map((n) => statusOf(lab(), n)));
        if (clockText(sa!.applied) !== clockText(sb!.applied)) throw new NotYet(`${clockText(sa!.applied)} vs ${clockText(sb!.applied)}`);
      },
      { timeoutMs: CONVERGE_TIMEOUT_MS, intervalMs: 200 },
    );
    async function readAll(nodes: readonly NodeAddress[], what: string): Promise<void> {
      const wrong: string[] = [];
      for (const worker of workers) {
        const meta: CausalMetadata = worker.client.meta;
        const reads = [...worker.last].flatMap(([key, value]) => nodes.map((node) => ({ key, value, node })));
        await eachLimited(reads, 8, async ({ key, value, node }) => {
          const r = await get(node, key, meta);
          const ok = value === null ? r.status === 404 : r.status === 200 && r.body?.value === value;
          if (!ok) wrong.push(`${key} at ${node}: expected ${value === null ? '404' : JSON.stringify(value)}, got ${r.status} ${r.text.slice(0, 120)}`);
        });
      }
      assert.deepEqual(wrong.slice(0, 10), [], `${what}: ${wrong.length} reads disagree with the last acknowledged operation`);
    }
    await readAll(live, 'the live nodes');

    // (d) The dead member's slot can be reused: a fresh, empty process at its address, same VIEW.
    lab().start(dead);
    const deletedKey = [...workers[0]!.last].find(([, value]) => value === null)![0];
    await pollUntil(
      `the fresh node at ${dead} ready, with the live nodes' keys`,
      async () => {
        const [fresh, sa, sb] = await Promise.all([dead, ...live].map((n) => statusOf(lab(), n)));
        if (fresh!.ready !== true) throw new NotYet('not ready');
        if (fresh!.keys !== sa!.keys || fresh!.keys !== sb!.keys) throw new NotYet(`keys ${fresh!.keys} vs ${sa!.keys}/${sb!.keys}`);
      },
      { timeoutMs: CONVERGE_TIMEOUT_MS, intervalMs: 200 },
    );
    const r = await get(dead, deletedKey, null);
    assert.equal(r.status, 404, `${deletedKey}, deleted during the run, at the fresh node: ${r.text}`);
    await readAll([dead], 'the fresh node');
    lab().assertNoCrash();

    // (a) While within the grace the dead member is what collection waits for (blockedBy); after
    // it, collection goes on without it (collectingWithout). Judged last, so that a wrong status
    // does not hide the rest.
    const named = (s: Sample, n: NodeAddress): 'blocked' | 'without' | 'neither' =>
      s.at[n]!.blockedBy.includes(dead) ? 'blocked' : s.at[n]!.collectingWithout.includes(dead) ? 'without' : 'neither';
    const within = samples.filter((s) => s.sentMs > 0 && s.doneMs < GRACE_MS);
    const after = samples.filter((s) => s.sentMs > GRACE_MS + COLLECTION_LAG_MS);
    // Before the kill, once the store has settled (see SETTLE_MS): the first second after the start
    // may name a member whose first ping has not come yet.
    const before = samples.filter((s) => s.doneMs < 0 && s.sentMs > SETTLE_MS - uptimeAtKill);
    const verdicts = (ss: Sample[]): string => ss.map((s) => `t=${(s.sentMs / 1000).toFixed(1)}: ${live.map((n) => named(s, n)).join('/')}`).join('; ');
    assert.ok(within.length >= 2 && after.length >= 10, `samples within the grace (${within.length}) and after it (${after.length})`);
    assert.ok(before.length >= 1, `samples before the kill, the store settled (${before.length})`);
    for (const s of before) for (const n of live) assert.equal(named(s, n), 'neither', `before the kill, nothing is waited for: ${verdicts(before)}`);
    for (const n of live) {
      assert.ok(
        within.every((s) => named(s, n) !== 'without') && within.some((s) => named(s, n) === 'blocked'),
        `${n}: within the grace since the kill (the nodes up ${uptimeAtKill} ms at the kill), ${dead} is in blockedBy, never in collectingWithout: ${verdicts(within)}`,
      );
      assert.ok(
        after.every((s) => named(s, n) !== 'blocked') && after.every((s) => named(s, n) === 'without'),
        `${n}: after the grace, ${dead} is in collectingWithout: ${verdicts(after)}`,
      );
    }
  });
});

// ------------------------------------------------------------------------------------------------

/** The JSON lines a node logged from byte `offset` of its log on (the lab's own lines skipped). */
function logLinesSince(lab: Lab, node: NodeAddress, offset: number): { msg: string; level: number }[] {
  const text = readFileSync(lab.logPath(node)).subarray(offset).toString('utf8');
  return text.split('\n').flatMap((line) => {
    if (!line.startsWith('{')) return [];
    try {
      const entry = JSON.parse(line) as { msg?: unknown; level?: unknown };
      return typeof entry.msg === 'string' ? [{ msg: entry.msg, level: Number(entry.level) }] : [];
    } catch {
      return [];
    }
  });
}

/** Room in the graveyard for exactly the 10 tombstones collected without the dead member (they are kept until it is back). */
const GRAVEYARD_ROOM = 10;

/**
 * Versions a node holds for a peer that is down (hints). A member back after the grace is stale only
 * if it missed collected tombstones; if its peers' hints still held every write it missed (the
 * deletes among them), it gets them handed off when it is back and just catches up. After hours
 * down the hints would have overflowed REPLICATION_QUEUE_MAX; here the bound is small, so the 7 or 8
 * writes each live node takes while the member is down drop its oldest hints, the first deletes.
 */
const HINTS_MAX = 4;

describe('tombstones and a member back after the grace: 3 replicas, durable, GRAVEYARD_MAX=10', { skip: skipReason }, () => {
  const lab = useLab({
    nodeCount: 3,
    env: {
      TOMBSTONE_GRACE_MS: String(GRACE_MS),
      ANTI_ENTROPY_INTERVAL_MS: String(ANTI_ENTROPY_MS),
      GRAVEYARD_MAX: String(GRAVEYARD_ROOM),
      REPLICATION_QUEUE_MAX: String(HINTS_MAX),
    },
  });

  test('a member back after the grace copies its shard afresh and brings nothing deleted back', { timeout: 120_000 }, async (t) => {
    const [a, b, victim] = lab().addresses() as [NodeAddress, NodeAddress, NodeAddress];
    const all = [a, b, victim];
    const client = new Client();
    const expected = new Map<string, string | null>();
    for (let i = 0; i < 20; i++) {
      const r = await client.put(all[i % 3]!, `k${i}`, `k${i}-old`);
      assert.equal(r.status, 201, `PUT k${i}: ${r.text}`);
      expected.set(`k${i}`, `k${i}-old`);
    }
    // The victim has every key, on disk, before it dies.
    await pollUntil(
      `${victim} holds the 20 keys on disk`,
      async () => {
        const statuses = await Promise.all(all.map((n) => statusOf(lab(), n)));
        const s = statuses[2]!;
        if (s.keys !== 20 || clockText(s.durableApplied) !== clockText(statuses[0]!.applied)) {
          throw new NotYet(`keys ${s.keys}, durable ${clockText(s.durableApplied)} vs applied at ${a} ${clockText(statuses[0]!.applied)}`);
        }
      },
      { timeoutMs: CONVERGE_TIMEOUT_MS, intervalMs: 100 },
    );
    await lab().kill(victim);

    // While it is down: k0..k9 deleted, k10..k14 new values.
    for (let i = 0; i < 15; i++) {
      const key = `k${i}`;
      const node = i % 2 === 0 ? a : b;
      if (i < 10) {
        const r = await client.del(node, key);
        assert.equal(r.status, 200, `DELETE ${key} at ${node}: ${r.text}`);
        expected.set(key, null);
      } else {
        const r = await client.put(node, key, `${key}-new`);
        assert.equal(r.status, 200, `PUT ${key} at ${node}: ${r.text}`);
        expected.set(key, `${key}-new`);
      }
    }
    const deletedAt = performance.now();

    // The live nodes collect those tombstones without it, once the grace has passed.
    const { elapsedMs: collectedMs } = await pollUntil(
      'the live nodes collected the 10 tombstones without the dead member',
      async () => {
        for (const node of [a, b]) {
          const tombstones = (await statusOf(lab(), node)).tombstones as TombstoneStatus;
          if (tombstones.held !== 0) throw new NotYet(`${node} holds ${tombstones.held}: ${JSON.stringify(tombstones)}`);
          assert.deepEqual(tombstones.collectingWithout, [victim], `${node} collected without ${victim}: ${JSON.stringify(tombstones)}`);
          assert.equal(tombstones.kept, GRAVEYARD_ROOM, `${node} keeps what it collected without ${victim}: ${JSON.stringify(tombstones)}`);
        }
      },
      { timeoutMs: GRACE_MS + 20_000, intervalMs: 200 },
    );
    assert.ok(collectedMs >= GRACE_MS - 500, `not before the grace: collected ${Math.round(collectedMs)} ms after the deletes`);
    // Its hints did not keep every write it missed (see HINTS_MAX).
    const replication = await Promise.all([a, b].map(async (n) => (await statusOf(lab(), n)).replication as { hints: number; dropped: number }));
    assert.ok(
      replication.every((r) => r.dropped > 0),
      `the live nodes dropped hints for ${victim}: ${JSON.stringify(replication)}`,
    );

    // Back with its old data directory.
    const logOffset = statSync(lab().logPath(victim)).size;
    lab().start(victim);
    const restartedAt = performance.now();
    await lab().waitReady([victim]);

    const STALE = 'replica is stale';
    const RECOPY = 'stale replica: the live members hold its writes; copying the shard afresh';
    const COPIED = 'shard copied from peer';
    const { value: logged } = await pollUntil(
      `${victim} logs "${STALE}", then "${RECOPY}", then "${COPIED}"`,
      async () => {
        const lines = logLinesSince(lab(), victim, logOffset);
        const stale = lines.findIndex((l) => l.msg.startsWith(STALE));
        const recopy = lines.findIndex((l, i) => i > stale && l.msg === RECOPY);
        const copied = lines.findIndex((l, i) => i > recopy && l.msg === COPIED);
        if (stale < 0 || recopy < 0 || copied < 0) throw new NotYet(`positions ${stale} ${recopy} ${copied}: ${lines.map((l) => l.msg).join(' | ').slice(-600)}`);
        assert.equal(lines[stale]!.level, 40, `"${STALE}" is a warning`);
        return [lines[stale]!, lines[recopy]!, lines[copied]!].map((l) => l.msg);
      },
      { timeoutMs: CONVERGE_TIMEOUT_MS, intervalMs: 200 },
    );

    // Every node converges on the deletes and the new values. Read with the session's metadata: a
    // node that has not caught up may answer 503 (not yet), never the value a delete removed.
    await pollUntil(
      'every node: k0..k9 404, k10..k14 the new values, k15..k19 the old ones',
      async () => {
        for (const node of all) {
          for (const [key, value] of expected) {
            const r = await get(node, key, client.meta);
            if (r.status === 503) throw new NotYet(`${key} at ${node}: ${r.text}`);
            if (value === null) assert.equal(r.status, 404, `${key}, deleted, at ${node}: ${r.text}`);
            else {
              assert.equal(r.status, 200, `${key} at ${node}: ${r.text}`);
              assert.equal(r.body.value, value, `${key} at ${node}`);
            }
          }
        }
      },
      { timeoutMs: CONVERGE_TIMEOUT_MS, intervalMs: 200 },
    );
    const convergedAt = performance.now();
    await pollUntil(
      'no node stale',
      async () => {
        for (const node of all) {
          const stale = ((await statusOf(lab(), node)).tombstones as TombstoneStatus).stale;
          if (stale !== null) throw new NotYet(`${node}: ${JSON.stringify(stale)}`);
        }
      },
      { timeoutMs: CONVERGE_TIMEOUT_MS, intervalMs: 200 },
    );
    // Nothing deleted came back anywhere, also for a client without metadata, once no node is stale.
    for (const node of all) {
      for (const [key, value] of expected) {
        const r = await get(node, key, null);
        if (value === null) assert.equal(r.status, 404, `${key}, deleted, at ${node} without metadata: ${r.text}`);
        else assert.equal(r.body?.value, value, `${key} at ${node} without metadata: ${r.text}`);
      }
    }
    const keyCounts = await Promise.all(all.map(async (n) => (await statusOf(lab(), n)).keys as number));
    assert.deepEqual(keyCounts, [10, 10, 10], 'every node holds the 10 live keys');
    // Every member heard from again, none stale: the kept tombstones are ordinary memories again.
    await pollUntil(
      'no node keeps tombstones for a missing member',
      async () => {
        for (const node of all) {
          const tombstones = (await statusOf(lab(), node)).tombstones as TombstoneStatus;
          if (tombstones.kept !== 0) throw new NotYet(`${node}: ${JSON.stringify(tombstones)}`);
        }
      },
      { timeoutMs: CONVERGE_TIMEOUT_MS, intervalMs: 200 },
    );
    t.diagnostic(
      `tombstones collected ${Math.round(collectedMs)} ms after the deletes (grace ${GRACE_MS} ms); the member restarted ${Math.round(restartedAt - deletedAt)} ms after them, ` +
        `logged ${logged.map((m) => JSON.stringify(m.slice(0, 40))).join(' -> ')}, and every node read right ${Math.round(convergedAt - restartedAt)} ms after the restart`,
    );
    lab().assertNoCrash();
  });
});
