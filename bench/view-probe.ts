// A worker thread for the flood benchmark: GET /view at one node every `intervalMs`, each on a new
// connection (as a new client would: the accept queue counts) and bounded by `timeoutMs`, posting
// each latency (or null for a miss) to the parent. It runs apart from the flood's own event loop,
// so the load generator's pauses are not taken for the node's.
import { request } from 'node:http';
import { parentPort, workerData } from 'node:worker_threads';

const { target, intervalMs, timeoutMs } = workerData as { target: string; intervalMs: number; timeoutMs: number };
const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];

function probe(): void {
  const sentMs = performance.now();
  let done = false;
  const report = (ok: boolean): void => {
    if (done) return;
    done = true;
    const latencyMs = performance.now() - sentMs;
    parentPort?.postMessage({ latencyMs: ok && latencyMs <= timeoutMs ? latencyMs : null });
  };
  const req = request({ host, port, path: '/view', method: 'GET', agent: false, timeout: timeoutMs }, (res) => {
    res.resume();
    res.on('end', () => report(res.statusCode === 200));
    res.on('error', () => report(false));
  });
  req.on('timeout', () => {
    report(false);
    req.destroy();
  });
  req.on('error', () => report(false));
  req.end();
}

const timer = setInterval(probe, intervalMs);
parentPort?.on('message', (message: unknown) => {
  if (message === 'stop') clearInterval(timer);
});
