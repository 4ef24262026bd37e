// A worker thread for the flood benchmark: GET /view at one node every `intervalMs`, each with a
// `timeoutMs` bound, posting each latency (or null for a miss) to the parent. It runs apart from
// the flood's own event loop, so the load generator's pauses are not taken for the node's.
import { parentPort, workerData } from 'node:worker_threads';
import { Pool } from 'undici';

const { target, intervalMs, timeoutMs } = workerData as { target: string; intervalMs: number; timeoutMs: number };
const pool = new Pool(`http://${target}`, { connections: 4, connect: { timeout: timeoutMs } });
let stopped = false;
parentPort?.on('message', (message: unknown) => {
  if (message === 'stop') {
    stopped = true;
    void pool.destroy().finally(() => process.exit(0));
  }
});

async function probe(): Promise<void> {
  const sentMs = performance.now();
  try {
    const response = await pool.request({ method: 'GET', path: '/view', headersTimeout: timeoutMs, bodyTimeout: timeoutMs, signal: AbortSignal.timeout(timeoutMs) });
    await response.body.text();
    const latencyMs = performance.now() - sentMs;
    parentPort?.postMessage({ latencyMs: response.statusCode === 200 && latencyMs <= timeoutMs ? latencyMs : null });
  } catch (error) {
    if (process.env.PROBE_DEBUG) console.error('probe', (error as Error).message, performance.now() - sentMs);
    parentPort?.postMessage({ latencyMs: null });
  }
}

const timer = setInterval(() => {
  if (stopped) clearInterval(timer);
  else void probe();
}, intervalMs);
