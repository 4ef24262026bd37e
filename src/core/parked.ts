import { asNodeAddress } from './address.ts';
import { assert } from './assert.ts';
import type { Clock, NodeAddress } from './types.ts';
import { counterOf } from './vector-clock.ts';

/**
 * Requests that wait for the state to change (a causal dependency, a copy in progress, a reshard),
 * parked under what they lack and released by the change that satisfies them. A request is parsed
 * once, when it arrives; a state change looks only at the requests it can release:
 *
 * - a request lacking writes of this shard is filed under ONE node it lacks, in order of the counter
 *   it needs. When the replica's applied clock changes, only the heads of the files whose node
 *   advanced are looked at (a request still lacking something is filed again under what it lacks
 *   next), so a state change costs O(nodes + released), not O(parked);
 * - every other reason (syncing, epoch, reshard, handover) depends on state that changes rarely and
 *   in ways a clock cannot index; those requests are looked at on every state change;
 * - when the replica, the epoch, readiness or a reshard changes, every request is looked at again.
 *
 * Each request has a deadline (its reason's budget from when it arrived); the runtime arms a timer
 * for it and asks `expire` when it fires.
 */
export interface Parked<R, W> {
  ticket: number;
  request: R;
  /** Why it waits (as the last check said). */
  wait: W;
  startedMs: number;
  deadlineMs: number;
}

interface Filed<R, W> {
  parked: Parked<R, W>;
  /** The node it is filed under, and the counter of it it needs (causal waits only). */
  node: NodeAddress | null;
  counter: number;
}

/** Waiting requests, bounded by the runtime's bound on requests in flight (each holds a connection). */
export class ParkingLot<R, W> {
  private readonly byTicket = new Map<number, Filed<R, W>>();
  /** Causal waits: node -> entries in order of the counter they need. */
  private readonly byNode = new Map<NodeAddress, Filed<R, W>[]>();
  /** Every other wait. */
  private readonly others = new Set<Filed<R, W>>();
  private nextTicket = 1;

  get size(): number {
    return this.byTicket.size;
  }

  /** Parks a request; `lacking` (a causal wait's missing writes) files it under one node it lacks. */
  park(request: R, wait: W, lacking: Clock | null, startedMs: number, deadlineMs: number): Parked<R, W> {
    const parked: Parked<R, W> = { ticket: this.nextTicket++, request, wait, startedMs, deadlineMs };
    this.file({ parked, node: null, counter: 0 }, lacking);
    return parked;
  }

  get(ticket: number): Parked<R, W> | undefined {
    return this.byTicket.get(ticket)?.parked;
  }

  /** Takes a request out (released, expired, or the node is closing). */
  remove(ticket: number): Parked<R, W> | undefined {
    const filed = this.byTicket.get(ticket);
    if (filed === undefined) return undefined;
    this.unfile(filed);
    return filed.parked;
  }

  /** Files a request again after a check that found it still waiting (perhaps for something else). */
  refile(ticket: number, wait: W, lacking: Clock | null, deadlineMs: number): void {
    const filed = this.byTicket.get(ticket);
    assert(filed !== undefined, 'refile: the request is parked');
    this.unfile(filed);
    filed.parked.wait = wait;
    filed.parked.deadlineMs = deadlineMs;
    this.file(filed, lacking);
  }

  /**
   * The tickets a state change may release: with `everything`, all of them; otherwise every
   * non-causal wait and the causal waits whose node's counter in `applied` reached what they need.
   */
  candidates(applied: Readonly<Clock> | null, everything: boolean): number[] {
    if (everything) return [...this.byTicket.keys()];
    const out: number[] = [];
    for (const filed of this.others) out.push(filed.parked.ticket);
    if (applied === null) return out;
    for (const [node, list] of this.byNode) {
      const have = counterOf(applied, node);
      for (const filed of list) {
        if (filed.counter > have) break;
        out.push(filed.parked.ticket);
      }
    }
    return out;
  }

  /** What the causal waits lack, one node each at its highest counter (to find a peer that has it). */
  lacking(): Clock {
    const out: Clock = {};
    for (const [node, list] of this.byNode) {
      const last = list.at(-1);
      if (last !== undefined) out[node] = last.counter;
    }
    return out;
  }

  /** Whether any request waits for writes of an earlier epoch (the runtime asks a peer for its base). */
  some(test: (wait: W) => boolean): boolean {
    for (const filed of this.others) if (test(filed.parked.wait)) return true;
    return false;
  }

  tickets(): number[] {
    return [...this.byTicket.keys()];
  }

  private file(filed: Filed<R, W>, lacking: Clock | null): void {
    this.byTicket.set(filed.parked.ticket, filed);
    const first = lacking === null ? undefined : Object.entries(lacking)[0];
    if (first === undefined) {
      filed.node = null;
      this.others.add(filed);
      return;
    }
    const node = asNodeAddress(first[0]);
    const counter = first[1];
    filed.node = node;
    filed.counter = counter;
    let list = this.byNode.get(node);
    if (list === undefined) this.byNode.set(node, (list = []));
    // In order of the counter needed: binary search for the place.
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((list[mid] as Filed<R, W>).counter <= counter) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, filed);
  }

  private unfile(filed: Filed<R, W>): void {
    this.byTicket.delete(filed.parked.ticket);
    if (filed.node === null) {
      this.others.delete(filed);
      return;
    }
    const list = this.byNode.get(filed.node);
    assert(list !== undefined, 'unfile: a causal wait is filed under its node');
    const at = list.indexOf(filed);
    assert(at >= 0, 'unfile: a causal wait is in its node file');
    list.splice(at, 1);
    if (list.length === 0) this.byNode.delete(filed.node);
    filed.node = null;
  }
}
