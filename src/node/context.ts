import type { NodeCore } from '../core/node-core.ts';
import type { Background, LogLimiter } from './background.ts';
import type { NodeConfig } from './config.ts';
import type { PeerTransport, Timers } from './env.ts';
import type { Logger } from './logger.ts';
import type { PeerAuth } from './peer-auth.ts';
import type { Replicator } from './replicator.ts';
import type { Storage } from './storage.ts';

/**
 * What every concern of the runtime shares, built once by the composition root (node.ts). Each
 * concern keeps its own state; what it needs of another concern it gets by a reference the root
 * wires, not from here.
 */
export interface NodeContext {
  readonly config: NodeConfig;
  readonly core: NodeCore;
  /** Names this process among all the runs of this node: peers tell a restart from a reconnection by it. */
  readonly incarnation: string;
  /** Signs and checks requests between nodes, and causal metadata, when CLUSTER_SECRET is set. */
  readonly auth: PeerAuth | null;
  readonly log: Logger;
  /** Requests to peers, through the link table. */
  readonly peers: PeerTransport;
  readonly timers: Timers;
  readonly storage: Storage;
  readonly replicator: Replicator;
  readonly background: Background;
  /** Rate limit of the log lines about refused requests (one per reason per interval). */
  readonly refusals: LogLimiter;
  /** When this process started (on `timers`). */
  readonly startedMs: number;
  /**
   * Every change of protocol state goes through here: stage it for the disk (a replaced replica
   * starts over there), then wake the requests waiting for a change.
   */
  stateChanged(): void;
  /** Waits until the state changes (or the node closes), at most `timeoutMs`. */
  waitForChange(timeoutMs: number): Promise<void>;
  /** True once the node is closing: loops and waits stop. */
  isClosed(): boolean;
}
