// What the store's status endpoints answer, as the client types them: GET /status, GET
// /status/store and GET /shard/reshard-plan/N (re-exported by client.ts).

import type { NodeAddress, ShardId } from './client.ts';

/** GET /status (not in the public spec: our own endpoint; fields beyond these pass through). */
export type NodeStatus = {
  address: NodeAddress;
  ready: boolean;
  /** The store's version the node runs. */
  version: string;
  /** The node's process id on its machine. */
  pid: number;
  shard: ShardId | null;
  view: NodeAddress[];
  [field: string]: unknown;
};

/** One node's row of GET /status/store; what only the node itself can tell is null when it is down. */
export type StoreNodeStatus = {
  address: NodeAddress;
  shard: ShardId | null;
  state: 'up' | 'probation' | 'down' | 'not ready';
  keys: number | null;
  replicationBacklog: { versions: number; bytes: number } | null;
  hintBacklog: { versions: number; bytes: number } | null;
  secondsSinceInSync: number | null;
  requests: { total: number; errors: number; latencyMsSum: number } | null;
  uptimeSeconds: number | null;
  /** Its replica's tombstones and their collection (as its GET /status says); null when it does not answer. */
  tombstones: StoreNodeTombstones | null;
};

/** A node's tombstones: how many, the oldest's age, the members collection waits for or goes on without, a stale replica. */
export type StoreNodeTombstones = {
  held: number;
  oldestAgeSeconds: number | null;
  oldestAgeAtLeast: boolean;
  blockedBy: NodeAddress[];
  collectingWithout: NodeAddress[];
  stale: { forSeconds: number; peer: NodeAddress | null; handedOff: boolean } | null;
};

/** A reshard running, as its coordinator reports it. */
export type ReshardProgress = {
  epoch: number;
  shardCount: number;
  phase: 'prepare' | 'send' | 'commit';
  coordinator: NodeAddress;
  partitionsMoved: number;
  partitionsTotal: number;
  keysMoved: number | null;
  keysTotal: number | null;
  seconds: number;
};

/** GET /status/store: the whole store as the answering node sees it. */
export type StoreStatus = {
  answeredBy: NodeAddress;
  epoch: number;
  mode: 'replicated' | 'sharded';
  shards: { id: ShardId; members: NodeAddress[]; keys: number | null }[];
  nodes: StoreNodeStatus[];
  reshard: ReshardProgress | null;
};

/** GET /shard/reshard-plan/N: the shards before and after, and what would move. */
export type ReshardPlan = {
  epoch: number;
  shardCount: number;
  noop: boolean;
  before: { id: ShardId; members: NodeAddress[]; keys: number | null }[];
  after: { id: ShardId; members: NodeAddress[]; keys: number | null }[];
  partitionsMoving: number;
  keysMoving: number | null;
  moving: { shard: ShardId; partitions: number; keys: number | null }[];
};
