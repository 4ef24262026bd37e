// The causal past of every operation of a history, computed the way the store's client sessions
// carry causal metadata. Pure: no I/O, no clock; the same history always gives the same answer.
//
// Sessions. Each client is one session issuing one operation at a time. A session knows a set of
// writes (puts and deletes that wrote): its own acknowledged writes, every write it read, and,
// transitively, each of those writes' own past. The past of an operation is what its session knew
// when it began; the past of a write is what its writer knew when it began writing. A write whose
// outcome is `unknown` or `fail` enters nobody's past, not even its own writer's, unless someone
// reads its value. A 404 identifies no write and adds nothing.
//
// Representation. Pasts are downward closed (if write b is known, so is everything b depended on)
// and a session's acknowledged writes are totally ordered by the session, each one depending on
// all the earlier ones. So number each client's acknowledged writes 1, 2, 3... (its *lane*); then
// the acknowledged writes in a past are exactly, for each client, a prefix of its lane, and a past
// is a vector client -> length of that prefix:
//
//   w (acknowledged, client c, number n) is in past P   iff   P[c] >= n
//
// Writes that were not acknowledged (`unknown`, `fail`) are in no lane, because a session's later
// writes do not depend on them; each is its own one-write lane, kept in a small set `extra` of op
// indices, which is non-empty only when such a write was read. A `Past` is then:
//
//   base     Int32Array, one entry per client: its acknowledged writes known;
//   ownLane  the session's own client, whose entry is `ownCount` (base[ownLane] may lag);
//   ownCount the session's own acknowledged writes so far (it knows all of them);
//   extra    op indices of unacknowledged writes known, or null.
//
// Memory is O(operations x clients) at worst, far less in practice: `base` and `extra` are shared
// copy-on-write between consecutive snapshots of a session, so a run of writes (or of reads that
// teach nothing new) shares one array. Membership is O(1); merging a read is O(clients), and is
// skipped when the session already knew the write (its past is then known too).
//
// Order. A session's operations are ordered by start time (ties: position in the input), and must
// not overlap. Across sessions no timestamps are trusted: a read's write is resolved by its unique
// value, and the writer's session is replayed up to that write first (recursively). A read whose
// write causally depends on the read itself (a cycle) is flagged and adds nothing.

import { HistoryError, isValueRead, isWrite, valueKey, type OpId, type Operation } from './operation.ts';

export interface Past {
  readonly base: Int32Array;
  readonly ownLane: number;
  readonly ownCount: number;
  readonly extra: ReadonlySet<number> | null;
}

/** How many of `lane`'s acknowledged writes the past holds (they are that lane's first ones). */
export function pastCount(past: Past, lane: number): number {
  return lane === past.ownLane ? past.ownCount : (past.base[lane] as number);
}

/** A past in printable form: client -> acknowledged writes known, plus unacknowledged writes known. */
export interface PastSummary {
  clients: Record<string, number>;
  extra: OpId[];
}

export class CausalIndex {
  readonly ops: readonly Operation[];
  /** Client names, by lane number. */
  readonly clients: readonly string[];
  /** Op index -> its client's lane. */
  readonly laneOf: Int32Array;
  /** Lane -> its op indices in session order. */
  readonly order: readonly (readonly number[])[];
  /** Op index -> position in its session. */
  readonly posInLane: Int32Array;
  /** Op index -> -1 not a write; 0 a write not acknowledged; n > 0 the n-th acknowledged write of its client. */
  readonly writeSeq: Int32Array;
  /** Op index -> the past before it (its session's knowledge when it began). */
  readonly pasts: readonly Past[];
  /** Op index -> for a value read, the write that produced the value (any key), else -1. */
  readonly returned: Int32Array;
  /** Op index -> for a value read, the write merged into the session (same key, no cycle), else -1. */
  readonly merged: Int32Array;
  /** Op index -> 1 when the read returned a value whose write depends on the read itself. */
  readonly cyclic: Uint8Array;
  readonly idToIndex: ReadonlyMap<OpId, number>;
  readonly valueToWrite: ReadonlyMap<string, number>;

  constructor(fields: {
    ops: readonly Operation[];
    clients: readonly string[];
    laneOf: Int32Array;
    order: readonly (readonly number[])[];
    posInLane: Int32Array;
    writeSeq: Int32Array;
    pasts: readonly Past[];
    returned: Int32Array;
    merged: Int32Array;
    cyclic: Uint8Array;
    idToIndex: ReadonlyMap<OpId, number>;
    valueToWrite: ReadonlyMap<string, number>;
  }) {
    this.ops = fields.ops;
    this.clients = fields.clients;
    this.laneOf = fields.laneOf;
    this.order = fields.order;
    this.posInLane = fields.posInLane;
    this.writeSeq = fields.writeSeq;
    this.pasts = fields.pasts;
    this.returned = fields.returned;
    this.merged = fields.merged;
    this.cyclic = fields.cyclic;
    this.idToIndex = fields.idToIndex;
    this.valueToWrite = fields.valueToWrite;
  }

  /** True when write `w` (an op index) is in `past`. */
  has(past: Past, w: number): boolean {
    const seq = this.writeSeq[w] as number;
    if (seq > 0) return pastCount(past, this.laneOf[w] as number) >= seq;
    if (seq === 0) return past.extra !== null && past.extra.has(w);
    return false;
  }

  /** True when write `w` is in the past of write (or any operation) `x`: w is causally before x. */
  before(w: number, x: number): boolean {
    return this.has(this.pasts[x] as Past, w);
  }

  isWrite(i: number): boolean {
    return (this.writeSeq[i] as number) >= 0;
  }

  isAcknowledgedWrite(i: number): boolean {
    return (this.writeSeq[i] as number) > 0;
  }

  /** The op index of the put that wrote `value`, or -1. */
  writeOfValue(value: unknown): number {
    return this.valueToWrite.get(valueKey(value)) ?? -1;
  }

  /** Ids of the writes in the past of op `i`, in input order. O(operations). */
  pastWriteIds(i: number): OpId[] {
    const past = this.pasts[i] as Past;
    const ids: OpId[] = [];
    for (let w = 0; w < this.ops.length; w++) if (this.has(past, w)) ids.push((this.ops[w] as Operation).id);
    return ids;
  }

  summary(i: number): PastSummary {
    const past = this.pasts[i] as Past;
    const clients: Record<string, number> = {};
    this.clients.forEach((name, lane) => {
      const n = pastCount(past, lane);
      if (n > 0) clients[name] = n;
    });
    const extra = past.extra === null ? [] : [...past.extra].sort((a, b) => a - b).map((w) => (this.ops[w] as Operation).id);
    return { clients, extra };
  }
}

interface Session {
  base: Int32Array;
  baseShared: boolean;
  readonly ownLane: number;
  ownCount: number;
  extra: Set<number> | null;
  extraShared: boolean;
}

/** Replays every session of `ops` and records each operation's causal past. O(n log n + n x clients). */
export function buildCausalIndex(ops: readonly Operation[]): CausalIndex {
  const n = ops.length;
  const idToIndex = new Map<OpId, number>();
  const laneByName = new Map<string, number>();
  const clients: string[] = [];
  const laneOf = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const op = ops[i] as Operation;
    if (idToIndex.has(op.id)) throw new HistoryError(`operation id ${op.id} appears twice`);
    idToIndex.set(op.id, i);
    if (!(op.endMs >= op.startMs)) throw new HistoryError(`operation ${op.id}: endMs ${op.endMs} is before startMs ${op.startMs}`);
    let lane = laneByName.get(op.client);
    if (lane === undefined) {
      lane = clients.push(op.client) - 1;
      laneByName.set(op.client, lane);
    }
    laneOf[i] = lane;
  }
  const lanes = clients.length;

  const order: number[][] = clients.map(() => []);
  for (let i = 0; i < n; i++) (order[laneOf[i] as number] as number[]).push(i);
  const posInLane = new Int32Array(n);
  for (const seq of order) {
    seq.sort((a, b) => (ops[a] as Operation).startMs - (ops[b] as Operation).startMs || a - b);
    for (let p = 0; p < seq.length; p++) {
      const i = seq[p] as number;
      posInLane[i] = p;
      if (p > 0) {
        const prev = ops[seq[p - 1] as number] as Operation;
        const op = ops[i] as Operation;
        if (op.startMs < prev.endMs) {
          throw new HistoryError(
            `client ${op.client}: operations ${prev.id} and ${op.id} overlap in time; a session issues one operation at a time`,
          );
        }
      }
    }
  }

  const valueToWrite = new Map<string, number>();
  const writeSeq = new Int32Array(n).fill(-1);
  for (let i = 0; i < n; i++) {
    const op = ops[i] as Operation;
    if (!isWrite(op)) continue;
    writeSeq[i] = 0;
    if (op.kind !== 'put') continue;
    const key = valueKey(op.value);
    const other = valueToWrite.get(key);
    if (other !== undefined) {
      throw new HistoryError(`value ${key.slice(1)} is written by operations ${(ops[other] as Operation).id} and ${op.id}; written values must be unique`);
    }
    valueToWrite.set(key, i);
  }

  const pasts: Past[] = new Array<Past>(n);
  const returned = new Int32Array(n).fill(-1);
  const merged = new Int32Array(n).fill(-1);
  const cyclic = new Uint8Array(n);
  const sessions: Session[] = clients.map((_, lane) => ({
    base: new Int32Array(lanes),
    baseShared: false,
    ownLane: lane,
    ownCount: 0,
    extra: null,
    extraShared: false,
  }));
  const pos = new Int32Array(lanes);
  const active = new Uint8Array(lanes);

  const sessionHas = (s: Session, w: number): boolean => {
    const seq = writeSeq[w] as number;
    if (seq > 0) {
      const lane = laneOf[w] as number;
      return (lane === s.ownLane ? s.ownCount : (s.base[lane] as number)) >= seq;
    }
    return s.extra !== null && s.extra.has(w);
  };
  const raise = (s: Session, lane: number, count: number): void => {
    if (lane === s.ownLane || count <= (s.base[lane] as number)) return;
    if (s.baseShared) {
      s.base = s.base.slice();
      s.baseShared = false;
    }
    s.base[lane] = count;
  };
  const addExtra = (s: Session, w: number): void => {
    if (s.extra !== null && s.extra.has(w)) return;
    if (s.extra === null) s.extra = new Set();
    else if (s.extraShared) s.extra = new Set(s.extra);
    s.extraShared = false;
    s.extra.add(w);
  };
  /** The session learns write `w` and its past `p`. */
  const learn = (s: Session, p: Past, w: number): void => {
    if (sessionHas(s, w)) return; // its past is known too: pasts are downward closed
    const pb = p.base;
    for (let lane = 0; lane < lanes; lane++) {
      const v = pb[lane] as number;
      if (v > (s.base[lane] as number)) raise(s, lane, v);
    }
    raise(s, p.ownLane, p.ownCount);
    if (p.extra !== null && p.extra !== s.extra) for (const x of p.extra) addExtra(s, x);
    const seq = writeSeq[w] as number;
    if (seq > 0) raise(s, laneOf[w] as number, seq);
    else addExtra(s, w);
  };
  const snapshot = (s: Session): Past => {
    s.baseShared = true;
    s.extraShared = true;
    return { base: s.base, ownLane: s.ownLane, ownCount: s.ownCount, extra: s.extra };
  };

  const processOp = (s: Session, i: number): void => {
    pasts[i] = snapshot(s);
    const op = ops[i] as Operation;
    if ((writeSeq[i] as number) >= 0) {
      if (op.outcome === 'ok') writeSeq[i] = ++s.ownCount;
      return;
    }
    if (!isValueRead(op)) return;
    const w = valueToWrite.get(valueKey(op.readValue));
    if (w === undefined) return;
    returned[i] = w;
    const wLane = laneOf[w] as number;
    const wPos = posInLane[w] as number;
    if ((pos[wLane] as number) <= wPos) {
      if (active[wLane] === 1) {
        cyclic[i] = 1;
        return;
      }
      advance(wLane, wPos + 1);
    }
    if ((ops[w] as Operation).key !== op.key) return;
    merged[i] = w;
    learn(s, pasts[w] as Past, w);
  };
  // Recursion depth is at most the number of clients: a lane already being advanced is a cycle.
  const advance = (lane: number, target: number): void => {
    active[lane] = 1;
    const seq = order[lane] as number[];
    const s = sessions[lane] as Session;
    while ((pos[lane] as number) < target) {
      processOp(s, seq[pos[lane] as number] as number);
      pos[lane] = (pos[lane] as number) + 1;
    }
    active[lane] = 0;
  };
  for (let lane = 0; lane < lanes; lane++) advance(lane, (order[lane] as number[]).length);

  return new CausalIndex({
    ops,
    clients,
    laneOf,
    order,
    posInLane,
    writeSeq,
    pasts,
    returned,
    merged,
    cyclic,
    idToIndex,
    valueToWrite,
  });
}
