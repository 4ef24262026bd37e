// Notices when this process's own event loop stalls (a long GC, a large JSON body, a starved CPU).
// A probe in flight during such a stall is not evidence against the link: its answer may have
// been waiting, unread, while the loop could not run. The node then forgives its probes.

/** How often the loop is sampled. */
const SAMPLE_MS = 50;

export class StallWatch {
  private readonly stallMs: number;
  private readonly onStall: (gapMs: number) => void;
  private timer: NodeJS.Timeout | null = null;
  private last = 0;

  /** `onStall` runs (before other timers that were due, as it was due first) when a sample comes `stallMs` or more late. */
  constructor(stallMs: number, onStall: (gapMs: number) => void) {
    this.stallMs = stallMs;
    this.onStall = onStall;
  }

  start(): void {
    if (this.timer !== null) return;
    this.last = performance.now();
    this.timer = setInterval(() => {
      const now = performance.now();
      const gap = now - this.last - SAMPLE_MS;
      this.last = now;
      if (gap >= this.stallMs) this.onStall(gap);
    }, SAMPLE_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
