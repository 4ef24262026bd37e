// Recording a history: clients call `begin` before sending a request and `end` when they know
// its outcome. The recorder takes times as arguments (it never reads a clock), so it runs the same
// against real nodes and inside a deterministic simulator.
//
//   const rec = new HistoryRecorder();
//   const value = rec.uniqueValue('c1');                       // "c1-1", "c1-2", ...
//   const id = rec.begin({ client: 'c1', node, kind: 'put', key: 'x', value, startMs: now() });
//   ... send the request ...
//   rec.end(id, { endMs: now(), outcome: 'ok', status: 201, metadata });
//   checkHistory(rec.history(), finalStates);                   // harness/check/checker.ts
//
// Each client name is one session: one operation at a time, carrying the causal metadata it last
// received. The causal past of every operation (see causal.ts) follows from what the sessions did:
// `causalPast(id)` and `knows(id, writeId)` answer from it.

import { buildCausalIndex, type CausalIndex, type PastSummary } from './causal.ts';
import { HistoryError, type OpId, type Operation } from './operation.ts';

export { HistoryError, isAbsentRead, isValueRead, isWrite, valueKey } from './operation.ts';
export type { OpId, OpKind, Operation, Outcome } from './operation.ts';

/** What a client knows when it sends a request (`value`: a put's value, unique in the history). */
export type BeginInput = Pick<Operation, 'client' | 'node' | 'kind' | 'key' | 'value' | 'startMs'>;

/** What it knows when the outcome is in (`found`/`deleted` are inferred from `status` when left out). */
export type EndInput = Pick<Operation, 'endMs' | 'outcome' | 'status' | 'readValue' | 'found' | 'deleted' | 'metadata'>;

export class HistoryRecorder {
  #ops: Operation[] = [];
  #indexById = new Map<OpId, number>();
  #open = new Map<string, OpId>(); // client -> its operation in flight
  #pending = new Set<OpId>();
  #values = new Set<unknown>();
  #valueCounters = new Map<string, number>();
  #nextId = 1;
  #lastMs = Number.NEGATIVE_INFINITY;
  #index: CausalIndex | null = null;

  /** A fresh value for `client` to write: "<client>-1", "<client>-2", ... */
  uniqueValue(client: string): string {
    for (;;) {
      const n = (this.#valueCounters.get(client) ?? 0) + 1;
      this.#valueCounters.set(client, n);
      const value = `${client}-${n}`;
      if (!this.#values.has(value)) return value;
    }
  }

  /** Starts an operation; returns its id. Call it before the request leaves the client. */
  begin(input: BeginInput): OpId {
    const open = this.#open.get(input.client);
    if (open !== undefined) {
      throw new HistoryError(`client ${input.client} begins an operation while operation ${open} is in flight; use one client name per concurrent session`);
    }
    if (input.kind === 'put') {
      if (input.value === undefined) throw new HistoryError('a put needs a value');
      if (typeof input.value === 'string' || typeof input.value === 'number') {
        if (this.#values.has(input.value)) throw new HistoryError(`value ${JSON.stringify(input.value)} was written before; written values must be unique`);
        this.#values.add(input.value);
      }
    }
    const id = this.#nextId++;
    const op: Operation = {
      id,
      client: input.client,
      node: input.node,
      kind: input.kind,
      key: input.key,
      startMs: input.startMs,
      endMs: input.startMs,
      outcome: 'unknown',
    };
    if (input.kind === 'put') op.value = input.value;
    this.#indexById.set(id, this.#ops.push(op) - 1);
    this.#open.set(input.client, id);
    this.#pending.add(id);
    this.#seen(input.startMs);
    this.#index = null;
    return id;
  }

  /** Completes operation `id` with what the client learned. */
  end(id: OpId, result: EndInput): Operation {
    const index = this.#indexById.get(id);
    if (index === undefined) throw new HistoryError(`no operation ${id}`);
    if (!this.#pending.has(id)) throw new HistoryError(`operation ${id} has ended already`);
    const op = this.#ops[index] as Operation;
    if (result.endMs < op.startMs) throw new HistoryError(`operation ${id} ends (${result.endMs}) before it starts (${op.startMs})`);
    op.endMs = result.endMs;
    op.outcome = result.outcome;
    if (result.status !== undefined) op.status = result.status;
    if (result.metadata !== undefined) op.metadata = result.metadata;
    if (op.kind === 'get' && result.outcome === 'ok') {
      const found = result.found ?? (result.status !== undefined ? result.status !== 404 : result.readValue !== undefined);
      op.found = found;
      if (found) op.readValue = result.readValue;
    }
    if (op.kind === 'delete' && result.outcome === 'ok') {
      op.deleted = result.deleted ?? (result.status === undefined || result.status === 200);
    }
    this.#pending.delete(id);
    this.#open.delete(op.client);
    this.#seen(result.endMs);
    this.#index = null;
    return op;
  }

  /** Operations begun and not ended yet. */
  get inFlight(): OpId[] {
    return [...this.#pending];
  }

  /**
   * Every operation in the order begun. Operations still in flight are reported with outcome
   * `unknown`, ending at the latest time the recorder has seen (they may or may not take effect).
   */
  history(): Operation[] {
    return this.#ops.map((op) => (this.#pending.has(op.id) ? { ...op, outcome: 'unknown', endMs: Math.max(op.startMs, this.#lastMs) } : { ...op }));
  }

  /** The causal past of operation `id`: per client, how many of its acknowledged writes; plus unacknowledged writes read. */
  causalPast(id: OpId): PastSummary {
    const index = this.#causal();
    return index.summary(this.#at(index, id));
  }

  /** Ids of every write in the causal past of operation `id`. O(operations). */
  causalPastIds(id: OpId): OpId[] {
    const index = this.#causal();
    return index.pastWriteIds(this.#at(index, id));
  }

  /** True when write `writeId` is in the causal past of operation `id` (what its session knew when it began). */
  knows(id: OpId, writeId: OpId): boolean {
    const index = this.#causal();
    return index.before(this.#at(index, writeId), this.#at(index, id));
  }

  /** The causal index of the history so far (rebuilt after each begin/end; O(n) to build). */
  #causal(): CausalIndex {
    this.#index ??= buildCausalIndex(this.history());
    return this.#index;
  }

  #at(index: CausalIndex, id: OpId): number {
    const i = index.idToIndex.get(id);
    if (i === undefined) throw new HistoryError(`no operation ${id}`);
    return i;
  }

  #seen(ms: number): void {
    if (ms > this.#lastMs) this.#lastMs = ms;
  }
}
