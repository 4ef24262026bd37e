// The etcd comparison of bench/http.ts: a local 3-member etcd cluster on loopback (etcd fsyncs every
// write by default, so it compares with the durable store), measured through its v3 JSON gRPC
// gateway (POST /v3/kv/range and /v3/kv/put, keys and values in base64) with bench/http/etcd.lua.
// This file starts the members, waits until each says healthy, writes the keys first, and stops
// them (SIGTERM, then SIGKILL after a grace), removing their data directories (a fresh temporary
// folder per cluster). Needs an `etcd` binary on PATH (Debian: apt-get install -y etcd-server, 3.4).

import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';

/** The wrk script for etcd's gateway (same arguments and result line as kvs.lua). */
export const etcdWrkScript = join(import.meta.dirname, 'etcd.lua');
export const etcdInstallHint = 'apt-get install -y etcd-server';

/** Between two rounds of GET /health while waiting for the members. */
const healthPollIntervalMs = 200;
/** Bound on one GET /health. */
const healthTimeoutMs = 1_000;
/** A member gets this long to exit after SIGTERM before it is killed. */
const stopGraceMs = 5_000;
/** After SIGKILL the kernel ends the process at once; this only bounds waiting for the event. */
const killWaitMs = 2_000;
/** Lines of a member's output kept to say why it exited. */
const keptLines = 8;

/** `etcd --version`'s first line ("etcd Version: 3.4.23"), or undefined when etcd cannot be run. */
export function etcdVersion(): string | undefined {
  const probe = spawnSync('etcd', ['--version'], { encoding: 'utf8', timeout: 10_000 });
  if (probe.error !== undefined || probe.status !== 0) return undefined;
  return probe.stdout.split('\n')[0]?.trim() || 'etcd';
}

/** "3.4" of "etcd Version: 3.4.23" (the version line itself when it holds no number). */
export function etcdShortVersion(versionLine: string): string {
  return /(\d+\.\d+)\.\d+/.exec(versionLine)?.[1] ?? versionLine;
}

export type EtcdClusterOptions = {
  members: number;
  host: string;
  /** Member i serves clients at clientBasePort + i and its peers at peerBasePort + i. */
  clientBasePort: number;
  peerBasePort: number;
  /** etcd's --log-level: debug, info, warn, error, panic or fatal. */
  logLevel: string;
  /** A line a member wrote (not while the cluster is being stopped). */
  onLogLine: (name: string, line: string) => void;
  /** A member exited while the cluster was not being stopped. */
  onUnexpectedExit: (name: string, description: string) => void;
};

export type EtcdCluster = {
  /** host:port of each member's client URL, in order. */
  clientAddresses: string[];
  /** The temporary folder holding every member's data directory (removed by stop and kill). */
  dataRoot: string;
  /** Resolves once every member's GET /health says {"health":"true"}; rejects at the deadline or when a member exits first. */
  waitReady(timeoutMs: number): Promise<void>;
  /** SIGTERM to every member, SIGKILL to those that outlive the grace; then removes the data. */
  stop(): Promise<void>;
  /** SIGKILL to every member still running and removes the data, at once (a second Ctrl-C, exit). */
  kill(): void;
};

type Member = { name: string; child: ChildProcess; exit: Promise<string>; exited: boolean; lastLines: string[] };

export function etcdPorts(options: Pick<EtcdClusterOptions, 'members' | 'clientBasePort' | 'peerBasePort'>): number[] {
  return Array.from({ length: options.members }, (_, i) => [options.clientBasePort + i, options.peerBasePort + i]).flat();
}

export function startEtcdCluster(options: EtcdClusterOptions): EtcdCluster {
  const { host } = options;
  const names = Array.from({ length: options.members }, (_, i) => `etcd-${i}`);
  const clientAddresses = names.map((_, i) => `${host}:${options.clientBasePort + i}`);
  const peerUrls = names.map((_, i) => `http://${host}:${options.peerBasePort + i}`);
  const initialCluster = names.map((name, i) => `${name}=${peerUrls[i]}`).join(',');
  // A token of this run only: members of another cluster left on these ports do not join it.
  const token = `kvs-bench-${randomBytes(6).toString('hex')}`;
  const dataRoot = mkdtempSync(join(tmpdir(), 'kvs-bench-etcd-'));
  // ETCD_* variables would override or conflict with the flags below.
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('ETCD_')));
  let stopping = false;

  const members = names.map((name, i): Member => {
    const clientUrl = `http://${clientAddresses[i]}`;
    const args = [
      `--name=${name}`,
      `--data-dir=${join(dataRoot, name)}`,
      `--listen-client-urls=${clientUrl}`,
      `--advertise-client-urls=${clientUrl}`,
      `--listen-peer-urls=${peerUrls[i]}`,
      `--initial-advertise-peer-urls=${peerUrls[i]}`,
      `--initial-cluster=${initialCluster}`,
      '--initial-cluster-state=new',
      `--initial-cluster-token=${token}`,
      '--logger=zap',
      '--log-outputs=stderr',
      `--log-level=${options.logLevel}`,
    ];
    const child = spawn('etcd', args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const member: Member = { name, child, exited: false, lastLines: [], exit: Promise.resolve('') };
    member.exit = new Promise((resolve) => {
      child.once('error', (err) => {
        member.exited = true;
        resolve(`could not start: ${err.message}`);
      });
      child.once('exit', (code, signal) => {
        member.exited = true;
        resolve(signal === null ? `exited with code ${code}` : `killed by ${signal}`);
      });
    });
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
        member.lastLines.push(line);
        if (member.lastLines.length > keptLines) member.lastLines.shift();
        if (!stopping) options.onLogLine(name, line);
      });
    }
    void member.exit.then((description) => {
      if (!stopping) options.onUnexpectedExit(name, description);
    });
    return member;
  });

  function removeData(): void {
    rmSync(dataRoot, { recursive: true, force: true });
  }

  async function waitReady(timeoutMs: number): Promise<void> {
    const deadlineMs = performance.now() + timeoutMs;
    const waiting = new Set(members.map((_, i) => i));
    while (waiting.size > 0) {
      if (stopping) throw new Error('the etcd cluster is being stopped');
      const dead = members.find((member) => member.exited);
      if (dead !== undefined) {
        throw new Error(`etcd member ${dead.name} ${await dead.exit} before the cluster was healthy; its last lines:\n${dead.lastLines.join('\n')}`);
      }
      if (performance.now() > deadlineMs) {
        throw new Error(`etcd members not healthy after ${timeoutMs} ms: ${[...waiting].map((i) => `${names[i]} (${clientAddresses[i]})`).join(', ')}`);
      }
      await Promise.all(
        [...waiting].map(async (i) => {
          if (await healthy(`http://${clientAddresses[i]}`)) waiting.delete(i);
        }),
      );
      if (waiting.size > 0) await sleep(healthPollIntervalMs);
    }
  }

  async function stopOne(member: Member): Promise<void> {
    if (member.exited) return;
    member.child.kill('SIGTERM');
    if (await settlesWithin(member.exit, stopGraceMs)) return;
    member.child.kill('SIGKILL');
    await settlesWithin(member.exit, killWaitMs);
  }

  return {
    clientAddresses,
    dataRoot,
    waitReady,
    async stop() {
      stopping = true;
      await Promise.all(members.map(stopOne));
      removeData();
    },
    kill() {
      stopping = true;
      for (const member of members) if (!member.exited) member.child.kill('SIGKILL');
      removeData();
    },
  };
}

/** Whether GET <url>/health answers {"health":"true"} within healthTimeoutMs. */
async function healthy(url: string): Promise<boolean> {
  try {
    const response = await fetch(`${url}/health`, { signal: AbortSignal.timeout(healthTimeoutMs) });
    const body = (await response.json()) as { health?: unknown };
    return response.ok && body.health === 'true';
  } catch {
    return false;
  }
}

export function base64(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64');
}

/**
 * Writes key-0..key-(keys-1) with `value` through POST <url>/v3/kv/put, `concurrency` at a time;
 * counts failures by HTTP status, 'timeout' or 'exception'. Stops early once `stopped()` says so.
 */
export async function preloadEtcd(options: {
  url: string;
  keys: number;
  value: string;
  concurrency: number;
  timeoutMs: number;
  stopped: () => boolean;
}): Promise<{ seconds: number; errors: Record<string, number> }> {
  const startedMs = performance.now();
  const errors: Record<string, number> = {};
  const encodedValue = base64(options.value);
  let next = 0;
  await Promise.all(
    Array.from({ length: options.concurrency }, async () => {
      while (next < options.keys && !options.stopped()) {
        const body = JSON.stringify({ key: base64(`key-${next++}`), value: encodedValue });
        try {
          const response = await fetch(`${options.url}/v3/kv/put`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body,
            signal: AbortSignal.timeout(options.timeoutMs),
          });
          await response.arrayBuffer();
          if (!response.ok) errors[String(response.status)] = (errors[String(response.status)] ?? 0) + 1;
        } catch (err) {
          const label = err instanceof Error && err.name === 'TimeoutError' ? 'timeout' : 'exception';
          errors[label] = (errors[label] ?? 0) + 1;
        }
      }
    }),
  );
  return { seconds: (performance.now() - startedMs) / 1000, errors };
}

/** Whether `promise` settles within `ms` (the timer does not hold the process). */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
    timer.unref();
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
