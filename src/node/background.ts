import { AssertionError } from 'node:assert';
import { InvariantError } from '../core/assert.ts';
import type { Logger } from './logger.ts';
import type { Timers } from './env.ts';

/** A programmer error that must stop the node: the core's InvariantError, or node's AssertionError. */
export function isBrokenInvariant(error: unknown): boolean {
  return error instanceof InvariantError || error instanceof AssertionError;
}

/** One line per key at most this often; the lines in between are counted and reported with the next. */
export const LOG_INTERVAL_MS = 10_000;

/** Says, per key, whether to log now, and how many were suppressed since the last line. */
export class LogLimiter {
  private readonly timers: Timers;
  private readonly last = new Map<string, { atMs: number; suppressed: number }>();
  /** Keys remembered at most (a key may come from a request); beyond, the oldest are forgotten. */
  private static readonly KEYS_MAX = 256;

  constructor(timers: Timers) {
    this.timers = timers;
  }

  /** The number suppressed since the last line when it is time to log `key` again; null otherwise. */
  take(key: string): number | null {
    const now = this.timers.now();
    const entry = this.last.get(key);
    if (entry !== undefined && now - entry.atMs < LOG_INTERVAL_MS) {
      entry.suppressed++;
      return null;
    }
    const suppressed = entry?.suppressed ?? 0;
    this.last.delete(key);
    this.last.set(key, { atMs: now, suppressed: 0 });
    if (this.last.size > LogLimiter.KEYS_MAX) this.last.delete(this.last.keys().next().value as string);
    return suppressed;
  }
}

/**
 * Runs the node's background work (pings, syncs, anti-entropy, replication, late transfers): a
 * failure is logged (rate limited per task) and counted, and the node carries on; the loop that
 * started the task runs again on its next tick. A broken invariant (the core's InvariantError, or
 * an AssertionError) is a programmer error: it is rethrown, to stop the node on purpose.
 */
export class Background {
  private readonly log: Logger;
  private readonly limiter: LogLimiter;
  /** Failures per task since start, shown in /status. */
  readonly failures = new Map<string, number>();

  constructor(log: Logger, timers: Timers) {
    this.log = log;
    this.limiter = new LogLimiter(timers);
  }

  run(task: string, work: () => Promise<unknown>): void {
    let running: Promise<unknown>;
    try {
      running = work();
    } catch (error) {
      this.failed(task, error);
      return;
    }
    running.catch((error: unknown) => this.failed(task, error));
  }

  failed(task: string, error: unknown): void {
    if (isBrokenInvariant(error)) {
      this.log.fatal({ task, err: error }, 'invariant broken in background task; stopping');
      queueMicrotask(() => {
        throw error;
      });
      return;
    }
    this.failures.set(task, (this.failures.get(task) ?? 0) + 1);
    const suppressed = this.limiter.take(task);
    if (suppressed !== null) this.log.error({ task, err: error, suppressed }, 'background task failed; carrying on');
  }

  snapshot(): Record<string, number> {
    return Object.fromEntries(this.failures);
  }
}
