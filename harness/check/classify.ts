// How a client that records a history judges one answer of the store: did the operation happen
// (ok), certainly not (fail), or it cannot tell (unknown). Shared by the network-lab nemesis and the
// simulator, so both record the same history for the same answers.

import type { OpKind, Outcome } from './operation.ts';

export const CAUSAL_ERROR = 'Causal dependencies not satisfied; try again later';
export const RESHARD_ERROR = 'A reshard is in progress; try again later';
export const KEY_ABSENT = 'Key does not exist';

export interface Classified {
  outcome: Outcome;
  found?: boolean;
  deleted?: boolean;
  readValue?: unknown;
}

export function classifyReply(kind: OpKind, status: number, body: Record<string, unknown> | undefined): Classified {
  const error = body?.error;
  if (kind === 'get') {
    if (status === 200) return { outcome: 'ok', found: true, readValue: body?.value };
    if (status === 404 && error === KEY_ABSENT) return { outcome: 'ok', found: false };
    return { outcome: 'fail' };
  }
  if (kind === 'put' && (status === 200 || status === 201)) return { outcome: 'ok' };
  if (kind === 'delete') {
    if (status === 200) return { outcome: 'ok', deleted: true };
    if (status === 404 && error === KEY_ABSENT) return { outcome: 'ok', deleted: false };
  }
  // Refused before anything was applied: a causal wait that ran out, a reshard, a bad request.
  if (status === 503 && (error === CAUSAL_ERROR || error === RESHARD_ERROR)) return { outcome: 'fail' };
  if (status >= 400 && status < 500) return { outcome: 'fail' };
  // Another 5xx (a forward that timed out after sending, ...): the write may have happened.
  return { outcome: 'unknown' };
}
