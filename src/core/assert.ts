// Assertions that stay on in production (TigerBeetle's habit): an invariant the code relies on is
// stated where it can break, and a broken one stops the operation at once, loudly, instead of
// letting a wrong state spread to disk and to peers. They are for our own invariants, never for
// input: what a client or a peer sends is validated at the edge and refused with a reason.
//
// The message is a string constant or a function that builds it, called only when the assertion
// fails. On a path taken per version or per message, prefer a constant: a closure that captures
// locals is allocated on each call until the optimiser removes it. Pure: no node:assert (src/core
// imports only its own files).

/** A broken invariant: a bug (or corrupted state), never bad input. */
export class InvariantError extends Error {
  constructor(message: string) {
    super(`invariant broken: ${message}`);
    this.name = 'InvariantError';
  }
}

export type AssertMessage = string | (() => string);

/** Throws an InvariantError when `condition` is false; `message` says what should have held. */
export function assert(condition: unknown, message: AssertMessage): asserts condition {
  if (!condition) throw new InvariantError(typeof message === 'string' ? message : message());
}

/** For a switch that covers every case of a union: TypeScript checks it statically, this at run time. */
export function assertNever(value: never, what: string): never {
  throw new InvariantError(`unexpected ${what}: ${String(value)}`);
}

/** Code that cannot be reached while the invariants hold. */
export function unreachable(message: AssertMessage): never {
  throw new InvariantError(typeof message === 'string' ? message : message());
}
