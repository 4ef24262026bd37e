// Loads key-0 .. key-<n-1> into a running store as fast as it takes them, with wrk and
// bench/load-keys.lua: one connection per wrk thread, threads dealt round-robin over the nodes, each
// key written once and sent again until a 2xx acknowledges it (503s included). For bench/memory.ts
// and bench/reshard.ts.
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export type LoadResult = {
  keys: number;
  connections: number;
  ms: number;
  keysPerSecond: number;
  /** 2xx answers: one per key. */
  acked: number;
  /** Requests answered with another status and sent again, by status. */
  retries: number;
  retriesByStatus: Record<string, number>;
  /** wrk's "Socket errors" line, if any (the request was sent again after the reconnect). */
  socketErrors: string | null;
};

/** Between two looks at which threads are done. */
const pollMs = 20;

export async function loadKeys(options: { addresses: readonly string[]; keys: number; valueBytes: number; connections: number; wrk?: string }): Promise<LoadResult> {
  const threads = Math.max(1, Math.min(options.connections, options.keys));
  const doneDir = await mkdtemp(join(tmpdir(), 'kvs-load-'));
  const env = {
    ...process.env,
    KVS_ADDRS: options.addresses.join(','),
    KVS_KEYS: String(options.keys),
    KVS_THREADS: String(threads),
    KVS_VALUE_BYTES: String(options.valueBytes),
    KVS_DONE_DIR: doneDir,
  };
  // wrk runs until -d unless told to stop: every thread stops itself, then SIGINT ends wrk at once.
  const args = ['-t', String(threads), '-c', String(threads), '-d', '3600s', '--timeout', '60s', '-s', join(import.meta.dirname, 'load-keys.lua'), `http://${options.addresses[0]}/`];
  const started = performance.now();
  const child = spawn(options.wrk ?? 'wrk', args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => resolve(code));
  });
  let exitCode: number | null | undefined;
  void exited.then((code) => (exitCode = code), () => (exitCode = -1));
  try {
    let ms = 0;
    for (;;) {
      const done = await readdir(doneDir);
      if (done.length >= threads) {
        ms = performance.now() - started;
        break;
      }
      if (exitCode !== undefined) throw new Error(`wrk exited (${exitCode}) before every thread was done:\n${output}`);
      await sleep(pollMs);
    }
    child.kill('SIGINT');
    await exited;
    let acked = 0;
    let retries = 0;
    const retriesByStatus: Record<string, number> = {};
    for (const name of await readdir(doneDir)) {
      const [ackedText, retriesText, ...statuses] = (await readFile(join(doneDir, name), 'utf8')).trim().split(' ');
      acked += Number(ackedText);
      retries += Number(retriesText);
      for (const entry of statuses) {
        const [status, count] = entry.split(':');
        retriesByStatus[status as string] = (retriesByStatus[status as string] ?? 0) + Number(count);
      }
    }
    return {
      keys: options.keys,
      connections: threads,
      ms: Math.round(ms),
      keysPerSecond: Math.round(options.keys / (ms / 1000)),
      acked,
      retries,
      retriesByStatus,
      socketErrors: /Socket errors:.*$/m.exec(output)?.[0] ?? null,
    };
  } finally {
    if (exitCode === undefined) child.kill('SIGKILL');
    await rm(doneDir, { recursive: true, force: true });
  }
}
