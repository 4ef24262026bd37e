import { MESSAGES } from './api-messages.ts';
import type { KvMethod, Reply } from './contract.ts';
import type { ShardId } from './types.ts';

/** What one attempt to relay a request to a member of the key's shard showed. */
export type ForwardAttempt = { kind: 'answered'; reply: Reply } | { kind: 'unreachable'; maybeDelivered: boolean };

/**
 * After one attempt: give the client this answer, try the next member, or stop with 503.
 * - A member that answers it lacks the client's causal dependencies applied nothing: another member
 *   may have them, so any request is tried there (its answer is kept in case none does).
 * - A read fails over on any transport error.
 * - A write fails over only when it provably never left (no connection): after a timeout the first
 *   member may still apply it, and applying it at two members would make it two writes, the late
 *   one overwriting whatever the client wrote since. Such a write gets 503: its outcome is unknown
 *   (and it carries a deadline past which the member refuses it, see decideKv).
 */
export function afterForwardAttempt(
  method: KvMethod,
  shard: ShardId,
  attempt: ForwardAttempt,
): { kind: 'reply'; reply: Reply } | { kind: 'next'; lacking: Reply | null } {
  if (attempt.kind === 'answered') {
    if (attempt.reply.status === 503 && isCausalRefusal(attempt.reply.body)) return { kind: 'next', lacking: attempt.reply };
    return { kind: 'reply', reply: attempt.reply };
  }
  if (method !== 'GET' && attempt.maybeDelivered) {
    return { kind: 'reply', reply: { status: 503, body: { error: `A member of shard ${shard} did not answer in time; the write may or may not have been applied` } } };
  }
  return { kind: 'next', lacking: null };
}

/** When every member was tried: the last member's causal 503, or that none could be reached. */
export function noMemberServed(shard: ShardId, lacking: Reply | null): Reply {
  return lacking ?? { status: 503, body: { error: `No member of shard ${shard} is reachable` } };
}

/** The 503 of a replica lacking a request's causal dependencies (it applied nothing). */
export function isCausalRefusal(body: unknown): boolean {
  return typeof body === 'object' && body !== null && (body as Record<string, unknown>).error === MESSAGES.causalUnavailable;
}
