// The session file of the `kvs` command: the causal metadata that chains one command to the next,
// one file per store (named after the nodes the command talks to), under an exclusive lock.
//
// The metadata is opaque, and sealed by the store when it has a cluster secret, so two answers
// cannot be merged outside the store. Commands sharing a file therefore run their requests one after
// another: each reads the file under the lock, sends what it read, and writes back what the store
// answered before it lets the next one in. Every command then depends on everything the earlier
// ones did, and none overwrites a dependency another added.

import { createHash } from 'node:crypto';
import { link, mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { unlinkSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CausalMetadata } from '../client/client.ts';

/** Where the session files live unless --meta-file says otherwise. */
export function sessionDir(): string {
  return join(homedir(), '.kvs', 'sessions');
}

/**
 * The default session file of a store reached through `nodes`: one per node list (in any order),
 * so two stores on one machine never share dependencies. The name shows the first node, then a
 * digest of the whole list when it has more than one.
 */
export function defaultSessionFile(nodes: readonly string[], dir: string = sessionDir()): string {
  const sorted = [...new Set(nodes)].sort();
  const first = (sorted[0] ?? 'none').replace(/[^A-Za-z0-9.-]/g, '_');
  const digest = createHash('sha256').update(sorted.join(',')).digest('hex').slice(0, 12);
  return join(dir, sorted.length <= 1 ? `${first}.json` : `${first}+${sorted.length - 1}-${digest}.json`);
}

/** Between two attempts at a lock another command holds, at first; doubled up to `LOCK_POLL_MAX_MS`. */
const LOCK_POLL_MIN_MS = 5;
const LOCK_POLL_MAX_MS = 100;

type Holder = { pid: number; host: string; since: string };

/**
 * Runs `use` holding `<file>.lock`, created exclusively (written beside it, then hard-linked into
 * place, so the lock never exists without its holder's name in it). Waits at most `waitMs` for
 * another command to let go; a lock whose holder was a process of this machine that no longer runs
 * (a command killed mid-way) is taken over. Released when `use` settles, or when the process exits.
 */
export async function withFileLock<T>(file: string, waitMs: number, use: () => Promise<T>): Promise<T> {
  const lock = `${file}.lock`;
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const mine: Holder = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
  const text = JSON.stringify(mine);
  const deadlineMs = performance.now() + waitMs;
  let pollMs = LOCK_POLL_MIN_MS;
  const staging = `${lock}.${process.pid}.new`;
  await writeFile(staging, text, { mode: 0o600 });
  try {
    for (;;) {
      try {
        await link(staging, lock);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = await readHolder(lock);
      if (holder !== null && holder.host === mine.host && !isRunning(holder.pid)) {
        await takeOver(lock, holder);
        continue;
      }
      if (performance.now() > deadlineMs) {
        const who = holder === null ? 'another command' : `process ${holder.pid} on ${holder.host} (since ${holder.since})`;
        throw new Error(`${file} is locked by ${who} for longer than ${waitMs} ms; if no kvs command is running, delete ${lock}`);
      }
      await sleep(pollMs * (0.5 + Math.random()));
      pollMs = Math.min(pollMs * 2, LOCK_POLL_MAX_MS);
    }
  } finally {
    await unlink(staging).catch(() => undefined);
  }
  // A command that ends with process.exit() skips `finally`; this does not.
  const release = () => {
    try {
      unlinkSync(lock);
    } catch {
      // Already gone.
    }
  };
  process.once('exit', release);
  try {
    return await use();
  } finally {
    process.off('exit', release);
    release();
  }
}

async function readHolder(lock: string): Promise<Holder | null> {
  try {
    const parsed = JSON.parse(await readFile(lock, 'utf8')) as Partial<Holder>;
    if (typeof parsed.pid !== 'number' || typeof parsed.host !== 'string') return null;
    return { pid: parsed.pid, host: parsed.host, since: String(parsed.since) };
  } catch {
    // Gone meanwhile, or not ours to read: treated as held.
    return null;
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it runs, as another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes a dead holder's lock. Moved aside first and checked there, so that of two commands taking
 * over at once, the second cannot delete the lock the first has just made: what it moved aside is
 * then not the dead holder's, and is put back.
 */
async function takeOver(lock: string, dead: Holder): Promise<void> {
  const aside = `${lock}.${process.pid}.stale`;
  try {
    await rename(lock, aside);
  } catch {
    return; // Someone else took it over first.
  }
  const moved = await readHolder(aside);
  if (moved !== null && (moved.pid !== dead.pid || moved.since !== dead.since)) {
    await link(aside, lock).catch(() => undefined);
  }
  await unlink(aside).catch(() => undefined);
}

export async function readMetadata(file: string): Promise<CausalMetadata> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    return JSON.parse(text) as CausalMetadata;
  } catch {
    throw new Error(`${file} is not JSON session metadata: delete it or pass --no-meta-file`);
  }
}

/** Written beside and renamed over, so an interrupted command never leaves half a file. */
export async function writeMetadata(file: string, metadata: CausalMetadata): Promise<void> {
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify(metadata)}\n`, { mode: 0o600 });
  await rename(temporary, file);
}
