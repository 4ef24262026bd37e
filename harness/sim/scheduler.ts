// Simulated time. Every callback of a simulated world (a node's timers, a message arriving, a
// client's next operation) is an event in one queue ordered by (time, sequence number); the loop
// takes them one at a time and, after each, lets every promise continuation it caused run to the
// end before the next event. Nothing else moves the world, so one seed gives one history.

import type { TimerHandle, Timers } from '../../src/node/env.ts';

/** Whose events these are: a crashed node's timers and deliveries are dropped with it. */
export interface Owner {
  alive: boolean;
}

interface Event {
  at: number;
  seq: number;
  run: (() => void) | null;
  owner: Owner | null;
}

export const ALWAYS: Owner = { alive: true };

/** Runs every microtask queued so far (and those they queue): a macrotask comes after all of them. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class Scheduler {
  #now = 0;
  #seq = 0;
  #heap: Event[] = [];
  /** Events run so far. */
  events = 0;

  now(): number {
    return this.#now;
  }

  /** Runs `run` after `delayMs` of simulated time, unless `owner` has died by then. */
  after(delayMs: number, run: () => void, owner: Owner | null = null): Event {
    const event: Event = { at: this.#now + Math.max(0, delayMs), seq: this.#seq++, run, owner };
    this.#push(event);
    return event;
  }

  cancel(event: Event): void {
    event.run = null;
  }

  /** Runs events in order until the next one is later than `untilMs` (or `stop` says so); the clock ends at `untilMs`. */
  async runUntil(untilMs: number, stop: () => boolean = () => false): Promise<void> {
    while (this.#heap.length > 0 && (this.#heap[0] as Event).at <= untilMs && !stop()) {
      const event = this.#pop();
      const run = event.run;
      if (run === null || (event.owner !== null && !event.owner.alive)) continue;
      this.#now = event.at;
      this.events++;
      run();
      await settle();
    }
    if (!stop() && untilMs > this.#now) this.#now = untilMs;
  }

  /** Timers for one node (or client): its callbacks die with `owner`. */
  timersFor(owner: Owner): Timers {
    const intervals = new Map<object, Event>();
    // As node's timers do: a delay below 1 ms (or not a number) is 1 ms.
    const delay = (ms: number): number => (ms >= 1 ? ms : 1);
    return {
      // Whole milliseconds, as Date.now() gives a real node: what a node derives from its clock and
      // sends (a forwarded write's x-kvs-deadline header) must look as it does in production.
      now: () => Math.floor(this.#now),
      setTimeout: (callback, ms) => this.after(delay(ms), callback, owner),
      clearTimeout: (handle: TimerHandle) => {
        if (handle) this.cancel(handle as Event);
      },
      setInterval: (callback, ms) => {
        const handle = {};
        const tick = (): void => {
          intervals.set(handle, this.after(delay(ms), tick, owner));
          callback();
        };
        intervals.set(handle, this.after(delay(ms), tick, owner));
        return handle;
      },
      clearInterval: (handle: TimerHandle) => {
        const event = intervals.get(handle as object);
        if (event) this.cancel(event);
        intervals.delete(handle as object);
      },
    };
  }

  #before(a: Event, b: Event): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  #push(event: Event): void {
    const heap = this.#heap;
    heap.push(event);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#before(heap[i] as Event, heap[parent] as Event)) break;
      [heap[i], heap[parent]] = [heap[parent] as Event, heap[i] as Event];
      i = parent;
    }
  }

  #pop(): Event {
    const heap = this.#heap;
    const top = heap[0] as Event;
    const last = heap.pop() as Event;
    if (heap.length > 0) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && this.#before(heap[l] as Event, heap[m] as Event)) m = l;
        if (r < heap.length && this.#before(heap[r] as Event, heap[m] as Event)) m = r;
        if (m === i) break;
        [heap[i], heap[m]] = [heap[m] as Event, heap[i] as Event];
        i = m;
      }
    }
    return top;
  }
}
