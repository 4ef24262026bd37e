// Runs wrk with bench/http/kvs.lua (or etcd.lua, which prints the same line) and reads the one JSON
// line the script's done() prints: exact percentiles from wrk's own histogram, no parsing of its
// text report.

import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';

const defaultScriptPath = join(import.meta.dirname, 'kvs.lua');
const resultPrefix = 'WRK_RESULT ';

export type WrkOptions = {
  url: string;
  method: 'GET' | 'PUT';
  connections: number;
  seconds: number;
  keyCount: number;
  valueBytes: number;
  /** A response slower than this is a timeout error (not in the latencies). */
  timeoutSeconds: number;
  /** The wrk script (same arguments and WRK_RESULT line as kvs.lua); kvs.lua when absent. */
  script?: string;
};

/** What kvs.lua's (or etcd.lua's) done() reports (latencies in microseconds). */
export type WrkResult = {
  requests: number;
  durationUs: number;
  bytes: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  maxUs: number;
  meanUs: number;
  socketErrors: { connect: number; read: number; write: number; timeout: number };
  /** wrk's own count of responses with status >= 400. */
  statusErrors: number;
  /** Responses outside 2xx, by status, counted by the script's response() hook. */
  non2xx: Record<string, number>;
};

const running = new Set<ChildProcess>();

/** wrk's version line, or undefined when wrk cannot be run. */
export function wrkVersion(): string | undefined {
  // `wrk -v` prints its version and usage, and exits with status 1.
  const probe = spawnSync('wrk', ['-v'], { encoding: 'utf8' });
  if (probe.error !== undefined) return undefined;
  return `${probe.stdout}${probe.stderr}`.split('\n')[0]?.trim() || 'wrk';
}

export function runWrk(options: WrkOptions): Promise<WrkResult> {
  const args = [
    `-t${Math.min(options.connections, 2)}`,
    `-c${options.connections}`,
    `-d${options.seconds}s`,
    `--timeout`,
    `${options.timeoutSeconds}s`,
    '-s',
    options.script ?? defaultScriptPath,
    options.url,
    '--',
    options.method,
    String(options.keyCount),
    String(options.valueBytes),
  ];
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', (err) => {
      running.delete(child);
      reject(new Error(`wrk: ${err.message}`));
    });
    child.once('close', (code, signal) => {
      running.delete(child);
      const line = stdout.split('\n').find((text) => text.startsWith(resultPrefix));
      if (code !== 0 || line === undefined) {
        const how = signal === null ? `exited with code ${code}` : `was killed by ${signal}`;
        reject(new Error(`wrk ${args.join(' ')} ${how}${line === undefined ? ', no result line' : ''}: ${(stderr || stdout).trim().slice(-500)}`));
        return;
      }
      try {
        resolve(JSON.parse(line.slice(resultPrefix.length)) as WrkResult);
      } catch (err) {
        reject(new Error(`wrk: unreadable result line ${JSON.stringify(line)}: ${err instanceof Error ? err.message : String(err)}`));
      }
    });
  });
}

/** SIGKILL to every wrk still running (interrupt, error). */
export function killRunningWrk(): void {
  for (const child of running) child.kill('SIGKILL');
}
