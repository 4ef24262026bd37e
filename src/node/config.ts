import { GRAVEYARD_MAX } from '../core/replica.ts';
import { MEMBER_JOIN_GRACE_MS_DEFAULT } from '../core/contract.ts';
import { TOMBSTONE_GRACE_MS_DEFAULT } from '../core/tombstone-grace.ts';
import { isIP } from 'node:net';
import { FORWARD_BATCH_ITEMS_MAX } from './limits.ts';
import { addressFault, asNodeAddress } from '../core/address.ts';
import type { NodeAddress } from '../core/types.ts';

/** Every knob of a node. Defaults are chosen for the spec's timing promises (5 s detection, 5 s rejoin). */
export interface NodeConfig {
  /** SOCKET_ADDRESS: how peers reach this node. */
  address: NodeAddress;
  /** VIEW: the nodes the store starts with, this one included. */
  view: NodeAddress[];
  /** SHARD_COUNT: given only to the nodes that start a sharded store; null otherwise. */
  shardCount: number | null;
  /** LISTEN_HOST: interface to listen on (default all). */
  listenHost: string;
  /** PORT: port to listen on (default: the port of SOCKET_ADDRESS). */
  port: number;
  /** CAUSAL_WAIT_MS: how long a request whose causal dependencies are missing waits before the 503. */
  causalWaitMs: number;
  /**
   * HOLD_DOWN_MS: after a link to a peer fails (a probe or request unanswered, a probe late), no
   * data crosses it until it has answered every probe this long; a node removed as down is
   * admitted again after the same.
   */
  holdDownMs: number;
  /** PROBE_LATE_MS: a probe unanswered this long (or answered later) is a failure of the link. */
  probeLateMs: number;
  /** PING_INTERVAL_MS: how often each peer (and each node on probation) is probed. */
  pingIntervalMs: number;
  /** PING_TIMEOUT_MS: a probe not answered in this time counts as failed. */
  pingTimeoutMs: number;
  /** Failed probes or sends in a row that remove a node from the view. */
  failuresToRemove: number;
  /** CONNECT_TIMEOUT_MS: TCP connect timeout to peers; short, so a dead host is noticed fast. */
  connectTimeoutMs: number;
  /** REQUEST_TIMEOUT_MS: bound on any request to a peer (forwarding, sync, transfer). */
  requestTimeoutMs: number;
  /** MAX_BODY_BYTES: larger request bodies are refused with 413. */
  maxBodyBytes: number;
  /** CLIENT_REQUESTS_MAX: client requests (any route but /internal/) in flight at once; beyond, 503 at once. */
  clientRequestsMax: number;
  /** CLIENT_BYTES_MAX: bytes of client request bodies in flight at once; beyond, 503 at once. */
  clientBytesMax: number;
  /** FORWARD_BATCH_MAX: forwarded requests to one member sent in one request at most (1: each on its own). */
  forwardBatchMax: number;
  /** Replication: versions per batch sent to one peer, and versions queued per peer before dropping (sync repairs). */
  replicationBatchMax: number;
  replicationQueueMax: number;
  /** REPLICATION_QUEUE_BYTES_MAX: bytes of versions queued (or held as hints) per peer; beyond, the oldest are dropped. */
  replicationQueueBytesMax: number;
  /** Early replicated writes buffered per replica until their causal past arrives. */
  pendingMax: number;
  /** PENDING_BYTES_MAX: bytes of early replicated writes buffered per replica. */
  pendingBytesMax: number;
  /**
   * PEER_SOURCE_IPS: IPs besides the nodes' own from which node-to-node headers (x-kvs-*) are
   * honoured: proxies or NAT between nodes.
   */
  peerSourceIps: string[];
  /** RESHARD_TIMEOUT_MS: a prepared reshard not committed in this time is abandoned, and writes resume. */
  reshardTimeoutMs: number;
  /** STARTUP_WAIT_MS: at start, how long to look for peers that already hold a shard map. */
  startupWaitMs: number;
  /** LOG_LEVEL: one of LOG_LEVELS. */
  logLevel: LogLevel;
  /** LOG_FORMAT: `json` (one object per line, for machines; the default) or `pretty` (for people). */
  logFormat: LogFormat;
  /** ANTI_ENTROPY_INTERVAL_MS: how often this node compares partition digests with one shard peer (0: never). */
  antiEntropyIntervalMs: number;
  /**
   * TOMBSTONE_GRACE_MS: how long a member of this node's shard may go unheard of before tombstones
   * are collected without it; a member left out copies its shard afresh when it is back.
   */
  tombstoneGraceMs: number;
  /**
   * MEMBER_JOIN_GRACE_MS: how long a shard member this node has never heard from (and no peer names)
   * may be out of the view before it is dropped from its shard. It joins again if it comes up.
   */
  memberJoinGraceMs: number;
  /** GRAVEYARD_MAX: collected tombstones a replica remembers, to refuse late versions of deleted keys. */
  graveyardMax: number;
  /** DATA_DIR: where the node persists what it acknowledges; null keeps everything in memory. */
  dataDir: string | null;
  /**
   * CLUSTER_SECRET: comma-separated secrets shared by the nodes. Requests between nodes are signed
   * with the first and accepted with any (so a rolling restart can rotate them); causal metadata is
   * signed the same way. Empty: peer routes are open to the nodes' own addresses only.
   */
  clusterSecrets: string[];
  /** ADMIN_TOKEN: when set, clients' topology changes (view, add-member, reshard) need `Authorization: Bearer <token>`. */
  adminToken: string | null;
  /** TLS_CERT, TLS_KEY, TLS_CA: PEM files; all three or none. With them, clients and peers speak HTTPS and peers verify each other against the CA. */
  tls: { certFile: string; keyFile: string; caFile: string } | null;
}

/** What LOG_LEVEL may be, most verbose first; `silent` logs nothing. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** A secret shorter than this is refused: it could be guessed. */
export const SECRET_LENGTH_MIN = 16;

export const DEFAULTS = {
  listenHost: '0.0.0.0',
  port: 8090,
  causalWaitMs: 1000,
  holdDownMs: 5000,
  probeLateMs: 500,
  pingIntervalMs: 500,
  pingTimeoutMs: 1000,
  failuresToRemove: 2,
  connectTimeoutMs: 500,
  requestTimeoutMs: 5000,
  maxBodyBytes: 2 * 1024 * 1024,
  clientRequestsMax: 256,
  clientBytesMax: 16 * 1024 * 1024,
  replicationQueueBytesMax: 64 * 1024 * 1024,
  pendingBytesMax: 64 * 1024 * 1024,
  replicationBatchMax: 512,
  forwardBatchMax: 32,
  replicationQueueMax: 20_000,
  pendingMax: 20_000,
  reshardTimeoutMs: 30_000,
  startupWaitMs: 2000,
  antiEntropyIntervalMs: 5000,
  tombstoneGraceMs: TOMBSTONE_GRACE_MS_DEFAULT,
  graveyardMax: GRAVEYARD_MAX,
  memberJoinGraceMs: MEMBER_JOIN_GRACE_MS_DEFAULT,
  logLevel: 'info',
  logFormat: 'json',
} as const;

export class ConfigError extends Error {}

type Env = Record<string, string | undefined>;

/** Reads a node's configuration from environment variables (the deployment contract). */
export function loadConfig(env: Env): NodeConfig {
  const address = env.SOCKET_ADDRESS?.trim();
  const fault = addressFault(address);
  if (!address || fault !== null) {
    throw new ConfigError(`SOCKET_ADDRESS must be host:port (such as 10.10.0.2:8090 or kvs-0.kvs:8090), got ${JSON.stringify(env.SOCKET_ADDRESS ?? null)}: ${fault ?? 'it is empty'}`);
  }
  const view = (env.VIEW ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  for (const node of view) {
    const entryFault = addressFault(node);
    if (entryFault !== null) throw new ConfigError(`VIEW entry ${JSON.stringify(node)} is not host:port (such as 10.10.0.3:8090 or kvs-1.kvs:8090): ${entryFault}`);
  }
  if (!view.includes(address)) view.push(address);
  const shardCountText = env.SHARD_COUNT?.trim();
  let shardCount: number | null = null;
  if (shardCountText) {
    shardCount = Number(shardCountText);
    if (!Number.isSafeInteger(shardCount) || shardCount < 1) {
      throw new ConfigError(`SHARD_COUNT must be a positive integer, got ${JSON.stringify(shardCountText)}`);
    }
    // The reshard's own rule: every shard of more than one needs two nodes for fault tolerance.
    if (shardCount > 1 && 2 * shardCount > view.length) {
      throw new ConfigError(
        `SHARD_COUNT=${shardCount} needs at least ${2 * shardCount} nodes in VIEW (2 per shard), and VIEW has ${view.length}; ` +
          `use SHARD_COUNT=${Math.max(1, Math.floor(view.length / 2))} or add nodes to VIEW`,
      );
    }
  }
  const peerSourceIps = (env.PEER_SOURCE_IPS ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  for (const ip of peerSourceIps) {
    if (isIP(ip) === 0) throw new ConfigError(`PEER_SOURCE_IPS entry ${JSON.stringify(ip)} is not an IP address`);
  }
  const ownPort = Number(address.slice(address.lastIndexOf(':') + 1));
  const maxBodyBytes = int(env, 'MAX_BODY_BYTES', DEFAULTS.maxBodyBytes);
  const clientBytesMax = positive(env, 'CLIENT_BYTES_MAX', DEFAULTS.clientBytesMax);
  if (clientBytesMax < maxBodyBytes) {
    // One body of the largest size would then be refused for ever.
    throw new ConfigError(`CLIENT_BYTES_MAX (${clientBytesMax}) must be at least MAX_BODY_BYTES (${maxBodyBytes})`);
  }
  // Both checked above (addressFault).
  return {
    address: asNodeAddress(address),
    view: view.map(asNodeAddress),
    shardCount,
    listenHost: env.LISTEN_HOST?.trim() || DEFAULTS.listenHost,
    port: int(env, 'PORT', ownPort || DEFAULTS.port),
    causalWaitMs: int(env, 'CAUSAL_WAIT_MS', DEFAULTS.causalWaitMs),
    holdDownMs: int(env, 'HOLD_DOWN_MS', DEFAULTS.holdDownMs),
    probeLateMs: positive(env, 'PROBE_LATE_MS', DEFAULTS.probeLateMs),
    pingIntervalMs: int(env, 'PING_INTERVAL_MS', DEFAULTS.pingIntervalMs),
    pingTimeoutMs: int(env, 'PING_TIMEOUT_MS', DEFAULTS.pingTimeoutMs),
    failuresToRemove: int(env, 'FAILURES_TO_REMOVE', DEFAULTS.failuresToRemove),
    connectTimeoutMs: int(env, 'CONNECT_TIMEOUT_MS', DEFAULTS.connectTimeoutMs),
    requestTimeoutMs: int(env, 'REQUEST_TIMEOUT_MS', DEFAULTS.requestTimeoutMs),
    maxBodyBytes,
    clientRequestsMax: positive(env, 'CLIENT_REQUESTS_MAX', DEFAULTS.clientRequestsMax),
    clientBytesMax,
    replicationQueueBytesMax: positive(env, 'REPLICATION_QUEUE_BYTES_MAX', DEFAULTS.replicationQueueBytesMax),
    pendingBytesMax: positive(env, 'PENDING_BYTES_MAX', DEFAULTS.pendingBytesMax),
    peerSourceIps,
    replicationBatchMax: int(env, 'REPLICATION_BATCH_MAX', DEFAULTS.replicationBatchMax),
    forwardBatchMax: forwardBatchMax(env),
    replicationQueueMax: int(env, 'REPLICATION_QUEUE_MAX', DEFAULTS.replicationQueueMax),
    pendingMax: int(env, 'PENDING_MAX', DEFAULTS.pendingMax),
    reshardTimeoutMs: int(env, 'RESHARD_TIMEOUT_MS', DEFAULTS.reshardTimeoutMs),
    startupWaitMs: int(env, 'STARTUP_WAIT_MS', DEFAULTS.startupWaitMs),
    logLevel: oneOf(env, 'LOG_LEVEL', LOG_LEVELS, DEFAULTS.logLevel),
    logFormat: oneOf(env, 'LOG_FORMAT', LOG_FORMATS, DEFAULTS.logFormat),
    antiEntropyIntervalMs: int(env, 'ANTI_ENTROPY_INTERVAL_MS', DEFAULTS.antiEntropyIntervalMs),
    tombstoneGraceMs: positive(env, 'TOMBSTONE_GRACE_MS', DEFAULTS.tombstoneGraceMs),
    graveyardMax: int(env, 'GRAVEYARD_MAX', DEFAULTS.graveyardMax),
    memberJoinGraceMs: positive(env, 'MEMBER_JOIN_GRACE_MS', DEFAULTS.memberJoinGraceMs),
    dataDir: env.DATA_DIR?.trim() || null,
    clusterSecrets: secrets(env.CLUSTER_SECRET),
    adminToken: token(env.ADMIN_TOKEN),
    tls: tlsFiles(env),
  };
}

function forwardBatchMax(env: Env): number {
  const value = positive(env, 'FORWARD_BATCH_MAX', DEFAULTS.forwardBatchMax);
  if (value > FORWARD_BATCH_ITEMS_MAX) throw new ConfigError(`FORWARD_BATCH_MAX must be from 1 to ${FORWARD_BATCH_ITEMS_MAX}, got ${value}`);
  return value;
}

function secrets(text: string | undefined): string[] {
  const list = (text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  for (const secret of list) {
    if (secret.length < SECRET_LENGTH_MIN) {
      throw new ConfigError(`CLUSTER_SECRET: each secret must be at least ${SECRET_LENGTH_MIN} characters (one has ${secret.length}); generate one with: openssl rand -hex 32`);
    }
  }
  return list;
}

function token(text: string | undefined): string | null {
  const value = text?.trim() ?? '';
  if (value === '') return null;
  if (value.length < SECRET_LENGTH_MIN || !/^[\x21-\x7e]+$/.test(value)) {
    throw new ConfigError(`ADMIN_TOKEN must be at least ${SECRET_LENGTH_MIN} printable characters without spaces; generate one with: openssl rand -hex 32`);
  }
  return value;
}

function tlsFiles(env: Env): NodeConfig['tls'] {
  const certFile = env.TLS_CERT?.trim() || '';
  const keyFile = env.TLS_KEY?.trim() || '';
  const caFile = env.TLS_CA?.trim() || '';
  const given = [certFile, keyFile, caFile].filter((f) => f !== '').length;
  if (given === 0) return null;
  if (given < 3) throw new ConfigError('TLS_CERT, TLS_KEY and TLS_CA go together: give all three PEM files, or none for plain HTTP');
  return { certFile, keyFile, caFile };
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const text = env[name]?.trim().toLowerCase();
  if (!text) return fallback;
  const found = allowed.find((value) => value === text);
  if (found === undefined) throw new ConfigError(`${name} must be one of ${allowed.join(', ')}; got ${JSON.stringify(env[name])}`);
  return found;
}

function positive(env: Env, name: string, fallback: number): number {
  const value = int(env, name, fallback);
  if (value === 0) throw new ConfigError(`${name} must be a positive integer, got 0`);
  return value;
}

function int(env: Env, name: string, fallback: number): number {
  const text = env[name]?.trim();
  if (!text) return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) throw new ConfigError(`${name} must be a non-negative integer, got ${JSON.stringify(text)}`);
  return value;
}
