// What the runtime takes from the world: time, timers and requests to peers. A real node gets the
// process's clock and HTTP (the defaults); the simulator (harness/sim) gives each node a simulated
// clock and network driven by one seed, and so runs this same runtime and core, unmodified.

import type { NodeAddress } from '../core/types.ts';
import type { PlantedBug } from '../core/planted-bugs.ts';
import type { PeerReply } from './peer-client.ts';
import type { SavedState, Storage } from './storage.ts';
import type { TlsMaterial } from './tls.ts';

/** Opaque handle of a scheduled callback. */
export type TimerHandle = unknown;

export interface Timers {
  /** Milliseconds since some fixed point; used for waits, deadlines and hold-downs. */
  now(): number;
  setTimeout(callback: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
  setInterval(callback: () => void, ms: number): TimerHandle;
  clearInterval(handle: TimerHandle): void;
}

export const realTimers: Timers = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
  setInterval: (callback, ms) => setInterval(callback, ms),
  clearInterval: (handle) => clearInterval(handle as NodeJS.Timeout),
};

export type PeerMethod = 'GET' | 'PUT' | 'POST' | 'DELETE';

/**
 * A request body already serialised: sent as it is. What goes to several peers (a replicated
 * write) is serialised once, not once per peer.
 */
export class JsonText {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
}

export interface PeerCallOptions {
  timeoutMs?: number;
  headers?: Record<string, string>;
  /**
   * `control` (pings, down reports, maps, announcements) travels on connections of its own, so it
   * never waits behind replication, syncs or forwarded requests: a busy peer is not taken for a
   * dead one. Default `data`.
   */
  lane?: 'control' | 'data';
  /**
   * Give the answer's text as received (`PeerReply.text`), parsing it only for a 503: for a caller
   * that relays the answer as it is (forwarding). A transport without the bytes (the simulator's)
   * may ignore it and give the parsed body alone.
   */
  rawReply?: boolean;
  /**
   * For an answer of one line per result (POST /internal/kv-batch): called with each line of a 200
   * answer as it arrives, without its line break; the reply's `text` then holds only what no whole
   * line took. A transport that has the answer only at its end (the simulator's) may ignore it and
   * give every line in the reply's text.
   */
  onLine?: (line: string) => void;
}

/**
 * Requests to other nodes. `call` resolves with the peer's answer, or rejects with
 * PeerUnreachableError (no answer in time; `maybeDelivered` false only when it never left).
 */
export interface PeerTransport {
  call(
    peer: NodeAddress,
    method: PeerMethod,
    path: string,
    body: unknown,
    options?: PeerCallOptions,
  ): Promise<PeerReply>;
  close(): Promise<void>;
}

/** Sleeps on the given timers. */
export function sleep(timers: Timers, ms: number): Promise<void> {
  return new Promise((resolve) => timers.setTimeout(resolve, ms));
}

/**
 * What a node takes from outside instead of the process's own (every field defaults to the real
 * thing). The simulator passes its clock, network and disk here.
 */
export interface NodeEnv {
  timers?: Timers;
  transport?: PeerTransport;
  /** Storage already opened, with what it held. */
  storage?: { storage: Storage; saved: SavedState };
  /** Test-only: known bugs planted in the core, for the simulator to catch. Never set in production. */
  plantedBugs?: ReadonlySet<PlantedBug>;
  /** This process's incarnation (default: random); the simulator makes it deterministic. */
  incarnation?: string;
  /** TLS_CERT, TLS_KEY, TLS_CA as read (`loadTls`): serve HTTPS, and speak mutual TLS to peers. Absent: plain HTTP. */
  tls?: TlsMaterial;
  /**
   * Runs a callback once the current turn's I/O is done (default setImmediate): what forwarding
   * gathers into one batch, and when a batch's answered lines are written. The simulator, whose
   * turns are its own, passes queueMicrotask.
   */
  soon?: (callback: () => void) => void;
}
