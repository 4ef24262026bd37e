import { monitorEventLoopDelay } from 'node:perf_hooks';

let histogram: ReturnType<typeof monitorEventLoopDelay> | null = null;

/**
 * How late this process's event loop ran since the last call (p99 and max, in ms), for /status:
 * what a request waits before the node can even look at it. The monitor starts at the first call,
 * and there is one per process.
 */
export function readLoopDelay(): { delayP99Ms: number; delayMaxMs: number } {
  if (histogram === null) {
    histogram = monitorEventLoopDelay({ resolution: 10 });
    histogram.enable();
  }
  const toMs = (ns: number): number => Math.round(ns / 1e4) / 100;
  const out = { delayP99Ms: toMs(histogram.percentile(99)), delayMaxMs: toMs(histogram.max) };
  histogram.reset();
  return out;
}
