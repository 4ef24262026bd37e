// The client workload both fault harnesses run (the network-lab nemesis and the simulator): random
// puts, gets and deletes of a few keys at random nodes, each session carrying the causal metadata it
// last received, every operation recorded for the checker. What differs between the harnesses (the
// transport, the clock) comes in through WorkloadIO, so both judge and record answers the same way.

import { CAUSAL_ERROR, classifyReply } from './classify.ts';
import type { HistoryRecorder } from './history.ts';
import type { OpKind, Outcome } from './operation.ts';

/** Causal 503s in a row after which a client gives its session up and starts a new one. */
export const STUCK_SESSION_503S = 15;

export interface WorkloadIO {
  now(): number;
  pause(ms: number): Promise<void>;
  /** One request; rejects when the transport failed (no answer). */
  send(method: 'GET' | 'PUT' | 'DELETE', node: string, path: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> | undefined }>;
  /** The transport failure proves the request never left. */
  neverSent(error: unknown): boolean;
}

/** The few draws the workload makes (harness/lab/prng.ts fits). */
export interface WorkloadRandom {
  next(): number;
  int(n: number): number;
  pick<T>(items: readonly T[]): T;
}

export interface WorkloadRun {
  /** The nodes to pick from, asked before each operation. */
  nodes: () => string[];
  keys: number;
  /** Asked before each operation; the client stops when it says no. */
  keepGoing: () => boolean;
  /** Think time after each operation, uniform in [0, thinkMsMax). */
  thinkMsMax: number;
  /** Failed requests counted by "status error" or transport error code, when given. */
  errors?: Map<string, number>;
}

export class WorkloadClient {
  readonly id: number;
  readonly #random: WorkloadRandom;
  readonly #recorder: HistoryRecorder;
  readonly #io: WorkloadIO;
  /** Sessions given up because they stayed unsatisfiable (see STUCK_SESSION_503S). */
  abandoned = 0;

  constructor(id: number, random: WorkloadRandom, recorder: HistoryRecorder, io: WorkloadIO) {
    this.id = id;
    this.#random = random;
    this.#recorder = recorder;
    this.#io = io;
  }

  async run(run: WorkloadRun): Promise<void> {
    const io = this.#io;
    const random = this.#random;
    const count = (what: string): void => {
      run.errors?.set(what, (run.errors.get(what) ?? 0) + 1);
    };
    let name = `c${this.id}`;
    let metadata: unknown = null;
    let stuck = 0;
    let generation = 0;
    while (run.keepGoing()) {
      // A session whose metadata no reachable replica can satisfy (it depends on writes that a
      // killed node took with it, or that sit behind a partition) gets 503 for ever; after a while
      // the client gives it up and starts a new one, as a user would, so the load goes on.
      if (stuck >= STUCK_SESSION_503S) {
        name = `c${this.id}.${++generation}`;
        metadata = null;
        stuck = 0;
        this.abandoned++;
      }
      const node = random.pick(run.nodes());
      const key = `k${random.int(run.keys)}`;
      const roll = random.next();
      const kind: OpKind = roll < 0.5 ? 'put' : roll < 0.9 ? 'get' : 'delete';
      const value = kind === 'put' ? this.#recorder.uniqueValue(name) : undefined;
      const op = this.#recorder.begin({ client: name, node, kind, key, value, startMs: io.now() });
      const body: Record<string, unknown> = { 'causal-metadata': metadata };
      if (kind === 'put') body.value = value;
      const method = kind === 'put' ? 'PUT' : kind === 'get' ? 'GET' : 'DELETE';
      let reply: Awaited<ReturnType<WorkloadIO['send']>>;
      try {
        reply = await io.send(method, node, `/kvs/${encodeURIComponent(key)}`, body);
      } catch (error) {
        // A read that got nothing changed nothing either: fail. A write may or may not have happened.
        const outcome: Outcome = io.neverSent(error) || kind === 'get' ? 'fail' : 'unknown';
        this.#recorder.end(op, { endMs: io.now(), outcome });
        const rawCode = (error as { code?: unknown }).code;
        count(typeof rawCode === 'string' ? rawCode : (error as Error).name);
        continue;
      }
      const judged = classifyReply(kind, reply.status, reply.body);
      stuck = reply.status === 503 && reply.body?.error === CAUSAL_ERROR ? stuck + 1 : 0;
      const returned = reply.body?.['causal-metadata'];
      if (judged.outcome === 'ok' && returned !== undefined && returned !== null) metadata = returned;
      // The metadata is kept for the evidence of a failed run; the checker ignores it.
      this.#recorder.end(op, { endMs: io.now(), status: reply.status, ...judged, metadata: returned ?? undefined });
      if (judged.outcome !== 'ok') count(`${reply.status} ${typeof reply.body?.error === 'string' ? reply.body.error : ''}`.trim());
      await io.pause(random.int(run.thinkMsMax));
    }
  }
}
