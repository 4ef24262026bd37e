import { sortAddresses } from './address.ts';
import { assert } from './assert.ts';
import type { NodeAddress } from './types.ts';

export interface MembershipOptions {
  self: NodeAddress;
  /** Consecutive failed probes (or failed sends) that remove a node from the view. */
  failuresToRemove: number;
  /** A node removed as down must answer probes steadily this long before it is admitted again. */
  holdDownMs: number;
}

export type RemovalReason = 'down' | 'request';

/**
 * Nodes learned of (named by a peer's view or by a ping) and not yet answering, held on probation
 * at most: anyone can send a ping naming an address, so what that adds is bounded.
 */
export const LEARNED_MAX = 64;
/** A learned node that has not answered a single probe within this time is forgotten. */
export const LEARNED_FORGET_MS = 60_000;

export type ProbeOutcome = { kind: 'none' } | { kind: 'removed'; node: NodeAddress } | { kind: 'readmitted'; node: NodeAddress };

interface Probation {
  /** Since when the node has answered every probe; null while it does not answer. */
  answeringSinceMs: number | null;
  /** When it was learned of, while it never answered (absent for nodes once in the view). */
  learnedAtMs?: number;
}

/**
 * The view (nodes believed up) and the failure detector behind it. A node found down is removed and
 * kept on probation: it is still probed, and admitted again only after it has answered steadily for
 * the hold-down, so a flapping link does not thrash the view and a reconnected node is not silently
 * resynchronised at once. A node removed by a client's request is not probed; it comes back when it
 * announces itself (PUT /view), as a restarted node does.
 *
 * Invariants, checked for the node each change is about (O(1); `checkInvariants` checks them all):
 * a node is in at most one of the view, probation and removed-by-request; self is in the view
 * unless a client removed it (and is never on probation); failures are counted only for nodes in
 * the view, below `failuresToRemove`; at most LEARNED_MAX learned nodes wait on probation.
 */
export class Membership {
  private readonly options: MembershipOptions;
  private readonly members = new Set<NodeAddress>();
  private viewChanges = 0;
  private readonly failures = new Map<NodeAddress, number>();
  private readonly probation = new Map<NodeAddress, Probation>();
  /** Removed by a client's request: not to come back except by announcing itself. */
  private readonly removedByRequest = new Set<NodeAddress>();

  constructor(options: MembershipOptions, initialView: Iterable<NodeAddress>) {
    this.options = options;
    for (const node of initialView) this.members.add(node);
    this.members.add(options.self);
    this.checkInvariants();
  }

  view(): NodeAddress[] {
    return sortAddresses(this.members);
  }

  has(node: NodeAddress): boolean {
    return this.members.has(node);
  }

  get size(): number {
    return this.members.size;
  }

  /** Peers currently in the view. */
  peers(): NodeAddress[] {
    return this.view().filter((node) => node !== this.options.self);
  }

  /** Nodes to probe this round: peers in the view and nodes on probation. */
  probeTargets(): NodeAddress[] {
    return sortAddresses([...this.peers(), ...this.probation.keys()]);
  }

  /** Counts changes of the view (a node added, removed or admitted again). */
  get changes(): number {
    return this.viewChanges;
  }

  isOnProbation(node: NodeAddress): boolean {
    return this.probation.has(node);
  }

  /** PUT /view: 'added' or 'already'. A node announcing itself skips any probation. */
  add(node: NodeAddress): 'added' | 'already' {
    this.probation.delete(node);
    this.removedByRequest.delete(node);
    this.failures.delete(node);
    if (this.members.has(node)) return 'already';
    this.members.add(node);
    this.viewChanges++;
    this.checkNode(node);
    return 'added';
  }

  /**
   * DELETE /view, or a node found down: 'deleted', or 'absent' when it was not in the view. A node
   * found down goes on probation (probed, admitted again after the hold-down); one removed by request
   * does not. A report that this very node is down is ignored: it knows better; so is a report
   * about a node this one does not know or had removed by request (it is not to come back by probes).
   */
  remove(node: NodeAddress, reason: RemovalReason): 'deleted' | 'absent' {
    if (reason === 'down' && node === this.options.self) return 'absent';
    const present = this.members.delete(node);
    if (present) this.viewChanges++;
    this.failures.delete(node);
    if (reason === 'down' && (present || this.probation.has(node))) this.probation.set(node, { answeringSinceMs: null });
    else if (reason === 'request') {
      this.probation.delete(node);
      this.removedByRequest.add(node);
    }
    this.checkNode(node);
    return present ? 'deleted' : 'absent';
  }

  /**
   * A peer's view names `node`, which this node has never heard of (it joined while this node was
   * cut off or down, so its announcement never arrived). It goes on probation: probed, and admitted
   * after answering for the hold-down, like a node back from a failure. True when it was new here.
   */
  learn(node: NodeAddress, nowMs: number): boolean {
    if (node === this.options.self || this.members.has(node) || this.probation.has(node) || this.removedByRequest.has(node)) return false;
    let learned = 0;
    for (const entry of this.probation.values()) if (entry.learnedAtMs !== undefined) learned++;
    if (learned >= LEARNED_MAX) return false;
    this.probation.set(node, { answeringSinceMs: null, learnedAtMs: nowMs });
    this.checkNode(node);
    return true;
  }

  /** The result of one probe or one request to `node`. */
  observe(node: NodeAddress, answered: boolean, nowMs: number): ProbeOutcome {
    if (node === this.options.self) return { kind: 'none' };
    if (this.members.has(node)) {
      if (answered) {
        this.failures.delete(node);
        return { kind: 'none' };
      }
      const failures = (this.failures.get(node) ?? 0) + 1;
      if (failures < this.options.failuresToRemove) {
        this.failures.set(node, failures);
        return { kind: 'none' };
      }
      this.remove(node, 'down');
      assert(this.probation.has(node), 'a node found down goes on probation');
      return { kind: 'removed', node };
    }
    const probation = this.probation.get(node);
    if (!probation) return { kind: 'none' };
    if (!answered) {
      probation.answeringSinceMs = null;
      if (probation.learnedAtMs !== undefined && nowMs - probation.learnedAtMs >= LEARNED_FORGET_MS) this.probation.delete(node);
      return { kind: 'none' };
    }
    delete probation.learnedAtMs;
    probation.answeringSinceMs ??= nowMs;
    if (nowMs - probation.answeringSinceMs < this.options.holdDownMs) return { kind: 'none' };
    this.probation.delete(node);
    this.members.add(node);
    this.viewChanges++;
    this.checkNode(node);
    return { kind: 'readmitted', node };
  }

  /** Every invariant, for every node: O(view + probation + removed). */
  checkInvariants(): void {
    const self = this.options.self;
    assert(this.members.has(self) || this.removedByRequest.has(self), 'self is in the view unless a client removed it');
    let learned = 0;
    for (const node of new Set([...this.members, ...this.probation.keys(), ...this.removedByRequest, ...this.failures.keys()])) this.checkNode(node);
    for (const entry of this.probation.values()) if (entry.learnedAtMs !== undefined) learned++;
    assert(learned <= LEARNED_MAX, 'at most LEARNED_MAX learned nodes wait on probation');
  }

  /** The invariants about one node, after a change about it: O(1). */
  private checkNode(node: NodeAddress): void {
    const inView = this.members.has(node);
    const onProbation = this.probation.has(node);
    const removed = this.removedByRequest.has(node);
    assert(!(inView && onProbation) && !(inView && removed) && !(onProbation && removed), () => `${node} is in more than one of the view, probation and removed-by-request`);
    if (node === this.options.self) assert(!onProbation && (inView || removed), 'self is in the view unless a client removed it, and never on probation');
    const failures = this.failures.get(node);
    assert(failures === undefined || (inView && failures > 0 && failures < this.options.failuresToRemove), () => `failures are counted for ${node}, not in the view or at the bound`);
  }
}
