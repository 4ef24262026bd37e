// The host side of the lab: running `ip` and `iptables` with bounds, claiming a /24 of 10.10.0.0/16
// with a lock file, and removing what a lab created (its own, or a dead lab's leftovers).
//
// Every name a lab creates starts with its prefix `kvl<n>` (n: its slot, the third octet of its
// subnet), so cleanup never touches anything it did not create: network namespaces `kvl<n>-<i>`,
// the bridge `kvl<n>br`, host-side veths `kvl<n>h<i>` (their peers live in the namespaces and go with
// them), and one host FORWARD rule commented `kvl<n>`.

import { execFile, execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, unlinkSync, writeSync, existsSync } from 'node:fs';
import { join } from 'node:path';

export const LOCK_DIR = '/tmp/kvs-lab-locks';
/** Slots 1..SLOT_MAX: subnet 10.10.<slot>.0/24. 0 is left to the compose deployment's 10.10.0.0/16. */
export const SLOT_MAX = 250;
const COMMAND_TIMEOUT_MS = 10_000;

export function prefixOf(slot: number): string {
  return `kvl${slot}`;
}

export class CommandError extends Error {
  readonly stderr: string;
  constructor(message: string, stderr: string) {
    super(message);
    this.name = 'CommandError';
    this.stderr = stderr;
  }
}

/** Runs a command (no shell) with a timeout; rejects with its stderr when it fails. */
export function run(file: string, args: readonly string[], options: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { timeout: options.timeoutMs ?? COMMAND_TIMEOUT_MS, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) {
          reject(new CommandError(`${file} ${args.join(' ')} failed: ${stderr.trim() || error.message}`, stderr));
          return;
        }
        resolve(stdout);
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
    else child.stdin?.end();
  });
}

/** The synchronous form, for cleanup on process exit (no event loop left there). Never throws. */
export function runSync(file: string, args: readonly string[], input?: string): string | undefined {
  try {
    return execFileSync(file, args, { input, timeout: COMMAND_TIMEOUT_MS, killSignal: 'SIGKILL', stdio: ['pipe', 'pipe', 'pipe'] }).toString();
  } catch {
    return undefined;
  }
}

/** Why the lab cannot run here, or undefined when it can (root, `ip netns`, iptables). */
export function labUnavailableReason(): string | undefined {
  if (process.platform !== 'linux') return `the network lab needs Linux (this is ${process.platform})`;
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'the network lab needs root (network namespaces, iptables)';
  if (runSync('ip', ['netns', 'list']) === undefined) return '`ip netns` is not available (install iproute2)';
  if (runSync('iptables', ['--version']) === undefined) return 'iptables is not installed (apt-get install iptables)';
  if (runSync('iptables-restore', ['--version']) === undefined) return 'iptables-restore is not installed (apt-get install iptables)';
  return undefined;
}

/** Whether a process runs with that pid (a zombie, dead but not yet reaped, counts as dead). */
export function pidAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S ...", the state after the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

function lockPath(slot: number): string {
  return join(LOCK_DIR, `${slot}.lock`);
}

function readLockPid(path: string): number | undefined {
  try {
    const pid = Number(readFileSync(path, 'utf8').trim().split(/\s+/)[0]);
    return Number.isSafeInteger(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

function tryCreateLock(slot: number): boolean {
  try {
    const fd = openSync(lockPath(slot), 'wx');
    writeSync(fd, `${process.pid}\n`);
    closeSync(fd);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

/**
 * Claims a free slot: an exclusive lock file holding our pid. A lock whose pid is dead is taken over
 * (its leftovers are removed first). Returns the slot; throws if none is free.
 */
export function claimSlot(): number {
  mkdirSync(LOCK_DIR, { recursive: true });
  const routes = runSync('ip', ['-4', 'route', 'show']) ?? '';
  // Start at a pid-dependent slot so concurrent labs rarely contend for the same lock.
  const start = (process.pid % SLOT_MAX) + 1;
  for (let k = 0; k < SLOT_MAX; k++) {
    const slot = ((start - 1 + k) % SLOT_MAX) + 1;
    const path = lockPath(slot);
    if (!existsSync(path)) {
      if (routeConflict(slot, routes)) continue;
      if (tryCreateLock(slot)) {
        removeLeftovers(slot);
        return slot;
      }
      continue;
    }
    const aside = moveAsideIfStale(path, 'stale');
    if (aside === null) continue;
    try {
      unlinkSync(aside);
    } catch {
      // Gone already.
    }
    removeLeftovers(slot);
    if (tryCreateLock(slot)) return slot;
  }
  throw new Error(`no free lab slot in 10.10.1-${SLOT_MAX}.0/24 (locks in ${LOCK_DIR})`);
}

/**
 * A lock whose holder is dead is moved aside atomically, so that of two processes taking it over
 * only one succeeds; returns where it now is, or null when it is live or someone else won.
 */
function moveAsideIfStale(path: string, reason: string): string | null {
  const holder = readLockPid(path);
  if (holder !== undefined && pidAlive(holder)) return null;
  const aside = `${path}.${reason}.${process.pid}`;
  try {
    renameSync(path, aside);
  } catch {
    return null;
  }
  const moved = readLockPid(aside);
  if (moved !== undefined && pidAlive(moved)) {
    // We raced a process that had just taken it over: give it back.
    try {
      renameSync(aside, path);
    } catch {
      // It exists again: leave it.
    }
    return null;
  }
  return aside;
}

function routeConflict(slot: number, routes: string): boolean {
  // A route inside our /24 that is not on our own bridge: someone else uses the subnet. (A wider
  // route such as a compose network's 10.10.0.0/16 is fine: our /24 is more specific.)
  return routes.split('\n').some((line) => line.startsWith(`10.10.${slot}.`) && !line.includes(`dev ${prefixOf(slot)}br`));
}

export function releaseSlot(slot: number): void {
  const path = lockPath(slot);
  if (readLockPid(path) === process.pid) {
    try {
      unlinkSync(path);
    } catch {
      // Already gone.
    }
  }
}

/** Network namespaces whose name starts with `prefix-`. */
export function namespacesOf(prefix: string): string[] {
  const out = runSync('ip', ['netns', 'list']) ?? '';
  return out
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0] ?? '')
    .filter((name) => name.startsWith(`${prefix}-`));
}

/** Host interfaces whose name starts with `prefix` followed by `br` or `h<digits>`. */
export function interfacesOf(prefix: string): string[] {
  const out = runSync('ip', ['-o', 'link', 'show']) ?? '';
  const names: string[] = [];
  const pattern = new RegExp(`^${prefix}(br|h\\d+)$`);
  for (const line of out.split('\n')) {
    const match = /^\d+:\s+([^:@\s]+)/.exec(line);
    if (match && pattern.test(match[1]!)) names.push(match[1]!);
  }
  return names;
}

/**
 * Removes everything carrying the slot's prefix: kills the processes inside its namespaces, deletes
 * the namespaces, its veths and bridge, and its host FORWARD rule. Synchronous (it also runs on exit).
 */
export function removeLeftovers(slot: number): void {
  const prefix = prefixOf(slot);
  for (const ns of namespacesOf(prefix)) {
    const pids = (runSync('ip', ['netns', 'pids', ns]) ?? '').split('\n').map(Number).filter((pid) => pid > 0);
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Exited.
      }
    }
    runSync('ip', ['netns', 'del', ns]);
  }
  for (const name of interfacesOf(prefix)) if (name !== `${prefix}br`) runSync('ip', ['link', 'del', name]);
  if (interfacesOf(prefix).includes(`${prefix}br`)) runSync('ip', ['link', 'del', `${prefix}br`]);
  removeForwardRule(slot);
}

export function forwardRuleArgs(slot: number): string[] {
  const bridge = `${prefixOf(slot)}br`;
  return ['FORWARD', '-i', bridge, '-o', bridge, '-m', 'comment', '--comment', prefixOf(slot), '-j', 'ACCEPT'];
}

function removeForwardRule(slot: number): void {
  // -C checks for the exact rule; delete every copy.
  for (let i = 0; i < 10 && runSync('iptables', ['-C', ...forwardRuleArgs(slot)]) !== undefined; i++) {
    runSync('iptables', ['-D', ...forwardRuleArgs(slot)]);
  }
}

/**
 * Removes leftovers of dead labs of ours: slots whose lock file names a dead pid. A slot without a
 * lock is left alone (it may be a lab being set up), except by the lab that claims it.
 */
export function sweepDeadLabs(): number[] {
  let entries: string[];
  try {
    entries = readdirSync(LOCK_DIR);
  } catch {
    return [];
  }
  const swept: number[] = [];
  for (const entry of entries) {
    const match = /^(\d+)\.lock$/.exec(entry);
    if (!match) continue;
    const slot = Number(match[1]);
    const path = join(LOCK_DIR, entry);
    const aside = moveAsideIfStale(path, 'sweep');
    if (aside === null) continue;
    // Hold the slot while sweeping so nobody builds on it meanwhile.
    if (!tryCreateLock(slot)) {
      try {
        unlinkSync(aside);
      } catch {
        // Gone.
      }
      continue;
    }
    try {
      unlinkSync(aside);
    } catch {
      // Gone.
    }
    removeLeftovers(slot);
    releaseSlot(slot);
    swept.push(slot);
  }
  return swept;
}
