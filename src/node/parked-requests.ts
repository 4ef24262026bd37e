// Client requests parked in the core until a state change lets them go on (see src/core/waits.ts).
// The runtime's part: one promise and one deadline timer per parked request; after a step that
// changed state it settles the requests the core let go on, and pulls from a peer what the others
// still lack.

import type { KvWait, ParkedDecision, Released, Reply, WakeResult } from '../core/node-core.ts';
import type { WaitReason } from '../core/contract.ts';
import type { NodeContext } from './context.ts';
import type { TimerHandle } from './env.ts';

/** What a parked request comes back with: what to do now, or its 503 (its wait ran out, or the node closes). */
export type Unparked = Released['decision'] | { kind: 'expired'; reply: Reply; wait: KvWait | null };

interface Waiting {
  resolve: (outcome: Unparked) => void;
  timer: TimerHandle;
}

export interface ParkedRequestsDeps {
  /** Ask a peer that has some of `lacking` for a pull sync. */
  syncFromAhead(lacking: Record<string, number>): void;
  /** Ask a shard peer whose base may be ahead (a request waits for old-epoch writes). */
  syncBase(): void;
}

export class ParkedRequests {
  private readonly ctx: NodeContext;
  private readonly deps: ParkedRequestsDeps;
  private readonly waiting = new Map<number, Waiting>();
  /** Requests parked since start, by what they waited for, and how their waits ended (GET /metrics). */
  readonly counts = { parked: new Map<WaitReason, number>(), released: 0, expired: 0, closed: 0 };

  constructor(ctx: NodeContext, deps: ParkedRequestsDeps) {
    this.ctx = ctx;
    this.deps = deps;
  }

  /** Requests parked now (in /status). */
  get size(): number {
    return this.waiting.size;
  }

  /**
   * Waits for a request the core parked: it asks a peer for what the request lacks now, and then
   * for what it lacks after each state change, until the core releases it or its deadline passes.
   */
  park(parked: ParkedDecision): Promise<Unparked> {
    this.counts.parked.set(parked.wait.reason, (this.counts.parked.get(parked.wait.reason) ?? 0) + 1);
    this.askFor(parked.wait);
    return new Promise<Unparked>((resolve) => {
      this.waiting.set(parked.ticket, { resolve, timer: this.arm(parked.ticket, parked.deadlineMs) });
    });
  }

  /** After a step that changed state (core-loop.ts): release what the core let go on; ask for what the rest still lack. */
  release({ released, lacking, handover }: WakeResult): void {
    for (const { ticket, decision } of released) this.settle(ticket, decision, 'released');
    if (Object.keys(lacking).length > 0) this.deps.syncFromAhead(lacking);
    if (handover) this.deps.syncBase();
  }

  /** The node is closing: every parked request gets its 503 now. */
  closeAll(): void {
    for (const { ticket, reply } of this.ctx.step({ kind: 'close' })) this.settle(ticket, { kind: 'expired', reply, wait: null }, 'closed');
  }

  private arm(ticket: number, deadlineMs: number): TimerHandle {
    const timers = this.ctx.timers;
    return timers.setTimeout(() => this.expire(ticket), Math.max(0, deadlineMs - timers.now()));
  }

  private expire(ticket: number): void {
    const outcome = this.ctx.step({ kind: 'expire', ticket });
    const entry = this.waiting.get(ticket);
    if (outcome === null || entry === undefined) return;
    // Its reason changed to one with a longer budget: wait on.
    if (outcome.kind === 'later') entry.timer = this.arm(ticket, outcome.deadlineMs);
    else this.settle(ticket, outcome, 'expired');
  }

  private settle(ticket: number, outcome: Unparked, how: 'released' | 'expired' | 'closed'): void {
    const entry = this.waiting.get(ticket);
    if (entry === undefined) return;
    this.waiting.delete(ticket);
    this.counts[how]++;
    this.ctx.timers.clearTimeout(entry.timer);
    entry.resolve(outcome);
  }

  private askFor(wait: KvWait): void {
    if (wait.reason === 'causal') this.deps.syncFromAhead(wait.detail ?? {});
    if (wait.reason === 'handover') this.deps.syncBase();
  }
}
