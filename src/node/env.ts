// What the runtime takes from the world: time, timers and requests to peers. A real node gets the
// process's clock and HTTP (the defaults); the simulator (harness/sim) gives each node a simulated
// clock and network driven by one seed, and so runs this same runtime and core, unmodified.

import type { NodeAddress } from '../core/types.ts';
import type { PeerReply } from './peer-client.ts';

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
