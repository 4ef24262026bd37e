// One recorded client operation, and the few questions every part of the checker asks about it
// (is it a write, what did it observe). Pure data: no I/O, no clock. `history.ts` re-exports these
// types next to the recorder; they live here so that the causal engine and the recorder do not
// import each other.

export type OpKind = 'put' | 'get' | 'delete';

/**
 * `ok`: the store answered (any status it answers deliberately: 200, 201, 404).
 * `fail`: the operation certainly had no effect (400, a 503 from the causal wait or a reshard...).
 * `unknown`: timeout, connection dropped, or an answer that does not tell (it may or may not have
 * taken effect). When in doubt, say `unknown`: a `fail` write whose value is read later is reported.
 */
export type Outcome = 'ok' | 'fail' | 'unknown';

export type OpId = number;

export interface Operation {
  /** Unique in the history. */
  id: OpId;
  /** The session: one client with its own causal metadata, issuing one operation at a time. */
  client: string;
  /** The node address the request was sent to. */
  node: string;
  kind: OpKind;
  key: string;
  /** put: the written value; unique across the whole history (e.g. "c3-17"). */
  value?: unknown;
  startMs: number;
  endMs: number;
  outcome: Outcome;
  /** HTTP status, when there was one. */
  status?: number;
  /** get answered 200: the value returned. */
  readValue?: unknown;
  /** get: true for 200, false for 404. Inferred from `status`/`readValue` when missing. */
  found?: boolean;
  /** delete: true for 200 (a tombstone was written), false for 404 (the key was absent). */
  deleted?: boolean;
  /** The causal metadata the store returned, kept for debugging; the checker never looks at it. */
  metadata?: unknown;
}

/** A history that cannot be checked (duplicate ids or values, overlapping operations of one session). */
export class HistoryError extends Error {
  override name = 'HistoryError';
}

/**
 * A write: a put or delete that may have taken effect. A delete answered 404 wrote nothing (it is
 * an observation of absence instead), and a put without a value wrote nothing (the store refuses it).
 */
export function isWrite(op: Operation): boolean {
  if (op.kind === 'put') return op.value !== undefined;
  if (op.kind === 'delete') return op.outcome !== 'ok' || deleteWrote(op);
  return false;
}

export function isDelete(op: Operation): boolean {
  return op.kind === 'delete';
}

function deleteWrote(op: Operation): boolean {
  if (op.deleted !== undefined) return op.deleted;
  return op.status === undefined || op.status === 200;
}

/** A get answered 200: it returned `readValue`. */
export function isValueRead(op: Operation): boolean {
  if (op.kind !== 'get' || op.outcome !== 'ok') return false;
  return getFound(op);
}

/** A get answered 404, or a delete answered 404: the node found the key absent. */
export function isAbsentRead(op: Operation): boolean {
  if (op.outcome !== 'ok') return false;
  if (op.kind === 'get') return !getFound(op);
  if (op.kind === 'delete') return !deleteWrote(op);
  return false;
}

function getFound(op: Operation): boolean {
  if (op.found !== undefined) return op.found;
  if (op.status !== undefined) return op.status !== 404;
  return op.readValue !== undefined;
}

/**
 * A string that identifies a value: written values are unique, so this maps a value read (or a
 * final replica state) back to the write that produced it. Strings map to themselves (prefixed),
 * anything else to its JSON text.
 */
export function valueKey(value: unknown): string {
  return typeof value === 'string' ? `s${value}` : `j${JSON.stringify(value)}`;
}

/** A short printable form of a value for one-line explanations. */
export function showValue(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
