import type { NodeCore } from '../core/node-core.ts';
import type { CoreStep } from './core-loop.ts';
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
/** The core as the runtime's concerns see it: its questions; every input goes through `NodeContext.step`. */
export type CoreReader = Omit<NodeCore, 'step'>;

export interface NodeContext {
  readonly config: NodeConfig;
  readonly core: CoreReader;
  /**
   * Every input to the core, through the one loop (core-loop.ts): what the core says changed is
   * staged for the disk and the parked requests it lets go on are released before this returns.
   */
  readonly step: CoreStep;
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
  /** True once the node is closing: loops and waits stop. */
  isClosed(): boolean;
}
