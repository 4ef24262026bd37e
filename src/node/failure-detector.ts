// Which peers are up, and which links carry data: a probe of every peer each ping interval (late
// probes hold a link down at once), suspicion when a request fails, removal from the view with a
// down report to the others, and what a ping answer says besides (nodes to learn of, a newer map,
// writes to pull).

import { isNodeAddress } from '../core/address.ts';
import type { LinkChange } from '../core/links.ts';
import type { PingInfo } from '../core/node-core.ts';
import type { NodeAddress } from '../core/types.ts';
import type { NodeContext } from './context.ts';
import type { TimerHandle } from './env.ts';
import { DOWN_REPORT_HEADER } from './headers.ts';
import type { HttpReply } from './http-server.ts';
import { CONTROL_TIMEOUT_MS } from './limits.ts';
import { isIncarnation, linkHeldReply } from './link-transport.ts';
import { PeerUnreachableError, causeOf } from './peer-client.ts';
import { json } from './replies.ts';
import { StallWatch } from './stall-watch.ts';

/** What the failure detector asks of the other concerns. */
export interface FailureDetectorDeps {
  /** The header that lets this node's down reports through ADMIN_TOKEN. */
  adminHeaders(): Record<string, string>;
  /** A peer's map digest differs from ours: take its map. */
  fetchMap(peer: NodeAddress): Promise<void>;
  /** Pull what a shard peer has and this replica lacks. */
  startPull(peer: NodeAddress, reason: string): void;
}

/** Reasons kept of a member's failures in a row (removal takes FAILURES_TO_REMOVE of them, 2 by default). */
const FAILURE_REASONS_MAX = 4;

export class FailureDetector {
  private readonly ctx: NodeContext;
  private readonly deps: FailureDetectorDeps;
  private pingTimer: TimerHandle | null = null;
  private readonly probing = new Set<NodeAddress>();
  /** Why each failure in a row of a member's was counted (at most FAILURE_REASONS_MAX): the removal says so. */
  private readonly failureReasons = new Map<NodeAddress, string[]>();
  /** Links held down and released since start (shown in /status). */
  private readonly linkStats = { holds: 0, releases: 0, refused: 0, stallsForgiven: 0 };
  /** A real process watches its own event loop; probes in flight across a stall are not judged late (simulated nodes never stall). */
  private readonly stallWatch: StallWatch | null;

  constructor(ctx: NodeContext, deps: FailureDetectorDeps, watchStalls: boolean) {
    this.ctx = ctx;
    this.deps = deps;
    this.stallWatch = watchStalls
      ? new StallWatch(Math.floor(ctx.config.probeLateMs / 2), () => {
          this.linkStats.stallsForgiven++;
          ctx.step({ kind: 'link', event: { type: 'forgive-probes' } });
        })
      : null;
  }

  /** Probes every peer each ping interval, from now on. */
  start(): void {
    this.pingTimer = this.ctx.timers.setInterval(() => {
      try {
        this.tick();
      } catch (error) {
        this.ctx.background.failed('tick', error);
      }
    }, this.ctx.config.pingIntervalMs);
    // The first round now: links are watched from the start, not half an interval later.
    this.stallWatch?.start();
    this.tick();
  }

  stop(): void {
    this.stallWatch?.stop();
    if (this.pingTimer) this.ctx.timers.clearInterval(this.pingTimer);
  }

  /** The links part of /status. */
  linkStatus(): Record<string, unknown> {
    return { held: this.ctx.core.linkView.held(this.ctx.timers.now()), ...this.linkStats };
  }

  private tick(): void {
    const { core, timers, config } = this.ctx;
    if (this.ctx.isClosed()) return;
    const timedOut = core.reshardTimedOut(timers.now(), config.reshardTimeoutMs);
    if (timedOut !== null) {
      this.ctx.log.warn({ epoch: timedOut, coordinator: core.reshardInProgress?.coordinator }, 'reshard not committed in time; abandoned');
      this.ctx.step({ kind: 'reshard-abort', epoch: timedOut });
    }
    for (const { shard, node } of this.ctx.step({ kind: 'drop-never-joined' })) {
      this.ctx.log.warn({ shard, peer: node, graceMs: config.memberJoinGraceMs }, 'dropped a member that never joined: never heard from since it was added');
      this.ctx.replicator.forget(node);
    }
    for (const peer of core.probeTargets()) {
      // A probe still unanswered after PROBE_LATE_MS holds its link down now, not at its timeout.
      this.checkLate(peer);
      if (this.probing.has(peer)) continue;
      this.ctx.background.run('ping', () => this.pingOnce(peer));
    }
  }

  private async pingOnce(peer: NodeAddress): Promise<void> {
    const { core, timers, config } = this.ctx;
    this.probing.add(peer);
    let lateTimer: TimerHandle | null = null;
    try {
      let info: PingInfo | null = null;
      let failure = 'probe unanswered';
      const sentTo = core.linkView.incarnationOf(peer);
      this.ctx.step({ kind: 'link', event: { type: 'probe-sent', peer } });
      // Late is noticed when it happens, not at the next tick: data must stop before it could
      // cross a link that is failing.
      lateTimer = timers.setTimeout(() => this.checkLate(peer), config.probeLateMs + 1);
      try {
        const reply = await this.ctx.peers.call(peer, 'GET', '/internal/ping', undefined, { timeoutMs: config.pingTimeoutMs, lane: 'control' });
        if (reply.status === 200) info = reply.body as PingInfo;
        else {
          // Answered, but not with a ping (shedding load, say): the link does not serve.
          failure = `probe answered ${reply.status}`;
          this.onLinkChange(peer, this.ctx.step({ kind: 'link', event: { type: 'failed', peer, sentTo } }));
        }
      } catch (error) {
        if (!(error instanceof PeerUnreachableError)) throw error;
        failure = `probe: ${causeOf(error)}`;
      }
      if (info !== null && isIncarnation(info.incarnation)) {
        this.onLinkChange(peer, this.ctx.step({ kind: 'link', event: { type: 'probe-answered', peer, sentTo, incarnation: info.incarnation } }));
      }
      this.observe(peer, info !== null, failure);
      if (info !== null && core.isMember(peer)) {
        if (this.linkUp(peer)) this.ctx.replicator.resume(peer);
        this.onPing(peer, info);
      }
    } finally {
      if (lateTimer !== null) timers.clearTimeout(lateTimer);
      this.probing.delete(peer);
    }
  }

  /** Holds the link to `peer` down now if its probe in flight is late; the time it looked. */
  private checkLate(peer: NodeAddress): number {
    this.onLinkChange(peer, this.ctx.step({ kind: 'link', event: { type: 'check-late', peer } }));
    return this.ctx.timers.now();
  }

  /** Whether data may cross the link to `peer` now (a late probe holds it down here). */
  linkUp(peer: NodeAddress): boolean {
    return this.ctx.core.linkView.isUp(peer, this.checkLate(peer));
  }

  /** Whether data from `peer` (from its process `incarnation`) is taken now (not while this node holds the link down itself). */
  private linkAccepts(peer: NodeAddress, incarnation: string | null): boolean {
    return this.ctx.core.linkView.accepts(peer, this.checkLate(peer), incarnation);
  }

  /**
   * Null when data from `peer` (from its process `incarnation`) is taken now; else the 503 of a
   * link this node holds down, saying for how long, and counted.
   */
  heldLinkRefusal(peer: NodeAddress, incarnation: string | null, path: string): HttpReply | null {
    if (this.linkAccepts(peer, incarnation)) return null;
    this.linkStats.refused++;
    const suppressed = this.ctx.refusals.take(`link held ${peer}`);
    if (suppressed !== null) this.ctx.log.info({ peer, path, suppressed }, 'data from a peer over a link held down: refused');
    const refusal = linkHeldReply(this.ctx.config.address, peer, this.ctx.core.linkView.remainingMs(peer, this.ctx.timers.now()));
    return json(refusal.status, refusal.body);
  }

  /** A link was held down or released: stop or restart what crosses it, and say so. */
  onLinkChange(peer: NodeAddress, change: LinkChange): void {
    if (change === null) return;
    const { config, log, replicator } = this.ctx;
    if (change === 'held') {
      this.linkStats.holds++;
      log.warn({ peer, holdDownMs: config.holdDownMs }, 'link to peer failed: no data crosses it until it has answered every probe for the hold-down');
      replicator.pause(peer);
      return;
    }
    this.linkStats.releases++;
    log.info({ peer, holdDownMs: config.holdDownMs }, 'link answered through the hold-down: data crosses it again');
    if (this.ctx.core.isMember(peer)) replicator.resume(peer);
  }

  /** One probe now, answering whether the peer is up (used to confirm a suspicion). */
  async probe(peer: NodeAddress): Promise<boolean> {
    try {
      const reply = await this.ctx.peers.call(peer, 'GET', '/internal/ping', undefined, { timeoutMs: this.ctx.config.pingTimeoutMs, lane: 'control' });
      return reply.status === 200;
    } catch {
      return false;
    }
  }

  /** A request to `peer` failed (`what` says which, and how): count it, and confirm with a probe right away. */
  suspect(peer: NodeAddress, what: string): void {
    if (this.ctx.isClosed() || !this.ctx.core.isMember(peer)) return;
    this.observe(peer, false, what);
    if (!this.probing.has(peer)) this.ctx.background.run('ping', () => this.pingOnce(peer));
  }

  private observe(peer: NodeAddress, answered: boolean, failure: string): void {
    const { core, config } = this.ctx;
    const reasons = answered ? [] : [...(this.failureReasons.get(peer) ?? []), failure].slice(-FAILURE_REASONS_MAX);
    const outcome = this.ctx.step({ kind: 'probe', peer, answered });
    if (!answered && outcome.kind === 'none' && core.isMember(peer)) this.failureReasons.set(peer, reasons);
    else this.failureReasons.delete(peer);
    if (outcome.kind === 'removed') {
      this.onRemoved(peer, 'not answering', reasons);
      // Tell the others, as the spec asks; each checks before it removes.
      for (const other of core.viewPeers()) {
        this.ctx.peers
          .call(other, 'DELETE', '/view', { 'socket-address': peer }, {
            timeoutMs: CONTROL_TIMEOUT_MS,
            lane: 'control',
            headers: { [DOWN_REPORT_HEADER]: config.address, ...this.deps.adminHeaders() },
          })
          .catch(() => undefined);
      }
    } else if (outcome.kind === 'readmitted') {
      this.ctx.log.info({ peer, holdDownMs: config.holdDownMs }, 'node answered through the hold-down; admitted to the view again');
    }
  }

  /** `peer` left the view: `why`, and the failures in a row that removed it (when this node found it down). */
  onRemoved(peer: NodeAddress, why: string, failures?: readonly string[]): void {
    this.failureReasons.delete(peer);
    this.ctx.log.warn({ peer, why, ...(failures === undefined ? {} : { failures }) }, 'node removed from view');
    this.ctx.replicator.pause(peer);
    this.ctx.step({ kind: 'forget-peer', peer });
  }

  /** A member answered a probe: the core says what follows (see NodeCore.onPingAnswer). */
  private onPing(peer: NodeAddress, info: PingInfo): void {
    const answer = this.ctx.step({ kind: 'ping-answer', peer, info, linkUp: this.linkUp(peer) });
    for (const node of answer.learned) this.ctx.log.info({ peer: node, from: peer }, 'learned of a node from a peer; probing it before admitting it');
    if (answer.fetchMap) this.ctx.background.run('fetch map', () => this.deps.fetchMap(peer));
    if (answer.pull !== null) this.deps.startPull(peer, answer.pull);
  }
}
