import { realTimers, type Timers } from './env.ts';

/**
 * Wakes requests that wait for the node's state to change (a write applied, a map adopted, a sync
 * done). Each wait is bounded by its caller; waking early only makes the caller look again.
 */
export class StateSignal {
  private waiters: (() => void)[] = [];
  private readonly timers: Timers;

  constructor(timers: Timers = realTimers) {
    this.timers = timers;
  }

  notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  wait(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const self = this;
      const timer = this.timers.setTimeout(done, timeoutMs);
      function done(): void {
        self.timers.clearTimeout(timer);
        self.waiters = self.waiters.filter((w) => w !== done);
        resolve();
      }
      this.waiters.push(done);
    });
  }
}
