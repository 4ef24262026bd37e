// The consistency checker: given a recorded history (and, after heal and quiescence, what every
// replica holds), it reports causal violations, lost writes and divergent replicas, each with the
// operations involved and a one-line explanation. Pure: no I/O, no clock; the same input always
// gives the same report, so it runs inside a deterministic simulator as well.
//
// Causal order comes from causal.ts: write a is *older* than write b when a is in past(b) (b's
// writer knew a); writes where neither is in the other's past are *concurrent*, and either may win.
//
// (1) Causal violations, for each read by client c of key k, with P = c's past before the read:
//   - stale-read: it returned write w, and P holds a write w' of k (put or delete) with w older
//     than w' (read-your-writes, monotonic reads and transitive dependencies alike);
//   - stale-absent: it found k absent (404 on a get or a delete) although the newest writes of k
//     in P (those older than no other write of k in P) are all puts, and no delete of k outside P
//     that had begun by the end of the read (so concurrent with or later than P) could explain it;
//   - phantom: it returned a value never written, written to another key, written by an operation
//     that failed, or written by an operation that began after the read ended;
//   - cyclic: it returned a value whose write causally depends on this very read.
//   Concurrent writes are never violations.
// (2) Lost writes (with final states): a write that must survive (an acknowledged put or delete,
//   or a put whose value some read returned) is lost when some replica of its key's shard ends
//   with a state older than it: for a put w, a value whose write is older than w, or absent with
//   no delete of k later than or concurrent with w; for a delete d, a value whose write is older
//   than d; for either, a value never written.
// (3) Divergence (with final states): replicas of one shard that end with different states of a
//   key (absent counts as a state); and a key held by several shards, or (given `shardOf`) by a
//   shard other than its own.
//
// On 404s: a 404 is judged like a value read whose "value" is some delete. It is legal when a delete
// of k could be the current state: one of the newest writes of k in P, or any delete outside P
// (being outside P it is older than nothing in P). A delete that is concurrent with the put the
// reader saw therefore explains the 404, as a concurrent put would explain reading its value.
//
// Cost, n operations and C clients: the pasts take O(n log n + n x C) (causal.ts). A value read is
// O(1) when it returns a write its session did not know yet (pasts are downward closed, so nothing
// it knew can be newer), else O(clients that wrote the key x log). A 404 is O(clients that wrote
// the key) and, when no delete outside the past explains it, O(deletes x candidates). Final states:
// O(keys x replicas + writes that must survive x distinct final states of their key x C).
// 100k operations check in well under a second (test/check/checker.test.ts prints the time).

import { buildCausalIndex, pastCount, type CausalIndex, type Past } from './causal.ts';
import { isAbsentRead, isValueRead, showValue, valueKey, type OpId, type OpKind, type Operation, type Outcome } from './operation.ts';

/** An operation as named in a report. `value`: the value written (put) or returned (get). */
export interface OpRef {
  id: OpId;
  client: string;
  node: string;
  kind: OpKind;
  key: string;
  outcome: Outcome;
  value?: unknown;
  found?: boolean;
}

export type ViolationKind = 'stale-read' | 'stale-absent' | 'phantom' | 'cyclic';
/** Which session guarantee a stale read breaks, from how the newer write entered the reader's past. */
export type CausalRule = 'read-your-writes' | 'monotonic-reads' | 'causal';

export interface Violation {
  kind: ViolationKind;
  /** The read. */
  op: OpRef;
  /** The write whose value the read returned, when there is one. */
  returned?: OpRef;
  /** A write of the key in the reader's past that the returned state is older than. */
  newer?: OpRef;
  /** The reader's earlier operation through which `newer` entered its past (own write, or a read). */
  via?: OpRef;
  rule?: CausalRule;
  explanation: string;
}

export interface ReplicaFinal {
  node: string;
  shard: string;
  present: boolean;
  value?: unknown;
  /** The write that produced `value`, when known. */
  write?: OpRef;
}

export interface LostWrite {
  write: OpRef;
  /** The replicas of the key's shard whose final state is older than the write. */
  replicas: ReplicaFinal[];
  explanation: string;
}

export interface Divergence {
  /** replicas-disagree: replicas of one shard end differently; shard-placement: a key held by several shards, or outside its shard. */
  kind: 'replicas-disagree' | 'shard-placement';
  key: string;
  shards: string[];
  replicas: ReplicaFinal[];
  explanation: string;
}

/** What one replica holds after quiescence, read from it directly. A key missing (or undefined) is absent. */
export interface ReplicaState {
  node: string;
  shard: string;
  data: ReadonlyMap<string, unknown> | Readonly<Record<string, unknown>>;
}

export interface CheckOptions {
  /**
   * The shard that owns a key at the end. Without it a key belongs to the shards where some replica
   * holds it (every replica, when none does). Give it after a reshard, so that a key that vanished
   * from its new shard is not judged on its old one.
   */
  shardOf?: (key: string) => string;
  /** Violations for which the checker looks for `via` (it scans the reader's session). Default 1000. */
  traceLimit?: number;
}

export interface CheckResult {
  causalViolations: Violation[];
  lostWrites: LostWrite[];
  divergentKeys: Divergence[];
  /** Operations in the history, and how many ended ok, fail and unknown. */
  ops: number;
  ok: number;
  failed: number;
  unknown: number;
  /** No violation, lost write or divergence. */
  valid: boolean;
}

/** Per key: its writes, by lane for acknowledged ones (in lane order), and the others. */
interface KeyWrites {
  /** The lanes with acknowledged writes of the key (an array: the hot loops iterate it). */
  lanes: LaneWrites[];
  byLane: Map<number, LaneWrites>;
  /** Unacknowledged writes of the key (outcome unknown or fail), op indices. */
  others: number[];
  /** Writes that must survive: acknowledged, or a put whose value was read. */
  mustSurvive: number[];
}

interface LaneWrites {
  lane: number;
  seqs: number[];
  ops: number[];
  deleteSeqs: number[];
  deleteOps: number[];
}

export function checkHistory(history: readonly Operation[], finalStates?: readonly ReplicaState[], options: CheckOptions = {}): CheckResult {
  const index = buildCausalIndex(history);
  const keys = indexKeys(index);
  const causalViolations = findCausalViolations(index, keys, options.traceLimit ?? 1000);
  const lostWrites: LostWrite[] = [];
  const divergentKeys: Divergence[] = [];
  if (finalStates !== undefined) checkFinalStates(index, keys, finalStates, options, lostWrites, divergentKeys);

  let ok = 0;
  let failed = 0;
  let unknown = 0;
  for (const op of history) {
    if (op.outcome === 'ok') ok++;
    else if (op.outcome === 'fail') failed++;
    else unknown++;
  }
  return {
    causalViolations,
    lostWrites,
    divergentKeys,
    ops: history.length,
    ok,
    failed,
    unknown,
    valid: causalViolations.length === 0 && lostWrites.length === 0 && divergentKeys.length === 0,
  };
}

function indexKeys(index: CausalIndex): Map<string, KeyWrites> {
  const keys = new Map<string, KeyWrites>();
  const entry = (key: string): KeyWrites => {
    let kw = keys.get(key);
    if (kw === undefined) {
      kw = { lanes: [], byLane: new Map(), others: [], mustSurvive: [] };
      keys.set(key, kw);
    }
    return kw;
  };
  const observed = new Uint8Array(index.ops.length);
  for (let i = 0; i < index.ops.length; i++) if ((index.merged[i] as number) >= 0) observed[index.merged[i] as number] = 1;
  // Lane order, so that each lane's writes of a key come out in sequence order.
  index.order.forEach((seq, lane) => {
    for (const i of seq) {
      const s = index.writeSeq[i] as number;
      if (s < 0) continue;
      const op = index.ops[i] as Operation;
      const kw = entry(op.key);
      if (s === 0) kw.others.push(i);
      else {
        let lw = kw.byLane.get(lane);
        if (lw === undefined) {
          lw = { lane, seqs: [], ops: [], deleteSeqs: [], deleteOps: [] };
          kw.byLane.set(lane, lw);
          kw.lanes.push(lw);
        }
        lw.seqs.push(s);
        lw.ops.push(i);
        if (op.kind === 'delete') {
          lw.deleteSeqs.push(s);
          lw.deleteOps.push(i);
        }
      }
      if (s > 0 || observed[i] === 1) kw.mustSurvive.push(i);
    }
  });
  return keys;
}

/** Index of the last element <= x in an ascending array, or -1. */
function lastAtMost(sorted: readonly number[], x: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((sorted[mid] as number) <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

/** The last write of lane `lw` known to a past that holds `known` of the lane's writes, or -1. */
function lastKnown(lw: LaneWrites, known: number): number {
  const seqs = lw.seqs;
  if (known < (seqs[0] as number)) return -1;
  return lw.ops[lastAtMost(seqs, known)] as number;
}

/**
 * The writes of a key in `past` that may be newest: per lane the last one known (it depends on the
 * lane's earlier ones), plus unacknowledged ones known. The reader's own lane comes first.
 */
function candidates(index: CausalIndex, kw: KeyWrites, key: string, past: Past): number[] {
  const out: number[] = [];
  const own = kw.byLane.get(past.ownLane);
  if (own !== undefined) {
    const x = lastKnown(own, past.ownCount);
    if (x >= 0) out.push(x);
  }
  const lanes = kw.lanes;
  const base = past.base;
  for (let j = 0; j < lanes.length; j++) {
    const lw = lanes[j] as LaneWrites;
    if (lw.lane === past.ownLane) continue;
    const x = lastKnown(lw, base[lw.lane] as number);
    if (x >= 0) out.push(x);
  }
  const extra = past.extra;
  if (extra !== null && kw.others.length > 0) {
    if (extra.size < kw.others.length) {
      for (const w of extra) if ((index.ops[w] as Operation).key === key) out.push(w);
    } else {
      for (const w of kw.others) if (extra.has(w)) out.push(w);
    }
  }
  return out;
}

/**
 * A write of the key in `past` that write `w` is older than (own lane first), or -1. The same as
 * scanning `candidates`, without building the list: this runs for every read.
 */
function newerThan(index: CausalIndex, kw: KeyWrites, key: string, past: Past, w: number): number {
  // Pasts are downward closed: if w is older than a write in `past`, w is in `past` itself. So a
  // read of a write its session did not know yet (the usual case) needs no scan.
  if (!index.has(past, w)) return -1;
  const own = kw.byLane.get(past.ownLane);
  if (own !== undefined) {
    const x = lastKnown(own, past.ownCount);
    if (x >= 0 && x !== w && index.before(w, x)) return x;
  }
  const lanes = kw.lanes;
  const base = past.base;
  for (let j = 0; j < lanes.length; j++) {
    const lw = lanes[j] as LaneWrites;
    if (lw.lane === past.ownLane) continue;
    const x = lastKnown(lw, base[lw.lane] as number);
    if (x >= 0 && x !== w && index.before(w, x)) return x;
  }
  const extra = past.extra;
  if (extra !== null && kw.others.length > 0) {
    for (const x of extra) if (x !== w && (index.ops[x] as Operation).key === key && index.before(w, x)) return x;
  }
  return -1;
}

function findCausalViolations(index: CausalIndex, keys: Map<string, KeyWrites>, traceLimit: number): Violation[] {
  const violations: Violation[] = [];
  const ops = index.ops;
  let traced = 0;
  const trace = (read: number, newer: number): { via?: OpRef; rule?: CausalRule } => {
    if (traced >= traceLimit) return {};
    traced++;
    const lane = index.laneOf[read] as number;
    const seq = index.order[lane] as readonly number[];
    const end = index.posInLane[read] as number;
    for (let p = 0; p < end; p++) {
      const o = seq[p] as number;
      if (o === newer) return { via: ref(ops, o), rule: 'read-your-writes' };
      const w = index.merged[o] as number;
      if (w < 0) continue;
      if (w === newer) return { via: ref(ops, o), rule: 'monotonic-reads' };
      if (index.before(newer, w)) return { via: ref(ops, o), rule: 'causal' };
    }
    return {};
  };

  for (let i = 0; i < ops.length; i++) {
    const op = ops[i] as Operation;
    const valueRead = isValueRead(op);
    if (!valueRead && !isAbsentRead(op)) continue;
    const past = index.pasts[i] as Past;
    const who = `client ${op.client} ${op.kind} ${JSON.stringify(op.key)} (op ${op.id} at ${op.node})`;

    if (valueRead) {
      const w = index.returned[i] as number;
      const got = `returned ${showValue(op.readValue)}`;
      if (w < 0) {
        violations.push({ kind: 'phantom', op: ref(ops, i), explanation: `${who} ${got}, a value no operation wrote` });
        continue;
      }
      const wop = ops[w] as Operation;
      if (index.cyclic[i] === 1) {
        violations.push({
          kind: 'cyclic',
          op: ref(ops, i),
          returned: ref(ops, w),
          explanation: `${who} ${got}, written by op ${wop.id} (client ${wop.client}), which causally depends on this read`,
        });
        continue;
      }
      let phantom: string | null = null;
      if (wop.key !== op.key) phantom = `written to key ${JSON.stringify(wop.key)} by op ${wop.id}`;
      else if (wop.outcome === 'fail') phantom = `written by op ${wop.id} (client ${wop.client}), which failed`;
      else if (wop.startMs > op.endMs) phantom = `written by op ${wop.id} (client ${wop.client}), which began at ${wop.startMs} ms, after this read ended at ${op.endMs} ms`;
      if (phantom !== null) {
        violations.push({ kind: 'phantom', op: ref(ops, i), returned: ref(ops, w), explanation: `${who} ${got}, ${phantom}` });
        continue;
      }
      const kw = keys.get(op.key);
      if (kw === undefined) continue;
      const x = newerThan(index, kw, op.key, past, w);
      if (x >= 0) {
        const { via, rule } = trace(i, x);
        const xop = ops[x] as Operation;
        violations.push({
          kind: 'stale-read',
          op: ref(ops, i),
          returned: ref(ops, w),
          newer: ref(ops, x),
          ...(via !== undefined ? { via } : {}),
          ...(rule !== undefined ? { rule } : {}),
          explanation:
            `${who} ${got} (op ${wop.id} by ${wop.client}), but its causal past holds the newer ${describeWrite(xop)}` +
            `${via !== undefined ? `, known ${viaText(via, rule, x, ops)}` : ''}`,
        });
      }
      continue;
    }

    // Absent: fine if nothing of the key is known, or a delete could be the newest state.
    const kw = keys.get(op.key);
    if (kw === undefined) continue;
    if (deleteOutsidePast(index, kw, past, op.endMs)) continue;
    const cands = candidates(index, kw, op.key, past);
    if (cands.length === 0) continue;
    if (someDeleteIsNewest(index, cands)) continue;
    const x = aNewest(index, cands);
    const { via, rule } = trace(i, x);
    violations.push({
      kind: 'stale-absent',
      op: ref(ops, i),
      newer: ref(ops, x),
      ...(via !== undefined ? { via } : {}),
      ...(rule !== undefined ? { rule } : {}),
      explanation:
        `${who} found the key absent (404), but its causal past holds ${describeWrite(ops[x] as Operation)} and no delete of the key could be newer` +
        `${via !== undefined ? `; known ${viaText(via, rule, x, ops)}` : ''}`,
    });
  }
  return violations;
}

/**
 * Is one of the deletes among `cands` older than no other candidate? O(deletes x candidates), but
 * the latest delete (in input order) is tried first and is usually the answer.
 */
function someDeleteIsNewest(index: CausalIndex, cands: readonly number[]): boolean {
  const ops = index.ops;
  const deletes = cands.filter((d) => (ops[d] as Operation).kind === 'delete').sort((a, b) => b - a);
  for (const d of deletes) {
    let newest = true;
    for (const y of cands) {
      if (y !== d && index.before(d, y)) {
        newest = false;
        break;
      }
    }
    if (newest) return true;
  }
  return false;
}

/** A candidate older than no other one (own lane preferred: candidates list it first). */
function aNewest(index: CausalIndex, cands: readonly number[]): number {
  let x = cands[0] as number;
  for (let changed = true; changed; ) {
    changed = false;
    for (const y of cands) {
      if (y !== x && index.before(x, y)) {
        x = y;
        changed = true;
      }
    }
  }
  return x;
}

/** Is there a delete of the key, not in `past`, not failed, begun by `endMs`, from another session? */
function deleteOutsidePast(index: CausalIndex, kw: KeyWrites, past: Past, endMs: number): boolean {
  const ops = index.ops;
  for (const lw of kw.lanes) {
    if (lw.lane === past.ownLane || lw.deleteSeqs.length === 0) continue;
    // The first delete of the lane beyond the past: the lane's later ones begin later still.
    const j = lastAtMost(lw.deleteSeqs, pastCount(past, lw.lane)) + 1;
    if (j < lw.deleteOps.length && (ops[lw.deleteOps[j] as number] as Operation).startMs <= endMs) return true;
  }
  for (const d of kw.others) {
    const dop = ops[d] as Operation;
    if (dop.kind !== 'delete' || dop.outcome === 'fail' || dop.startMs > endMs) continue;
    if (!(past.extra !== null && past.extra.has(d))) return true;
  }
  return false;
}

// ------------------------------------------------------------------ final states

interface FinalGroup {
  /** valueKey of the value, or null when absent. */
  state: string | null;
  value: unknown;
  replicas: ReplicaFinal[];
}

function checkFinalStates(
  index: CausalIndex,
  keys: Map<string, KeyWrites>,
  finalStates: readonly ReplicaState[],
  options: CheckOptions,
  lostWrites: LostWrite[],
  divergentKeys: Divergence[],
): void {
  const ops = index.ops;
  const replicas = finalStates.map((r) => ({ node: r.node, shard: r.shard, data: toMap(r.data) }));
  const shardMembers = new Map<string, number[]>();
  replicas.forEach((r, n) => {
    const members = shardMembers.get(r.shard);
    if (members === undefined) shardMembers.set(r.shard, [n]);
    else members.push(n);
  });
  const allKeys = new Set<string>(keys.keys());
  for (const r of replicas) for (const key of r.data.keys()) allKeys.add(key);

  const finalOf = (n: number, key: string): ReplicaFinal => {
    const r = replicas[n] as (typeof replicas)[number];
    const value = r.data.get(key);
    if (value === undefined) return { node: r.node, shard: r.shard, present: false };
    const w = index.writeOfValue(value);
    return { node: r.node, shard: r.shard, present: true, value, ...(w >= 0 ? { write: ref(ops, w) } : {}) };
  };

  const lost = new Map<number, ReplicaFinal[]>(); // write op index -> replicas where it is lost
  for (const key of [...allKeys].sort()) {
    // The replicas of the key's shard(s): from `shardOf`, else the shards holding it, else all.
    const holders = [...shardMembers.keys()].filter((s) => (shardMembers.get(s) as number[]).some((n) => (replicas[n] as (typeof replicas)[number]).data.get(key) !== undefined)).sort();
    let shards: string[];
    if (options.shardOf !== undefined) shards = [options.shardOf(key)];
    else shards = holders.length > 0 ? holders : [...shardMembers.keys()].sort();
    const groups: FinalGroup[] = [];
    for (const shard of shards) {
      const shardGroups = new Map<string | null, ReplicaFinal[]>();
      for (const n of shardMembers.get(shard) ?? []) {
        const f = finalOf(n, key);
        const state = f.present ? valueKey(f.value) : null;
        const list = shardGroups.get(state);
        if (list === undefined) shardGroups.set(state, [f]);
        else list.push(f);
      }
      if (shardGroups.size > 1) {
        const finals = [...shardGroups.values()].flat();
        divergentKeys.push({
          kind: 'replicas-disagree',
          key,
          shards: [shard],
          replicas: finals,
          explanation: `replicas of shard ${shard} disagree on ${JSON.stringify(key)}: ${finals.map(showFinal).join(', ')}`,
        });
      }
      for (const [state, list] of shardGroups) {
        const g = groups.find((x) => x.state === state);
        if (g === undefined) groups.push({ state, value: list[0]?.value, replicas: [...list] });
        else g.replicas.push(...list);
      }
    }
    // Every key lives in exactly one shard: flag copies held by several shards, or outside its own.
    if (holders.length > 1 || (holders.length === 1 && options.shardOf !== undefined && holders[0] !== shards[0])) {
      const finals = holders.flatMap((s) => (shardMembers.get(s) ?? []).map((n) => finalOf(n, key)));
      const where = options.shardOf !== undefined ? ` (its shard is ${shards[0]})` : '';
      divergentKeys.push({
        kind: 'shard-placement',
        key,
        shards: holders,
        replicas: finals,
        explanation: `${JSON.stringify(key)} is held by shard${holders.length > 1 ? 's' : ''} ${holders.join(', ')}${where}: ${finals.map(showFinal).join(', ')}`,
      });
    }

    const kw = keys.get(key);
    if (kw === undefined) continue;
    for (const w of kw.mustSurvive) {
      for (const g of groups) {
        if (!survives(index, kw, w, g)) {
          const list = lost.get(w);
          if (list === undefined) lost.set(w, [...g.replicas]);
          else list.push(...g.replicas);
        }
      }
    }
  }

  for (const [w, finals] of [...lost].sort((a, b) => a[0] - b[0])) {
    const wop = ops[w] as Operation;
    finals.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
    const why = wop.outcome === 'ok' ? 'acknowledged' : 'read by a client';
    lostWrites.push({
      write: ref(ops, w),
      replicas: finals,
      explanation: `${describeWrite(wop)} (${why}) is lost: ${finals.map(showFinal).join(', ')}, older than it or never written, and nothing newer explains it`,
    });
  }
}

/** Does write `w` survive on replicas whose final state is `g`? */
function survives(index: CausalIndex, kw: KeyWrites, w: number, g: FinalGroup): boolean {
  const ops = index.ops;
  const wop = ops[w] as Operation;
  if (g.state === null) {
    if (wop.kind === 'delete') return true;
    // Absent: some delete of the key (not failed) must be later than or concurrent with w.
    const past = index.pasts[w] as Past;
    for (const lw of kw.lanes) {
      const last = lw.deleteSeqs[lw.deleteSeqs.length - 1];
      if (last !== undefined && last > pastCount(past, lw.lane)) return true;
    }
    for (const d of kw.others) {
      const dop = ops[d] as Operation;
      if (dop.kind === 'delete' && dop.outcome !== 'fail' && !index.before(d, w)) return true;
    }
    return false;
  }
  const x = index.writeOfValue(g.value);
  if (x < 0 || (ops[x] as Operation).key !== wop.key) return false; // never written to this key
  if (x === w) return true;
  return !index.before(x, w); // later than or concurrent with w
}

function toMap(data: ReplicaState['data']): ReadonlyMap<string, unknown> {
  if (data instanceof Map) return data;
  return new Map(Object.entries(data));
}

// ------------------------------------------------------------------ naming

function ref(ops: readonly Operation[], i: number): OpRef {
  const op = ops[i] as Operation;
  const r: OpRef = { id: op.id, client: op.client, node: op.node, kind: op.kind, key: op.key, outcome: op.outcome };
  if (op.kind === 'put') r.value = op.value;
  if (op.kind === 'get' && op.outcome === 'ok') {
    const found = isValueRead(op);
    r.found = found;
    if (found) r.value = op.readValue;
  }
  return r;
}

function describeWrite(op: Operation): string {
  return op.kind === 'put'
    ? `put ${JSON.stringify(op.key)} = ${showValue(op.value)} (op ${op.id} by ${op.client})`
    : `delete of ${JSON.stringify(op.key)} (op ${op.id} by ${op.client})`;
}

function viaText(via: OpRef, rule: CausalRule | undefined, newer: number, ops: readonly Operation[]): string {
  if (rule === 'read-your-writes') return `as its own write [read-your-writes]`;
  if (rule === 'monotonic-reads') return `from its earlier read op ${via.id} [monotonic reads]`;
  return `through op ${via.id} (${via.kind} ${JSON.stringify(via.key)} returned ${showValue(via.value)}, which depended on op ${(ops[newer] as Operation).id}) [causal]`;
}

function showFinal(f: ReplicaFinal): string {
  if (!f.present) return `${f.node} absent`;
  return `${f.node} = ${showValue(f.value)}${f.write !== undefined ? ` (op ${f.write.id})` : ' (never written)'}`;
}

/** A readable multi-line report: counts, then up to `max` entries of each kind. */
export function formatReport(result: CheckResult, max = 20): string {
  const lines = [
    `${result.valid ? 'OK' : 'FAILED'}: ${result.ops} operations (${result.ok} ok, ${result.failed} failed, ${result.unknown} unknown); ` +
      `${result.causalViolations.length} causal violations, ${result.lostWrites.length} lost writes, ${result.divergentKeys.length} divergent keys`,
  ];
  const section = (title: string, entries: readonly { explanation: string }[]): void => {
    if (entries.length === 0) return;
    lines.push(`${title}:`);
    for (const e of entries.slice(0, max)) lines.push(`  - ${e.explanation}`);
    if (entries.length > max) lines.push(`  ... and ${entries.length - max} more`);
  };
  section('causal violations', result.causalViolations);
  section('lost writes', result.lostWrites);
  section('divergent keys', result.divergentKeys);
  return lines.join('\n');
}
