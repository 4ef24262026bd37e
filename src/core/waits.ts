import type { KvDecision, KvRequest, KvWait, ParkedDecision, Released, Reply, WaitReason } from './contract.ts';
import { MESSAGES } from './api-messages.ts';
import { ParkingLot } from './parked.ts';
import type { Clock } from './types.ts';

export interface WakeResult {
  released: Released[];
  /** What the causal waits still lack: the runtime pulls it from a peer that has it. */
  lacking: Clock;
  /** Some request waits for writes of an earlier epoch: the runtime asks a peer for its base. */
  handover: boolean;
}

export type ExpireResult = { kind: 'expired'; reply: Reply; wait: KvWait } | { kind: 'later'; deadlineMs: number } | null;

/**
 * Key-value requests that wait for the node's state to change, parked (see ParkingLot) and decided
 * again only when a change may let them go on. Each waits at most its reason's budget, counted from
 * its arrival (a request whose reason changes gets the new reason's budget).
 */
export class KvWaits {
  private readonly lot = new ParkingLot<KvRequest, KvWait>();
  private generation = '';
  private applied: Readonly<Clock> | null = null;

  private readonly decide: (request: KvRequest, nowMs: number) => KvDecision;
  private readonly budgets: { causalWaitMs: number; reshardWaitMs: number };

  constructor(decide: (request: KvRequest, nowMs: number) => KvDecision, budgets: { causalWaitMs: number; reshardWaitMs: number }) {
    this.decide = decide;
    this.budgets = budgets;
  }

  get size(): number {
    return this.lot.size;
  }

  /** `generation` and `applied` as for `wake`: the state the request is decided in. */
  submit(request: KvRequest, nowMs: number, generation: string, applied: Readonly<Clock> | null): Exclude<KvDecision, KvWait> | ParkedDecision {
    const decision = this.decide(request, nowMs);
    if (decision.kind !== 'wait') return decision;
    // Nothing else parked: the state the lot was last decided in is this one.
    if (this.lot.size === 0) {
      this.generation = generation;
      this.applied = applied;
    }
    const parked = this.lot.park(request, decision, waitLacking(decision), nowMs, nowMs + this.budget(decision.reason));
    return { kind: 'parked', ticket: parked.ticket, deadlineMs: parked.deadlineMs, wait: decision };
  }

  /**
   * After a state change. `generation` names the replica, readiness, map and reshard: when it
   * differs from the last call, every parked request is decided again; otherwise only the
   * non-causal waits and the causal waits whose node advanced in `applied` (a new object whenever
   * the replica applies a write). A released write is applied here, in this call.
   */
  wake(nowMs: number, generation: string, applied: Readonly<Clock> | null): WakeResult {
    const everything = generation !== this.generation;
    this.generation = generation;
    const advanced = applied !== this.applied;
    this.applied = applied;
    const released: Released[] = [];
    if (this.lot.size > 0) {
      for (const ticket of this.lot.candidates(advanced ? applied : null, everything)) {
        const parked = this.lot.get(ticket);
        if (parked === undefined) continue;
        const decision = this.decide(parked.request, nowMs);
        if (decision.kind === 'wait') {
          this.lot.refile(ticket, decision, waitLacking(decision), parked.startedMs + this.budget(decision.reason));
          continue;
        }
        this.lot.remove(ticket);
        released.push({ ticket, decision });
      }
    }
    return { released, lacking: this.lot.lacking(), handover: this.lot.some((wait) => wait.reason === 'handover') };
  }

  /**
   * A parked request's timer fired: its 503 when its deadline has passed (null when it was already
   * released), or its new deadline (its reason changed to one with a longer budget).
   */
  expire(ticket: number, nowMs: number): ExpireResult {
    const parked = this.lot.get(ticket);
    if (parked === undefined) return null;
    if (nowMs < parked.deadlineMs) return { kind: 'later', deadlineMs: parked.deadlineMs };
    this.lot.remove(ticket);
    return { kind: 'expired', reply: unavailableReply(parked.wait.reason), wait: parked.wait };
  }

  expireAll(): { ticket: number; reply: Reply }[] {
    const out: { ticket: number; reply: Reply }[] = [];
    for (const ticket of this.lot.tickets()) {
      const parked = this.lot.remove(ticket);
      if (parked !== undefined) out.push({ ticket, reply: unavailableReply(parked.wait.reason) });
    }
    return out;
  }

  private budget(reason: WaitReason): number {
    return reason === 'reshard' ? this.budgets.reshardWaitMs : this.budgets.causalWaitMs;
  }
}

/** The 503 of a request whose wait ran out. */
function unavailableReply(reason: WaitReason): Reply {
  if (reason === 'reshard') return { status: 503, body: { error: 'A reshard is in progress; try again later' } };
  return { status: 503, body: { error: MESSAGES.causalUnavailable } };
}

/** What a causal wait lacks (it is filed under it); null for other waits. */
function waitLacking(wait: KvWait): Clock | null {
  return wait.reason === 'causal' && wait.detail !== undefined && Object.keys(wait.detail).length > 0 ? wait.detail : null;
}
