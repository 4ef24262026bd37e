import { assert } from './assert.ts';
import type { NodeAddress } from './types.ts';

/**
 * The health of this node's link to each peer, apart from the view. A link that failed (a probe
 * not answered, or answered late; a request that got no answer) is *held down*: no data crosses it
 * in either direction (no pushes or hints, no pulls, no anti-entropy) until it has answered every
 * probe for the hold-down. Probes still cross it, and so do client requests forwarded over it.
 *
 * Why: a replica cut off for a moment (too short for anyone to remove it from a view) would
 * otherwise be resynchronised silently the instant it reconnects; the contract wants it to answer
 * 503 to clients that depend on what it missed until it has caught up, and that takes a while.
 *
 * Both ends hold the link: each notices failures of its own requests, and a node asked for data
 * over a link it holds refuses with the time left; the asker then sends it no data for that long
 * (a *mirrored* hold). A mirrored hold is not a failure seen by this end: it does not make this
 * end refuse the peer's data, and it ends by time alone, so two ends never refuse each other in
 * turn for ever.
 *
 * A restart is not a reconnection: each process names itself with an incarnation, and when a
 * peer announces itself (PUT /view) with a new one, its link is released at once so that it can
 * copy its shard. Failures of requests sent to its previous incarnation do not count against it.
 *
 * Invariants, checked on the link each change is about (O(1); `checkInvariants` checks them all):
 * a link not held is not counting answers; a held link that answers has a release time at least
 * the hold-down after it began to answer; a mirrored hold lasts at most the hold-down from the
 * refusal that set it; at most LINKS_MAX links are tracked. (None depends on time going forward:
 * the runtime's clock is the wall clock, which may step back.)
 */
export interface LinksOptions {
  /** How long a link must answer every probe, after failing, before data crosses it again. */
  holdDownMs: number;
  /** A probe unanswered this long (or answered later) is a failure of the link. */
  probeLateMs: number;
}

/** Default of `probeLateMs`: on a LAN a probe takes a millisecond; half a second means the link failed. */
export const PROBE_LATE_MS = 500;

/**
 * A process that just started (or restarted) is busy: its answers come late for a while. A link is
 * not held for a late probe within this time of being first heard from or announced (a probe with
 * no answer at all still counts).
 */
export const LATE_GRACE_MS = 5_000;

/** Peers whose links are tracked at most; beyond, new peers' links are not tracked (never held). */
export const LINKS_MAX = 1024;

export type LinkChange = 'held' | 'released' | null;

interface Link {
  /** The peer's process as it last named itself; null until it does (tracked from its first answer). */
  incarnation: string | null;
  /** When the probe now in flight was sent (null: none is). */
  probeSentMs: number | null;
  /** The incarnation the peer last announced itself with (PUT /view): a new one is a restart. */
  announcedAs: string | null;
  /** Held down after a failure this end saw. */
  held: boolean;
  /** The incarnation the hold is about (its process failed; a later process is not held against). */
  heldFor: string | null;
  /** The peer refused data, holding the link itself: send it none before this time. */
  mirroredUntilMs: number;
  /** When the link was first heard from, or last announced: lateness counts only LATE_GRACE_MS after. */
  sinceMs: number;
  /** When the hold began (the first failure). */
  heldSinceMs: number;
  /** While held: since when the link has answered every probe (null: it does not answer yet). */
  answeringSinceMs: number | null;
  /** While held: not released before this time. */
  heldUntilMs: number;
}

export interface HeldLink {
  peer: NodeAddress;
  /** How long the link has been held. */
  heldMs: number;
  /** Time left before it is released if it keeps answering; null while it does not answer. */
  remainingMs: number | null;
  /** Held by the peer, not this end: this end sends it no data until then. */
  mirrored?: true;
}

export class Links {
  private readonly options: LinksOptions;
  private readonly links = new Map<NodeAddress, Link>();

  constructor(options: LinksOptions) {
    if (!(options.probeLateMs > 0) || !(options.holdDownMs >= 0)) throw new RangeError('link options must be positive');
    this.options = options;
  }

  /** The incarnation last heard from `peer` (null: none yet). Snapshot it before a request, for `failed`. */
  incarnationOf(peer: NodeAddress): string | null {
    return this.links.get(peer)?.incarnation ?? null;
  }

  /**
   * Whether this node may send data over the link now: false while it is held or mirrored. A link
   * never heard from is not tracked and is up (a node that has not started yet is not a failed
   * link). A probe in flight for longer than `probeLateMs` holds the link (`checkLate` makes it so).
   */
  isUp(peer: NodeAddress, nowMs: number): boolean {
    const link = this.links.get(peer);
    if (link === undefined) return true;
    return !link.held && nowMs >= link.mirroredUntilMs && !this.isLate(link, nowMs);
  }

  /**
   * Whether this node takes data from the peer now: false while it holds the link itself, unless
   * the request comes from another process than the one the hold is about (`incarnation`, when
   * the request names one): a restarted node copies its shard at once, even before its
   * announcement has arrived here.
   */
  accepts(peer: NodeAddress, nowMs: number, incarnation: string | null = null): boolean {
    const link = this.links.get(peer);
    if (link === undefined) return true;
    if (link.held && incarnation !== null && link.heldFor !== null && incarnation !== link.heldFor) return true;
    return !link.held && !this.isLate(link, nowMs);
  }

  /** Whether the link is held by this end (without looking at probes in flight or mirrored holds). */
  isHeld(peer: NodeAddress): boolean {
    return this.links.get(peer)?.held === true;
  }

  /** Holds the link when its probe in flight is late: the runtime calls this every tick and before it moves data. */
  checkLate(peer: NodeAddress, nowMs: number): LinkChange {
    const link = this.links.get(peer);
    if (link === undefined || link.held || !this.isLate(link, nowMs)) return null;
    return this.hold(link, nowMs);
  }

  /**
   * The peer answered a request: the link is up at least once, so from now on a failure of it
   * counts (its incarnation is learned from its probes' answers).
   */
  answered(peer: NodeAddress, nowMs: number): void {
    if (this.links.has(peer) || this.links.size >= LINKS_MAX) return;
    this.links.set(peer, newLink(null, nowMs));
    assert(this.links.size <= LINKS_MAX, 'at most LINKS_MAX links are tracked');
  }

  /**
   * This node's own event loop stalled: the probes in flight say nothing about the links (their
   * answers may be waiting unread), so none of them is judged late.
   */
  forgiveProbes(): void {
    for (const link of this.links.values()) link.probeSentMs = null;
  }

  /**
   * The peer named its incarnation (in a probe's answer or on a request it sent). The first one
   * heard starts tracking the link; a different one later means the process restarted, but
   * without an announcement that does not release a hold (this node may be the one reconnecting).
   */
  heard(peer: NodeAddress, incarnation: string, nowMs: number): void {
    const link = this.links.get(peer);
    if (link !== undefined) {
      if (link.incarnation === null) link.incarnation = incarnation;
      else if (link.incarnation !== incarnation) {
        link.incarnation = incarnation;
        link.probeSentMs = null;
      }
      return;
    }
    if (this.links.size >= LINKS_MAX) return;
    this.links.set(peer, newLink(incarnation, nowMs));
    assert(this.links.size <= LINKS_MAX, 'at most LINKS_MAX links are tracked');
  }

  /**
   * The peer announced itself (PUT /view from its own process). With a new incarnation it is a
   * restart: the link is released at once, and what was in flight to the old process no longer
   * counts. The same incarnation again changes nothing.
   */
  announced(peer: NodeAddress, incarnation: string, nowMs: number): LinkChange {
    const link = this.links.get(peer);
    if (link === undefined) {
      this.heard(peer, incarnation, nowMs);
      const added = this.links.get(peer);
      if (added !== undefined) added.announcedAs = incarnation;
      return null;
    }
    // Compared with the last announcement and with the process the hold is about, not with the
    // last incarnation heard: a probe may have reached the new process before its announcement.
    if (link.announcedAs === incarnation || (link.held && link.heldFor === incarnation)) {
      link.announcedAs = incarnation;
      return null;
    }
    link.announcedAs = incarnation;
    link.incarnation = incarnation;
    link.probeSentMs = null;
    link.sinceMs = nowMs;
    link.mirroredUntilMs = 0;
    if (!link.held) return null;
    link.held = false;
    link.answeringSinceMs = null;
    this.checkLink(link);
    return 'released';
  }

  /** A probe leaves now (one at a time per peer). */
  probeSent(peer: NodeAddress, nowMs: number): void {
    const link = this.links.get(peer);
    if (link !== undefined && link.probeSentMs === null) link.probeSentMs = nowMs;
  }

  /**
   * The probe sent to incarnation `sentTo` was answered by `incarnation`. A late answer is a failure
   * followed by an answer; a held link is released once it has answered for the hold-down.
   */
  probeAnswered(peer: NodeAddress, sentTo: string | null, incarnation: string, nowMs: number): LinkChange {
    const before = this.links.get(peer);
    const sentMs = before?.probeSentMs ?? null;
    if (before !== undefined) before.probeSentMs = null;
    this.heard(peer, incarnation, nowMs);
    const link = this.links.get(peer);
    if (link === undefined) return null;
    let change: LinkChange = null;
    if (sentMs !== null && sentTo === link.incarnation && nowMs - sentMs > this.options.probeLateMs && !link.held && sentMs - link.sinceMs >= LATE_GRACE_MS) {
      change = this.hold(link, sentMs + this.options.probeLateMs);
    }
    if (!link.held) return change;
    if (link.answeringSinceMs === null) {
      link.answeringSinceMs = nowMs;
      link.heldUntilMs = Math.max(link.heldUntilMs, nowMs + this.options.holdDownMs);
    }
    this.checkLink(link);
    if (nowMs < link.heldUntilMs) return change;
    link.held = false;
    link.answeringSinceMs = null;
    return change === 'held' ? null : 'released';
  }

  /**
   * A request to `peer` (a probe or any other) got no answer. It counts only against the
   * incarnation it was sent to: a failure of a request to a process that has since restarted
   * says nothing about the new one.
   */
  failed(peer: NodeAddress, sentTo: string | null, nowMs: number): LinkChange {
    const link = this.links.get(peer);
    if (link === undefined || sentTo !== link.incarnation) return null;
    link.probeSentMs = null;
    if (link.held) {
      link.answeringSinceMs = null;
      return null;
    }
    return this.hold(link, nowMs);
  }

  /**
   * `peer` refused data because it holds the link, for `remainingMs` more (null: it does not know
   * yet, its probes still fail): send it none for that long. Not a failure of the link at this end.
   */
  refusedBy(peer: NodeAddress, remainingMs: number | null, nowMs: number): void {
    const link = this.links.get(peer);
    if (link === undefined) return;
    // What a peer says is bounded by what this node would hold the link for itself.
    const forMs = Math.min(Math.max(0, remainingMs ?? this.options.holdDownMs), this.options.holdDownMs);
    // Capped (and a number: NaN would hold the link for ever, as no time is at or after it).
    assert(forMs >= 0 && forMs <= this.options.holdDownMs, () => `a mirrored hold of ${remainingMs} ms is not capped by the hold-down`);
    link.mirroredUntilMs = Math.max(link.mirroredUntilMs, nowMs + forMs);
    assert(Number.isFinite(link.mirroredUntilMs), 'a mirrored hold ends');
  }

  /**
   * How long this end still holds the link (null: it holds it and it does not answer yet); 0 when
   * it does not hold it. What a refusal tells the peer.
   */
  remainingMs(peer: NodeAddress, nowMs: number): number | null {
    const link = this.links.get(peer);
    if (link === undefined || !link.held) return 0;
    if (link.answeringSinceMs === null) return null;
    return Math.max(0, link.heldUntilMs - nowMs);
  }

  /** The peer left for good (removed by request): forget its link. */
  forget(peer: NodeAddress): void {
    this.links.delete(peer);
  }

  /** Links held by this end, and links the peer holds (`mirrored`), for /status. */
  held(nowMs: number): HeldLink[] {
    const out: HeldLink[] = [];
    for (const [peer, link] of this.links) {
      if (link.held) {
        out.push({ peer, heldMs: nowMs - link.heldSinceMs, remainingMs: link.answeringSinceMs === null ? null : Math.max(0, link.heldUntilMs - nowMs) });
      } else if (nowMs < link.mirroredUntilMs) {
        out.push({ peer, heldMs: 0, remainingMs: link.mirroredUntilMs - nowMs, mirrored: true });
      }
    }
    return out.sort((x, y) => (x.peer < y.peer ? -1 : x.peer > y.peer ? 1 : 0));
  }

  /** Every invariant, for every link: O(links). */
  checkInvariants(): void {
    assert(this.links.size <= LINKS_MAX, 'at most LINKS_MAX links are tracked');
    for (const link of this.links.values()) this.checkLink(link);
  }

  /** The invariants of one link, after a change to it: O(1). */
  private checkLink(link: Link): void {
    // Answers are counted only towards a release: a link not held has none to count.
    assert(link.held || link.answeringSinceMs === null, 'a link not held counts no answers');
    // A held link that answers is released no sooner than the hold-down after it began to.
    assert(
      !link.held || link.answeringSinceMs === null || link.heldUntilMs >= link.answeringSinceMs + this.options.holdDownMs,
      'a held link that answers has a release time a hold-down after it began to answer',
    );
    assert(Number.isFinite(link.mirroredUntilMs), 'a mirrored hold ends');
  }

  private isLate(link: Link, nowMs: number): boolean {
    return link.probeSentMs !== null && nowMs - link.probeSentMs > this.options.probeLateMs && link.probeSentMs - link.sinceMs >= LATE_GRACE_MS;
  }

  private hold(link: Link, nowMs: number): LinkChange {
    link.held = true;
    link.heldFor = link.incarnation;
    link.heldSinceMs = nowMs;
    link.answeringSinceMs = null;
    link.heldUntilMs = 0;
    this.checkLink(link);
    return 'held';
  }
}

function newLink(incarnation: string | null, nowMs: number): Link {
  return { incarnation, announcedAs: null, probeSentMs: null, held: false, heldFor: null, mirroredUntilMs: 0, sinceMs: nowMs, heldSinceMs: 0, answeringSinceMs: null, heldUntilMs: 0 };
}
