import type { ExpireResult, WakeResult } from './waits.ts';
import type { CommitOutcome, KvDecision, KvRequest, KvWait, MapChange, ParkedDecision, Persist, PingInfo, Reply, SavedReplica } from './contract.ts';
import type { LinkChange } from './links.ts';
import type { ProbeOutcome } from './membership.ts';
import type { Holdings, PrepareOutcome, Transfer, TransferClaim } from './reshard-participant.ts';
import type { Clock, Epoch, EpochClocks, NodeAddress, ShardId, ShardMap, Version } from './types.ts';

// The core's one entry (NodeCore.step): every input that may change a node's protocol state goes
// in as one of these, with the time, and comes out as one Step. Questions that change nothing
// (the map, the view, the replica's counts) are asked of the core's read-only getters instead.

/** What happened to the link to a peer, as the runtime's transport and probes saw it (see Links). */
export type LinkEvent =
  | { type: 'probe-sent'; peer: NodeAddress }
  | { type: 'probe-answered'; peer: NodeAddress; sentTo: string | null; incarnation: string }
  | { type: 'failed'; peer: NodeAddress; sentTo: string | null }
  | { type: 'answered'; peer: NodeAddress }
  | { type: 'refused-by'; peer: NodeAddress; remainingMs: number | null }
  | { type: 'announced'; peer: NodeAddress; incarnation: string }
  | { type: 'check-late'; peer: NodeAddress }
  /** This node's own event loop stalled: no probe in flight is judged late. */
  | { type: 'forgive-probes' };

/** A peer's sync request, as decoded (see ReplicationCore.onSyncRequest). */
export interface SyncAsk {
  epoch: Epoch;
  shard: ShardId;
  since: Clock;
  full: boolean;
  base?: EpochClocks;
}

/** What one input returns, by kind (`Step.out`). */
export interface Outputs {
  // A client's request, and its parked life.
  kv: Exclude<KvDecision, KvWait> | ParkedDecision;
  expire: ExpireResult;
  close: { ticket: number; reply: Reply }[];
  // Operators' requests.
  'view-put': Reply;
  'view-delete': Reply;
  'add-member': Reply & { joined?: boolean };
  // Peer messages.
  replicate: { ok: true; applied: Clock } | { ok: false; reason: string };
  'sync-request': { ok: true; versions: Version[]; applied: Clock; lamport: number; base?: EpochClocks; collected: Clock } | { ok: false; reason: string };
  'digest-request': { ok: true; differing: number[]; versions: Version[]; more: boolean; collected: Clock } | { ok: false; reason: string };
  repair: number | null;
  'repair-pushed': undefined;
  map: MapChange;
  'reshard-prepare': PrepareOutcome;
  'reshard-transfer': boolean;
  'reshard-commit': CommitOutcome;
  'reshard-abort': undefined;
  // Outcomes of this node's own I/O.
  'sync-response': 'merged' | 'refused' | 'stale';
  'peer-horizon': boolean;
  'ping-answer': { learned: NodeAddress[]; fetchMap: boolean; pull: string | null };
  probe: ProbeOutcome;
  link: LinkChange;
  learn: boolean;
  'forget-peer': undefined;
  'reshard-transfers': Map<NodeAddress, Transfer> | null;
  'reshard-sent': undefined;
  // The node's own life.
  restore: boolean;
  'full-sync-begin': undefined;
  ready: undefined;
  'collect-tombstones': number;
  'drop-never-joined': { shard: ShardId; node: NodeAddress }[];
}

/** Everything that goes into the core. */
export type Input =
  | { kind: 'kv'; request: KvRequest }
  | { kind: 'expire'; ticket: number }
  | { kind: 'close' }
  | { kind: 'view-put'; node: NodeAddress }
  | { kind: 'view-delete'; node: NodeAddress; reason: 'down' | 'request' }
  | { kind: 'add-member'; shard: ShardId; node: NodeAddress }
  | { kind: 'replicate'; epoch: Epoch; shard: ShardId; versions: Version[] }
  | ({ kind: 'sync-request' } & SyncAsk)
  | { kind: 'digest-request'; epoch: Epoch; shard: ShardId; digests: readonly number[] }
  /** `from`: the peer that pushed them (anti-entropy), null or absent when not known. */
  | { kind: 'repair'; epoch: Epoch; shard: ShardId; versions: Version[]; reflected?: EpochClocks; from?: NodeAddress | null }
  /** Anti-entropy: `peer` acknowledged these versions we pushed it. */
  | { kind: 'repair-pushed'; epoch: Epoch; shard: ShardId; peer: NodeAddress; versions: readonly Version[] }
  /** `atStart`: heard by discovery, before this node serves or announces itself. */
  | { kind: 'map'; map: ShardMap; atStart?: boolean }
  | { kind: 'reshard-prepare'; map: ShardMap; coordinator: NodeAddress }
  | { kind: 'reshard-transfer'; epoch: Epoch; versions: Version[]; claim?: TransferClaim }
  | { kind: 'reshard-commit'; epoch: Epoch }
  | { kind: 'reshard-abort'; epoch: Epoch }
  /** `collected`: the peer's collection horizon; `full`: the answer to a full copy into a new replica. */
  | {
      kind: 'sync-response';
      epoch: Epoch;
      shard: ShardId;
      versions: Version[];
      applied: Clock;
      base?: EpochClocks;
      lamport: number;
      collected?: Clock;
      full?: boolean;
      peer?: NodeAddress;
    }
  /** A shard peer's collection horizon, from its answer to our anti-entropy digests (see onPeerHorizon). */
  | { kind: 'peer-horizon'; peer: NodeAddress; epoch: Epoch; shard: ShardId; collected: Clock }
  /** `linkUp`: whether data may cross the link to the peer now (the runtime asked just before). */
  | { kind: 'ping-answer'; peer: NodeAddress; info: PingInfo; linkUp: boolean }
  | { kind: 'probe'; peer: NodeAddress; answered: boolean }
  | { kind: 'link'; event: LinkEvent }
  | { kind: 'learn'; node: NodeAddress }
  | { kind: 'forget-peer'; peer: NodeAddress }
  /** `holdings`: the prepared nodes' prepare answers, by node (see leftOut in reshard-participant.ts). */
  | { kind: 'reshard-transfers'; epoch: Epoch; targets: ReadonlySet<NodeAddress>; holdings?: Holdings }
  | { kind: 'reshard-sent'; epoch: Epoch }
  /** At start: what the disk gave back (the map is already merged into the core's). */
  | { kind: 'restore'; map: ShardMap | null; replica: SavedReplica | null }
  | { kind: 'full-sync-begin' }
  | { kind: 'ready' }
  | { kind: 'collect-tombstones'; peerApplied?: ReadonlyMap<NodeAddress, Clock> }
  /** Drops members that never joined (see NodeCore.dropNeverJoined); the runtime asks every ping interval. */
  | { kind: 'drop-never-joined' };

export type InputKind = Input['kind'];

/**
 * What the core hands back for one input. The fields are in the order the runtime carries them
 * out, and it keeps that order in one place (src/node/core-loop.ts):
 *
 * 1. `persist`: staged for the disk before anything else; whatever below acknowledges a write
 *    waits until the staged state is durable (Storage.flush) before it sends or replies.
 * 2. `wake`: parked requests this step lets go on (their decisions made in this step, their writes
 *    in `persist`), and what the ones still parked lack; null when nothing changed that could
 *    release one.
 * 3. `out`: the input's own outcome: a reply, what to send to whom (a write's `replicate`, a
 *    reshard's transfers), or a timer to set (a parked request's `deadlineMs`).
 */
export interface Step<Out> {
  persist: Persist | null;
  wake: WakeResult | null;
  out: Out;
}

export type StepOf<I extends Input> = Step<Outputs[I['kind']]>;
