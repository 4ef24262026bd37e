// What bench/memory.ts and bench/reshard.ts ask a node: JSON routes, /metrics samples, and the
// bytes its process has written and read (/proc/<pid>/io, Linux); and where a bench's result goes
// (bench/repair.ts too).
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { parseArgs } from 'node:util';

export async function call(address: string, method: 'GET' | 'PUT', path: string, options: { body?: unknown; token?: string; timeoutMs?: number } = {}): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  const r = await request(`http://${address}${path}`, {
    method,
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    headersTimeout: options.timeoutMs ?? 60_000,
    bodyTimeout: options.timeoutMs ?? 60_000,
  });
  const text = await r.body.text();
  return { status: r.statusCode, body: text ? JSON.parse(text) : undefined };
}

export async function status(address: string): Promise<any> {
  const r = await call(address, 'GET', '/status', { timeoutMs: 10_000 });
  if (r.status !== 200) throw new Error(`GET /status at ${address}: ${r.status}`);
  return r.body;
}

/** The unlabelled samples of GET /metrics, by name. */
export async function metrics(address: string): Promise<Map<string, number>> {
  const r = await request(`http://${address}/metrics`, { headersTimeout: 10_000, bodyTimeout: 10_000 });
  const out = new Map<string, number>();
  for (const line of (await r.body.text()).split('\n')) {
    const m = /^([a-z_]+) ([0-9.e+-]+)$/.exec(line);
    if (m) out.set(m[1] as string, Number(m[2]));
  }
  return out;
}

/** Bytes the process has written and read through system calls (sockets included): /proc/<pid>/io. */
export async function processIo(pid: number): Promise<{ written: number; read: number } | null> {
  try {
    const text = await readFile(`/proc/${pid}/io`, 'utf8');
    const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
    return { written: field('wchar'), read: field('rchar') };
  } catch {
    return null;
  }
}

/** Polls `check` until it gives a value; throws after `timeoutMs`. */
export async function until<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>, pollMs = 100): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  while (performance.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await sleep(pollMs);
  }
  throw new Error(`${what}: not reached in ${timeoutMs} ms${last === undefined ? '' : ` (last error: ${String(last)})`}`);
}

/** Bytes of the keys key-0 .. key-<keys-1> and their values: the data itself. */
export function rawBytes(keys: number, valueBytes: number): number {
  let total = 0;
  for (let digits = 1, from = 0; from < keys; digits++, from = from === 0 ? 10 : from * 10) {
    const to = Math.min(keys, from === 0 ? 10 : from * 10);
    total += (to - from) * ('key-'.length + digits);
  }
  return total + keys * valueBytes;
}

export const mb = (bytes: number): string => (bytes / 1e6).toFixed(1);

/**
 * The load benches' flags (--keys, --value-bytes, --base-port, --connections) as whole numbers of
 * at least 1; a bad one ends the process with a line naming the bench and the flag.
 */
export function loadFlags(bench: string, defaults: { keys: number; basePort: number }): { keyCount: number; valueBytes: number; basePort: number; connections: number } {
  const { values } = parseArgs({
    options: {
      keys: { type: 'string', default: String(defaults.keys) },
      'value-bytes': { type: 'string', default: '100' },
      'base-port': { type: 'string', default: String(defaults.basePort) },
      connections: { type: 'string', default: '64' },
    },
    strict: true,
  });
  const whole = (name: keyof typeof values): number => {
    const n = Number(values[name]);
    if (!Number.isSafeInteger(n) || n < 1) {
      console.error(`${bench} bench: --${name} takes a whole number of at least 1`);
      process.exit(2);
    }
    return n;
  };
  return { keyCount: whole('keys'), valueBytes: whole('value-bytes'), basePort: whole('base-port'), connections: whole('connections') };
}

/** Writes a bench's result as bench/results/<name>.json (pretty JSON). */
export async function writeResult(name: string, result: unknown): Promise<void> {
  const dir = join(import.meta.dirname, 'results');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, `${name}.json`), `${JSON.stringify(result, null, 2)}\n`);
}
