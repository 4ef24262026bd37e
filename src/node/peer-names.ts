// The IPs behind the host names of known nodes (`kvs-0.kvs:8090`), for the address check of a
// store without CLUSTER_SECRET: a request counts as a node's when it comes from an IP a known
// node's name resolves to. Names are looked up in the background, never while a request waits:
// a request from an IP not known yet is refused as before, and makes the names be looked up again
// (a name may have moved, as a rescheduled pod gets a new IP).

import { lookup as dnsLookup } from 'node:dns/promises';
import { isIPv4, isIPv6, SocketAddress } from 'node:net';
import type { NodeAddress } from '../core/types.ts';
import type { LogLimiter } from './background.ts';
import type { TimerHandle, Timers } from './env.ts';
import type { Logger } from './logger.ts';

/** How often the known names are checked: a name that appeared is looked up within this. */
export const NAME_CHECK_MS = 1000;
/** A name's answer is looked up again after this (names move: a rescheduled pod gets a new IP). */
export const NAME_REFRESH_MS = 10_000;
/** A name whose last lookup failed is tried again after this. */
export const NAME_RETRY_MS = 2000;
/** A lookup unanswered this long counts as failed (the system resolver may hang on a dead DNS server). */
export const NAME_LOOKUP_TIMEOUT_MS = 2000;
/** A request from an unknown IP makes every name be looked up again, at most this often (a flood of outsiders costs no DNS flood). */
export const NAME_KICK_MS = 1000;
/** Lookups in flight at once: each holds a thread of libuv's pool (four by default, shared with the disk and crypto) until the resolver answers. */
export const NAME_LOOKUPS_MAX = 2;
/** Names remembered at most; beyond, the oldest are forgotten (names no longer known are dropped at each check). */
export const NAME_ENTRIES_MAX = 256;
/** IPs kept per name at most. */
export const NAME_IPS_MAX = 16;

/** Resolves a host name to its IPs (every family). */
export type NameLookup = (host: string) => Promise<string[]>;

export const systemLookup: NameLookup = async (host) => (await dnsLookup(host, { all: true })).map((answer) => answer.address);

export interface PeerNamesDeps {
  timers: Timers;
  log: Logger;
  /** Rate limit of the warnings (one per name per interval). */
  limiter: LogLimiter;
  /** The addresses whose hosts are nodes' (VIEW, the view, probe targets, shard members). */
  known(): Iterable<NodeAddress>;
  /** Default: the system resolver (`dns.promises.lookup`, which reads /etc/hosts too). */
  lookup?: NameLookup;
  /** Runs a lookup in the background (`Background.run`: a failure is logged, never unhandled). */
  run(task: string, work: () => Promise<unknown>): void;
}

interface Entry {
  ips: ReadonlySet<string>;
  /** When the last lookup of the name settled (or was given up): the next is due from it. */
  checkedMs: number;
  /** The last lookup failed (its IPs are the last answer, kept). */
  failing: boolean;
}

/**
 * An IP in one form, whoever wrote it (a socket, a lookup, PEER_SOURCE_IPS): IPv6 in its canonical
 * text (`::1`, lower case), and an IPv4 address mapped into IPv6 (`::ffff:10.0.0.2`, as a
 * dual-stack listener reports an IPv4 client) as plain IPv4. Anything else is returned as it is.
 */
export function normalizeIp(ip: string): string {
  if (!isIPv6(ip)) return ip;
  const canonical = new SocketAddress({ address: ip, family: 'ipv6' }).address;
  const mapped = canonical.startsWith('::ffff:') ? canonical.slice('::ffff:'.length) : '';
  return isIPv4(mapped) ? mapped : canonical;
}

/** The host of `host:port`. */
export function hostOf(address: NodeAddress): string {
  return address.slice(0, address.lastIndexOf(':'));
}

/** True when the host is a name to look up, not an IP. */
export function isHostName(host: string): boolean {
  return !isIPv4(host) && !host.includes(':');
}

/**
 * The cache of the known nodes' names and their IPs, kept fresh in the background. Started by the
 * node when it runs without a cluster secret (with one, sources are not checked by address).
 */
export class PeerNames {
  private readonly deps: PeerNamesDeps;
  private readonly lookup: NameLookup;
  private readonly entries = new Map<string, Entry>();
  /** Names whose lookup is due, in the order they became due. */
  private readonly due = new Set<string>();
  /** Names being looked up now (until the resolver answers, even after the timeout). */
  private readonly inFlight = new Set<string>();
  private timer: TimerHandle | null = null;
  private lastKickMs = -Infinity;
  private stopped = false;
  /** Lookups that failed since start (timeouts included), for /status. */
  private failures = 0;

  constructor(deps: PeerNamesDeps) {
    this.deps = deps;
    this.lookup = deps.lookup ?? systemLookup;
  }

  /** Looks up the known names now, and checks them every NAME_CHECK_MS from now on. */
  start(): void {
    if (this.timer !== null || this.stopped) return;
    this.check();
    this.timer = this.deps.timers.setInterval(() => this.check(), NAME_CHECK_MS);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) this.deps.timers.clearInterval(this.timer);
    this.timer = null;
    this.due.clear();
  }

  /**
   * Whether `ip` (as the socket reports it) is an IP a known node's name resolved to, by the answers
   * at hand. When it is not and some known node is named, the names are looked up again (at most
   * every NAME_KICK_MS): the answer serves the next request, never this one.
   */
  isNodeIp(ip: string): boolean {
    const source = normalizeIp(ip);
    let named = false;
    for (const host of this.knownNames()) {
      named = true;
      if (this.entries.get(host)?.ips.has(source) === true) return true;
    }
    if (named) this.kick();
    return false;
  }

  /** What /status shows: names cached, those whose last lookup failed, failures since start. */
  snapshot(): { names: number; failing: string[]; lookupFailures: number } {
    const failing = [...this.entries].filter(([, entry]) => entry.failing).map(([host]) => host);
    return { names: this.entries.size, failing: failing.slice(0, 16), lookupFailures: this.failures };
  }

  /** The IPs a name resolved to last (tests). */
  ipsOf(host: string): string[] {
    return [...(this.entries.get(host)?.ips ?? [])];
  }

  /** Forgets names no longer known, and looks up those never looked up or due again. */
  private check(): void {
    if (this.stopped) return;
    const now = this.deps.timers.now();
    const names = this.knownNames();
    for (const host of this.entries.keys()) if (!names.has(host)) this.entries.delete(host);
    for (const host of this.due) if (!names.has(host)) this.due.delete(host);
    for (const host of names) {
      const entry = this.entries.get(host);
      const afterMs = entry === undefined ? 0 : entry.failing ? NAME_RETRY_MS : NAME_REFRESH_MS;
      if (entry === undefined || now - entry.checkedMs >= afterMs) this.due.add(host);
    }
    this.pump();
  }

  /** Every known name due now (a request came from an IP none of them had). */
  private kick(): void {
    const now = this.deps.timers.now();
    if (this.stopped || now - this.lastKickMs < NAME_KICK_MS) return;
    this.lastKickMs = now;
    for (const host of this.knownNames()) this.due.add(host);
    this.pump();
  }

  private knownNames(): Set<string> {
    const names = new Set<string>();
    for (const address of this.deps.known()) {
      const host = hostOf(address);
      if (isHostName(host)) names.add(host);
    }
    return names;
  }

  /** Starts the due lookups, within NAME_LOOKUPS_MAX in flight. */
  private pump(): void {
    for (const host of this.due) {
      if (this.inFlight.size >= NAME_LOOKUPS_MAX) return;
      this.due.delete(host);
      if (this.inFlight.has(host)) continue;
      this.inFlight.add(host);
      this.deps.run('name lookup', async () => {
        try {
          await this.resolve(host);
        } finally {
          this.inFlight.delete(host);
          this.pump();
        }
      });
    }
  }

  /** One lookup of `host`, its answer (or failure) recorded; settles when the resolver answers. */
  private async resolve(host: string): Promise<void> {
    const { timers } = this.deps;
    let timedOut = false;
    const timer = timers.setTimeout(() => {
      timedOut = true;
      this.failed(host, `no answer in ${NAME_LOOKUP_TIMEOUT_MS} ms`, null);
    }, NAME_LOOKUP_TIMEOUT_MS);
    let ips: string[];
    try {
      ips = await this.lookup(host);
    } catch (error) {
      timers.clearTimeout(timer);
      if (!timedOut) {
        const code = (error as { code?: unknown } | null)?.code;
        // The resolver says the name has no address (now): its last answer no longer holds.
        const none = code === 'ENOTFOUND' || code === 'ENODATA';
        this.failed(host, typeof code === 'string' ? code : error instanceof Error ? error.message : String(error), none ? new Set() : null);
      }
      return;
    }
    timers.clearTimeout(timer);
    // A late answer is still the name's answer (counted as a failure when it came too late).
    this.answered(host, new Set(ips.map(normalizeIp).slice(0, NAME_IPS_MAX)));
  }

  private answered(host: string, ips: Set<string>): void {
    if (this.stopped || !this.knownNames().has(host)) return;
    const before = this.entries.get(host);
    if (before !== undefined && before.ips.size > 0 && !sameSet(before.ips, ips)) {
      const suppressed = this.deps.limiter.take(`name moved ${host}`);
      if (suppressed !== null) this.deps.log.info({ host, before: [...before.ips], now: [...ips], suppressed }, 'a node name resolves to other IPs now');
    }
    this.remember(host, { ips, checkedMs: this.deps.timers.now(), failing: false });
  }

  /** A failed lookup: the last answer is kept (`ips` null) or replaced (the name has none). */
  private failed(host: string, reason: string, ips: Set<string> | null): void {
    this.failures++;
    if (this.stopped) return;
    const suppressed = this.deps.limiter.take(`name lookup ${host}`);
    if (suppressed !== null) {
      this.deps.log.warn({ host, reason, suppressed }, 'lookup of a node name failed: its last answer (if any) still counts; requests from other IPs are refused as not from a node (with CLUSTER_SECRET, sources are not checked by address)');
    }
    if (!this.knownNames().has(host)) return;
    const before = this.entries.get(host);
    this.remember(host, { ips: ips ?? before?.ips ?? new Set(), checkedMs: this.deps.timers.now(), failing: true });
  }

  private remember(host: string, entry: Entry): void {
    this.entries.delete(host);
    this.entries.set(host, entry);
    while (this.entries.size > NAME_ENTRIES_MAX) this.entries.delete(this.entries.keys().next().value as string);
  }
}

function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const item of a) if (!b.has(item)) return false;
  return true;
}
