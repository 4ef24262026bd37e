import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Server } from 'node:http';
import { isNodeAddress } from '../core/address.ts';
import { MESSAGES } from '../core/api-messages.ts';
import { counterOf } from '../core/vector-clock.ts';
import { NodeCore, type KvMethod, type Orphaned, type PingInfo, type WaitReason } from '../core/node-core.ts';
import type { LinkChange } from '../core/links.ts';
import type { PlantedBug } from '../core/planted-bugs.ts';
import type { Replica } from '../core/replica.ts';
import { VALUE_DEPTH_MAX, versionBytes } from '../core/json-value.ts';
import { initialShardMap, mapDigest, membersOf, mergeShardMaps, shardIds, shardOfKey, shardOfNode } from '../core/shard-map.ts';
import type { Clock, Epoch, NodeAddress, ShardId, ShardMap, Version } from '../core/types.ts';
import type { NodeConfig } from './config.ts';
import { realTimers, sleep, type PeerTransport, type TimerHandle, type Timers } from './env.ts';
import { Background, LogLimiter } from './background.ts';
import { readLoopDelay } from './loop-delay.ts';
import { startHttpServer, type HttpReply, type HttpRequest, type RequestClass } from './http-server.ts';
import type { Logger } from './logger.ts';
import { FROM_HEADER, INCARNATION_HEADER, isIncarnation, LinkTransport, linkHeldReply } from './link-transport.ts';
import { AUTH_HEADER, PeerAuth, sealMetadata, unsealMetadata } from './peer-auth.ts';
import { PeerClient, PeerUnreachableError } from './peer-client.ts';
import { Replicator } from './replicator.ts';
import { StallWatch } from './stall-watch.ts';
import { StateSignal } from './state-signal.ts';
import type { TlsMaterial } from './tls.ts';
import { MemoryStorage, SqliteStorage, type SavedState, type Storage } from './storage.ts';
import { isClock, isEpochClocks, isPartitionDigests, isPartitionList, isShardMap, isTransferClaim, isVersionList } from './wire.ts';

/** A forwarded request is relayed at most this many times, so maps that disagree cannot loop it. */
const FORWARD_HOPS_MAX = 3;
const HOPS_HEADER = 'x-kvs-hops';
/**
 * Wall-clock time (ms) after which the node that forwarded a write has given up on it. A copy that
 * the network delivers later (a partition held it) is refused, not applied behind the client's back.
 * Nodes' clocks must agree to well within REQUEST_TIMEOUT_MS.
 */
const DEADLINE_HEADER = 'x-kvs-deadline';
/** Set on DELETE /view when a node reports a peer down (the receiver checks before it removes). */
const DOWN_REPORT_HEADER = 'x-kvs-down-report';
/**
 * How long a write waits for a reshard in progress to commit before its 503. Below the peers'
 * request timeout, so a node forwarding such a write gets the 503 instead of suspecting its peer.
 */
const RESHARD_WAIT_MS = 4000;
/** Bytes of versions per reshard-transfer request. */
const TRANSFER_BYTES_MAX = 1024 * 1024;
/** Internal requests (transfers, syncs, batches) may be larger than client requests. */
const INTERNAL_BODY_BYTES_MAX = 64 * 1024 * 1024;
/** Peers' requests in flight at once, and their body bytes: far above what peers send, a bound still. */
const PEER_REQUESTS_MAX = 1024;
const PEER_BYTES_MAX = 256 * 1024 * 1024;
/** Internal bodies wrap values a few levels deep (versions in a list in a request). */
const PEER_BODY_DEPTH_MAX = VALUE_DEPTH_MAX + 8;
/** Headers that only nodes send each other. */
const PEER_HEADER_PREFIX = 'x-kvs-';
/** Digest exchanges in one anti-entropy round (each answer holds about REPAIR_BYTES_MAX of versions). */
const REPAIR_EXCHANGES_MAX = 64;
/** A peer is asked for a sync at most this often. */
const SYNC_INTERVAL_MS_MIN = 250;
/** A late transfer to a node that cannot take it yet (down, or not in the new epoch yet) is tried this often, this many times. */
const LATE_TRANSFER_RETRY_MS = 1000;
const LATE_TRANSFER_ATTEMPTS = 20;

const json = (status: number, body: unknown): HttpReply => ({ status, body });

/** Routes that move replica data between nodes: refused over a link held down (reshard routes are not: a reshard is asked for). */
const DATA_ROUTES: ReadonlySet<string> = new Set(['/internal/replicate', '/internal/sync', '/internal/digest', '/internal/repair']);

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
}

/**
 * The runtime around one NodeCore: HTTP in and out, timers, waiting. Everything it decides about
 * the protocol it asks the core; what it adds is I/O, time and bounded waiting.
 */
export class KvsNode {
  readonly config: NodeConfig;
  readonly core: NodeCore;
  /** Names this process among all the runs of this node: peers tell a restart from a reconnection by it. */
  readonly incarnation: string;
  /** Signs and checks requests between nodes, and causal metadata, when CLUSTER_SECRET is set. */
  private readonly auth: PeerAuth | null;
  private readonly log: Logger;
  private readonly peers: PeerTransport;
  private readonly timers: Timers;
  private readonly replicator: Replicator;
  private readonly changed: StateSignal;
  private readonly background: Background;
  /** Rate limit of the log lines about refused requests (one per reason per interval). */
  private readonly refusals: LogLimiter;
  private server: Server | null = null;
  private pingTimer: TimerHandle | null = null;
  private antiEntropyTimer: TimerHandle | null = null;
  private antiEntropyRunning = false;
  private antiEntropyNext = 0;
  /** Repair counters, shown in /status. */
  private readonly repairStats = { rounds: 0, keysRepaired: 0, bytes: 0, tombstonesCollected: 0, lastInSyncMs: 0, syncBytesReceived: 0 };
  private readonly probing = new Set<NodeAddress>();
  private readonly lastPing = new Map<NodeAddress, PingInfo>();
  private readonly lastSyncMs = new Map<NodeAddress, number>();
  /** Links held down and released since start (shown in /status). */
  private readonly linkStats = { holds: 0, releases: 0, refused: 0, stallsForgiven: 0 };
  /** A real process watches its own event loop; probes in flight across a stall are not judged late (simulated nodes never stall). */
  private readonly stallWatch: StallWatch | null;
  private syncing = false;
  private fullSyncRunning: Promise<void> | null = null;
  private closed = false;
  private readonly startedMs: number;
  private readonly storage: Storage;
  /** The replica object whose state the storage holds; another one means the replica was replaced. */
  private storedReplica: Replica | null;
  private storedMapDigest: string;
  private readonly restored: boolean;
  private readonly tls: TlsMaterial | undefined;

  constructor(config: NodeConfig, log: Logger, env: NodeEnv = {}) {
    this.config = config;
    this.tls = env.tls;
    this.log = log;
    this.timers = env.timers ?? realTimers;
    this.incarnation = env.incarnation ?? randomBytes(8).toString('hex');
    this.stallWatch =
      env.timers === undefined
        ? new StallWatch(Math.floor(config.probeLateMs / 2), () => {
            this.linkStats.stallsForgiven++;
            this.core.links.forgiveProbes();
          })
        : null;
    this.auth = config.clusterSecrets.length > 0 ? new PeerAuth(config.clusterSecrets, () => this.timers.now()) : null;
    this.startedMs = this.timers.now();
    this.changed = new StateSignal(this.timers);
    this.background = new Background(log, this.timers);
    this.refusals = new LogLimiter(this.timers);
    let saved: SavedState = { map: null, replica: null };
    if (env.storage) ({ storage: this.storage, saved } = env.storage);
    else if (config.dataDir === null) this.storage = new MemoryStorage();
    else ({ storage: this.storage, saved } = SqliteStorage.open(config.dataDir, config.address, log));
    // What this node knew before it stopped is newer than what the environment says at start.
    const envMap = initialShardMap(config.view, config.shardCount);
    const map = saved.map ? mergeShardMaps(envMap, saved.map) : envMap;
    this.core = new NodeCore(
      {
        self: config.address,
        pendingMax: config.pendingMax,
        pendingBytesMax: config.pendingBytesMax,
        failuresToRemove: config.failuresToRemove,
        holdDownMs: config.holdDownMs,
        probeLateMs: config.probeLateMs,
        checkMetadataOrigin: config.clusterSecrets.length === 0,
        plantedBugs: env.plantedBugs,
      },
      config.view,
      map,
    );
    this.restored = saved.replica !== null && this.core.restoreReplica(saved.replica);
    this.storedReplica = this.restored ? this.core.replica : null;
    this.storedMapDigest = saved.map ? mapDigest(saved.map) : '';
    this.persist();
    this.peers = new LinkTransport(
      env.transport ??
        new PeerClient({
          connectTimeoutMs: config.connectTimeoutMs,
          requestTimeoutMs: Math.max(config.requestTimeoutMs, config.reshardTimeoutMs),
          connectionsPerPeer: 8,
          tls: this.tls,
        }),
      { self: config.address, incarnation: this.incarnation },
      this.core.links,
      this.timers,
      (peer, change) => this.onLinkChange(peer, change),
      this.auth,
    );
    this.replicator = new Replicator(
      {
        self: config.address,
        batchMax: config.replicationBatchMax,
        batchBytesMax: TRANSFER_BYTES_MAX,
        queueMax: config.replicationQueueMax,
        queueBytesMax: config.replicationQueueBytesMax,
        timeoutMs: config.requestTimeoutMs,
      },
      this.peers,
      log,
      {
        onUnreachable: (peer) => this.suspect(peer),
        isUp: (peer) => this.core.membership.has(peer) && this.linkUp(peer),
        hintLog: this.storage.hints,
        run: (task, work) => this.background.run(task, work),
      },
    );
    this.replicator.restore(this.storage.loadHints());
  }

  // ---------------------------------------------------------------- life cycle

  /** Limits of client requests: every route but /internal/. */
  private get clientClass(): RequestClass {
    return {
      name: 'client',
      bodyBytesMax: this.config.maxBodyBytes,
      // The body object holds the value one level down.
      depthMax: VALUE_DEPTH_MAX + 1,
      depthMessage: `Request body nests arrays or objects deeper than ${VALUE_DEPTH_MAX + 1} levels (a value may nest ${VALUE_DEPTH_MAX})`,
      inFlight: { requestsMax: this.config.clientRequestsMax, bytesMax: this.config.clientBytesMax },
      admits: (method, path) => !(method === 'PUT' || method === 'DELETE') || !path.startsWith('/kvs/') || !this.replicationBacklogged(keyOf(path)),
    };
  }

  /** Limits of requests between nodes (/internal/): separate from clients', so a client flood cannot starve them. */
  private readonly peerClass: RequestClass = {
    name: 'peer',
    bodyBytesMax: INTERNAL_BODY_BYTES_MAX,
    depthMax: PEER_BODY_DEPTH_MAX,
    depthMessage: `Request body nests arrays or objects deeper than ${PEER_BODY_DEPTH_MAX} levels`,
    inFlight: { requestsMax: PEER_REQUESTS_MAX, bytesMax: PEER_BYTES_MAX },
  };

  /** Listens on the configured address, then joins the store (`run`). */
  async start(): Promise<void> {
    this.server = await startHttpServer({
      host: this.config.listenHost,
      port: this.config.port,
      tls: this.tls,
      classify: (path) => (path.startsWith('/internal/') ? this.peerClass : this.clientClass),
      handler: (request) => this.handle(request),
      onError: (error) => this.log.error({ err: error }, 'request failed'),
      onRefused: ({ status, reason, remoteAddress }) => {
        const suppressed = this.refusals.take(`${status} ${reason}`);
        if (suppressed !== null) this.log.warn({ status, reason, remoteAddress, suppressed }, 'request refused before routing');
      },
    });
    this.log.info(
      { port: this.config.port, view: this.config.view, shardCount: this.config.shardCount },
      'listening',
    );
    await this.run();
  }

  /**
   * Joins the store and starts the timers: takes the shard map the other nodes hold, announces
   * itself, and copies (or catches up) its shard. Requests may arrive meanwhile; they wait.
   */
  async run(): Promise<void> {
    if (this.auth === null) {
      this.log.warn(
        'no CLUSTER_SECRET: requests between nodes are not authenticated; routes under /internal/ answer only the addresses of known nodes, and causal metadata is checked by what it names, not by a MAC',
      );
    }
    await this.discover();
    await this.announce();
    this.pingTimer = this.timers.setInterval(() => {
      try {
        this.tick();
      } catch (error) {
        this.background.failed('tick', error);
      }
    }, this.config.pingIntervalMs);
    // The first round now: links are watched from the start, not half an interval later.
    this.stallWatch?.start();
    this.tick();
    if (this.config.antiEntropyIntervalMs > 0) {
      this.antiEntropyTimer = this.timers.setInterval(
        () => this.background.run('anti-entropy', () => this.antiEntropyRound()),
        this.config.antiEntropyIntervalMs,
      );
    }
    if (this.core.replica !== null && this.core.replica === this.storedReplica && this.restored) await this.catchUp();
    else if (this.core.replica !== null) await this.fullSync('start');
    this.log.info({ epoch: this.core.map.epoch, shard: this.core.shard, ms: this.timers.now() - this.startedMs }, 'ready');
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stallWatch?.stop();
    if (this.pingTimer) this.timers.clearInterval(this.pingTimer);
    if (this.antiEntropyTimer) this.timers.clearInterval(this.antiEntropyTimer);
    this.changed.notify();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
    await this.peers.close();
    this.storage.close();
  }

  /**
   * Every change of protocol state goes through here: stage it for the disk (a replaced replica
   * starts over there), then wake the requests waiting for a change.
   */
  private stateChanged(): void {
    this.persist();
    this.changed.notify();
  }

  private persist(): void {
    const replica = this.core.replica;
    if (replica !== this.storedReplica) {
      this.storage.resetReplica(replica ? { epoch: this.core.map.epoch, shard: replica.shard } : null);
      this.storedReplica = replica;
    }
    if (replica !== null) this.storage.stage(replica.takeDirty(), replica.applied, replica.lamport, replica.base);
    const digest = this.core.mapDigest;
    if (digest !== this.storedMapDigest) {
      this.storage.saveMap(this.core.map);
      this.storedMapDigest = digest;
    }
  }

  /** A restarted durable node has all it acknowledged; it pulls only what its shard peers got meanwhile. */
  private async catchUp(): Promise<void> {
    const replica = this.core.replica as Replica;
    const peers = (membersOf(this.core.map, replica.shard) ?? []).filter((n) => n !== this.config.address);
    for (const peer of peers) {
      if (await this.pullFrom(peer, 'restart')) break;
    }
    this.core.markReady();
    this.stateChanged();
    await this.storage.flush();
    this.log.info({ shard: replica.shard, keys: replica.liveKeyCount(), applied: replica.applied }, 'restored from disk and caught up');
  }

  /** Ask the nodes of VIEW for the shard map they hold; a node that joins or restarts takes theirs. */
  private async discover(): Promise<void> {
    const others = this.config.view.filter((n) => n !== this.config.address);
    if (others.length === 0) return;
    const deadline = this.timers.now() + this.config.startupWaitMs;
    while (!this.closed) {
      const answers = await Promise.allSettled(
        others.map((peer) => this.peers.call(peer, 'GET', '/internal/state', undefined, { timeoutMs: 1000, lane: 'control' })),
      );
      let heard = 0;
      for (const [i, answer] of answers.entries()) {
        if (answer.status !== 'fulfilled' || answer.value.status !== 200) continue;
        const { map, view } = answer.value.body as { map?: unknown; view?: unknown };
        if (!isShardMap(map)) continue;
        heard++;
        this.adoptMap(map, 'discovery', false);
        // Nodes that joined after this node's VIEW was written (it restarts with the VIEW it had).
        for (const node of Array.isArray(view) ? view : []) {
          if (!isNodeAddress(node) || node === this.config.address || this.core.membership.has(node)) continue;
          this.core.putView(node);
          this.log.info({ peer: node, from: others[i] }, 'node learned from a peer added to view');
        }
      }
      if (heard > 0 || this.timers.now() >= deadline) {
        this.log.info({ peersAnswered: heard, epoch: this.core.map.epoch, shard: this.core.shard }, 'discovered shard map');
        return;
      }
      await sleep(this.timers, 250);
    }
  }

  /** PUT /view to every node of VIEW, as the spec has a starting node do. */
  private async announce(): Promise<void> {
    const others = this.config.view.filter((n) => n !== this.config.address);
    await Promise.allSettled(
      others.map((peer) =>
        this.peers.call(peer, 'PUT', '/view', { 'socket-address': this.config.address }, { timeoutMs: 1000, lane: 'control', headers: this.adminHeaders() }),
      ),
    );
  }

  // ---------------------------------------------------------------- routing

  /** One request, from a client or a peer, as the HTTP server (or the simulator) delivers it. */
  async handle(request: HttpRequest): Promise<HttpReply> {
    const { method, path } = request;
    const body = request.body;
    try {
      // Only a request that claims to be a node's is checked (a client's costs nothing here).
      const trusted = (path.startsWith('/internal/') || hasPeerHeader(request.headers)) && this.fromPeer(request);
      const peer = this.peerHeaders(request, trusted);
      if (path.startsWith('/internal/') && !trusted) return this.refusePeerRoute(request);
      if (path.startsWith('/kvs/')) {
        if (!isKvMethod(method)) return json(405, { error: `Method ${method} is not allowed on /kvs` });
        let key: string;
        try {
          key = decodeURIComponent(path.slice('/kvs/'.length));
        } catch {
          return json(400, { error: 'Key is not valid URL encoding' });
        }
        return await this.kv(method, key, path, body, peer.hops, peer.deadlineMs);
      }
      if (path === '/view') return await this.viewRoute(method, body, peer, request);
      if (path.startsWith('/shard/')) return await this.shardRoute(method, path, body, request);
      if (path === '/status' && method === 'GET') return json(200, this.status());
      if (path.startsWith('/internal/')) return await this.internalRoute(method, path, body, peer.from, peer.incarnation);
      return json(404, { error: `No route for ${method} ${path}` });
    } catch (error) {
      if (error instanceof Unauthorized) return this.refuseUnauthorized(request, error.message);
      if (error instanceof BadRequest) return json(400, { error: error.message });
      if (error instanceof URIError) return json(400, { error: 'Path is not valid URL encoding' });
      throw error;
    }
  }

  /**
   * Whether a request comes from a node of this store. With CLUSTER_SECRET: it carries a valid
   * authenticator (an invalid one is refused outright, 401). Without: it comes from a node's IP
   * (or PEER_SOURCE_IPS). With TLS, also: its client certificate was signed by the cluster's CA.
   */
  private fromPeer(request: HttpRequest): boolean {
    if (this.config.tls !== null && request.peerCertified !== true) return false;
    if (this.auth === null) return this.isNodeSource(request.remoteAddress);
    const given = request.headers[AUTH_HEADER];
    if (given === undefined) return false;
    const result = this.auth.verify(given, { method: request.method, path: request.path, body: request.rawBody ?? '', headers: request.headers });
    if (!result.ok) throw new Unauthorized(result.reason);
    return true;
  }

  /**
   * The node-to-node headers of a request, checked: malformed ones get 400; well-formed ones count
   * only on a request from a node (`fromPeer`), and are ignored on anyone else's. Other x-kvs-*
   * names are ignored.
   */
  private peerHeaders(request: HttpRequest, trusted: boolean): PeerHeaders {
    const out: PeerHeaders = { ...NO_PEER_HEADERS };
    const headers = request.headers;
    if (!hasPeerHeader(headers)) return out;
    const hops = headers[HOPS_HEADER];
    const deadline = headers[DEADLINE_HEADER];
    const downReport = headers[DOWN_REPORT_HEADER];
    const from = headers[FROM_HEADER];
    const incarnation = headers[INCARNATION_HEADER];
    if (hops !== undefined) {
      if (typeof hops !== 'string' || !/^[0-9]$/.test(hops) || Number(hops) > FORWARD_HOPS_MAX) {
        throw new BadRequest(`Header ${HOPS_HEADER} must be a whole number from 0 to ${FORWARD_HOPS_MAX}`);
      }
      out.hops = Number(hops);
    }
    if (deadline !== undefined) {
      if (typeof deadline !== 'string' || !/^[1-9][0-9]{0,15}$/.test(deadline) || !Number.isSafeInteger(Number(deadline))) {
        throw new BadRequest(`Header ${DEADLINE_HEADER} must be a time in milliseconds since 1970`);
      }
      out.deadlineMs = Number(deadline);
    }
    if (downReport !== undefined) {
      if (!isNodeAddress(downReport)) throw new BadRequest(`Header ${DOWN_REPORT_HEADER} must be a node address IP:PORT`);
      out.downReport = downReport;
    }
    if (from !== undefined) {
      if (!isNodeAddress(from)) throw new BadRequest(`Header ${FROM_HEADER} must be a node address IP:PORT`);
      out.from = from;
    }
    if (incarnation !== undefined) {
      if (!isIncarnation(incarnation)) throw new BadRequest(`Header ${INCARNATION_HEADER} must be 1 to 32 digits or lower-case letters`);
      out.incarnation = incarnation;
    }
    if (!trusted) {
      if (hops !== undefined || deadline !== undefined || downReport !== undefined || from !== undefined) {
        const suppressed = this.refusals.take('peer headers from a client');
        if (suppressed !== null) this.log.warn({ remoteAddress: request.remoteAddress, path: request.path, suppressed }, `${PEER_HEADER_PREFIX}* headers on a request not from a node: ignored`);
      }
      return { ...NO_PEER_HEADERS };
    }
    return out;
  }

  /**
   * Whether a connection from `ip` may come from a node: the IP of a node in VIEW, the view or the
   * shard map, or one of PEER_SOURCE_IPS. Nodes only learned of from pings do not count (anyone can
   * send a ping). Nodes named by host name match nothing here: list their IPs in PEER_SOURCE_IPS.
   */
  private isNodeSource(ip: string): boolean {
    const source = ip.startsWith('::ffff:') ? ip.slice('::ffff:'.length) : ip;
    if (this.config.peerSourceIps.includes(source)) return true;
    const known = [...this.config.view, ...this.core.membership.probeTargets(), ...Object.values(this.core.map.shards).flat()];
    return known.some((node) => node.slice(0, node.lastIndexOf(':')) === source);
  }

  /** A peer route asked by someone who is not a node of this store: nothing read, nothing changed. */
  private refusePeerRoute(request: HttpRequest): HttpReply {
    const uncertified = this.config.tls !== null && request.peerCertified !== true;
    if (this.auth !== null && !uncertified) return this.refuseUnauthorized(request, 'no authenticator');
    const suppressed = this.refusals.take('peer route from outside');
    if (suppressed !== null) this.log.warn({ remoteAddress: request.remoteAddress, path: request.path, suppressed }, 'peer route asked by an address that is not a node of this store: refused');
    const why = uncertified ? 'connections with a certificate of the cluster' : 'the addresses of its nodes';
    return json(403, { error: `Routes under /internal/ answer only ${why}` });
  }

  private refuseUnauthorized(request: HttpRequest, reason: string): HttpReply {
    const suppressed = this.refusals.take(`unauthorized ${reason}`);
    if (suppressed !== null) this.log.warn({ remoteAddress: request.remoteAddress, path: request.path, reason, suppressed }, 'request between nodes without a valid authenticator: refused');
    return json(401, { error: `Requests between nodes need a valid authenticator: ${reason}` });
  }

  /**
   * With ADMIN_TOKEN set, a topology change (PUT and DELETE /view, add-member, reshard) needs
   * `Authorization: Bearer <token>`: null when the request may go on, else the 401. Both sides are
   * hashed first, so the comparison takes the same time whatever the token given (and its length).
   */
  private adminRefusal(request: HttpRequest, route: string): HttpReply | null {
    const token = this.config.adminToken;
    if (token === null) return null;
    const header = request.headers.authorization;
    const given = typeof header === 'string' ? /^Bearer +(\S+) *$/i.exec(header)?.[1] ?? null : null;
    const digest = (text: string) => createHash('sha256').update(text).digest();
    if (given !== null && timingSafeEqual(digest(given), digest(token))) return null;
    const reason = given === null ? 'admin token missing' : 'admin token wrong';
    const suppressed = this.refusals.take(`401 ${reason}`);
    if (suppressed !== null) this.log.warn({ status: 401, reason, route, remoteAddress: request.remoteAddress, suppressed }, 'topology change refused');
    return json(401, { error: `${route} needs the admin token: send the header Authorization: Bearer <ADMIN_TOKEN>` });
  }

  /** The header that lets this node's own topology requests (announcement, down reports) through ADMIN_TOKEN. */
  private adminHeaders(): Record<string, string> {
    return this.config.adminToken === null ? {} : { authorization: `Bearer ${this.config.adminToken}` };
  }

  private async viewRoute(method: string, body: unknown, peer: PeerHeaders, request: HttpRequest): Promise<HttpReply> {
    const downReport = peer.downReport;
    if (method === 'GET') return json(200, { view: this.core.membership.view() });
    if (method !== 'PUT' && method !== 'DELETE') return json(405, { error: `Method ${method} is not allowed on /view` });
    const refusal = this.adminRefusal(request, `${method} /view`);
    if (refusal !== null) return refusal;
    const address = field(body, 'socket-address');
    if (!isNodeAddress(address)) throw new BadRequest('socket-address must be a string IP:PORT');
    if (method === 'PUT') {
      const reply = this.core.putView(address);
      if (reply.status === 201) this.log.info({ peer: address }, 'node added to view');
      // The node announcing itself: a new incarnation is a restart, not a reconnection, so its
      // link is not held down (it copies its shard at once).
      if (peer.from === address && peer.incarnation !== null) {
        const change = this.core.links.announced(address, peer.incarnation, this.timers.now());
        if (change === 'released') this.log.info({ peer: address, incarnation: peer.incarnation }, 'node restarted (new incarnation): its link is no longer held down');
        this.onLinkChange(address, change);
      }
      this.stateChanged();
      return json(reply.status, reply.body);
    }
    if (downReport !== null) {
      // Another node found `address` down. Check for ourselves before dropping it: a node cut off
      // from the reporter only may be fine for us.
      if (this.core.membership.has(address) && (await this.probe(address))) {
        this.log.info({ peer: address, reporter: downReport }, 'down report refuted: node answers');
        return json(200, { result: MESSAGES.deleted });
      }
      const reply = this.core.deleteView(address, 'down');
      if (reply.status === 200) this.onRemoved(address, `reported down by ${downReport}`);
      return json(reply.status, reply.body);
    }
    const reply = this.core.deleteView(address, 'request');
    if (reply.status === 200) this.onRemoved(address, 'removed by request');
    return json(reply.status, reply.body);
  }

  private async shardRoute(method: string, path: string, body: unknown, request: HttpRequest): Promise<HttpReply> {
    const map = this.core.map;
    if (method === 'GET' && path === '/shard/ids') return json(200, { 'shard-ids': shardIds(map) });
    if (method === 'GET' && path === '/shard/node-shard-id') return json(200, { 'node-shard-id': this.core.shard });
    const [, , action, rawId] = path.split('/');
    if (method === 'PUT' && ((action === 'add-member' && rawId !== undefined) || path === '/shard/reshard')) {
      const refusal = this.adminRefusal(request, action === 'add-member' ? 'PUT /shard/add-member' : 'PUT /shard/reshard');
      if (refusal !== null) return refusal;
    }
    let id: ShardId | undefined;
    try {
      id = rawId === undefined ? undefined : decodeURIComponent(rawId);
    } catch {
      throw new BadRequest('Shard id is not valid URL encoding');
    }
    if (method === 'GET' && action === 'members' && id !== undefined) {
      const members = membersOf(map, id);
      if (!members) return json(404, { error: `Shard ${id} does not exist` });
      return json(200, { 'shard-members': members });
    }
    if (method === 'GET' && action === 'key-count' && id !== undefined) return this.keyCount(id);
    if (method === 'PUT' && action === 'add-member' && id !== undefined) {
      const address = field(body, 'socket-address');
      if (!isNodeAddress(address)) throw new BadRequest('socket-address must be a string IP:PORT');
      const reply = this.core.addMember(id, address);
      if (reply.status === 200) {
        this.log.info({ shard: id, peer: address }, 'node added to shard');
        await this.pushMap([...this.core.membership.peers(), address]);
        this.stateChanged();
        if (reply.joined) this.background.run('full sync', () => this.fullSync('added to a shard'));
      }
      return json(reply.status, reply.body);
    }
    if (method === 'PUT' && path === '/shard/reshard') return this.reshard(field(body, 'shard-count'));
    return json(404, { error: `No route for ${method} ${path}` });
  }

  // ---------------------------------------------------------------- key-value

  private async kv(
    method: KvMethod,
    key: string,
    path: string,
    body: unknown,
    hops: number,
    deadlineMs: number | null,
  ): Promise<HttpReply> {
    const started = this.timers.now();
    if (method !== 'GET' && this.replicationBacklogged(key)) {
      return json(503, { error: 'The node is overloaded; try again later' });
    }
    // With a cluster secret, metadata is the store's only if its MAC verifies; the core sees it
    // without the MAC, and what the core answers is sealed again. A forwarded request goes on as
    // it came (the member that serves it checks the MAC).
    let coreBody = body;
    const forwarded = this.core.shard === null || shardOfKey(this.core.map, key) !== this.core.shard;
    if (this.auth !== null && !forwarded) {
      const unsealed = this.unsealBody(body);
      if (!unsealed.ok) return json(400, { error: 'Invalid causal metadata: causal-metadata was not issued by this store' });
      coreBody = unsealed.body;
    }
    for (;;) {
      if (method !== 'GET' && deadlineMs !== null && this.timers.now() > deadlineMs) {
        this.log.warn({ key, method, lateMs: this.timers.now() - deadlineMs }, 'forwarded write arrived after its sender gave up; not applied');
        return json(503, { error: 'The forwarded write arrived too late and was not applied; try again' });
      }
      const decision = this.core.kv(method, key, coreBody);
      if (decision.kind === 'reply') {
        if (decision.replicate) {
          // Persist before acknowledging; send after persisting.
          const { shard, peers, version } = decision.replicate;
          const epoch = this.core.map.epoch;
          this.stateChanged();
          try {
            await this.storage.flush();
          } catch {
            return json(503, { error: 'Storage failure: the write could not be made durable' });
          }
          this.replicator.enqueue(peers, epoch, shard, version);
        }
        return this.sealReply(decision.reply);
      }
      if (decision.kind === 'forward') {
        return this.forward(method, path, body, decision.shard, decision.targets, hops, deadlineMs);
      }
      const waitedMs = this.timers.now() - started;
      const budgetMs = (decision.reason === 'reshard' ? RESHARD_WAIT_MS : this.config.causalWaitMs) - waitedMs;
      if (budgetMs <= 0 || this.closed) return this.unavailable(decision.reason, key, decision.detail);
      if (decision.reason === 'causal') this.syncFromAhead(decision.detail ?? {});
      if (decision.reason === 'handover') this.syncBase();
      await this.changed.wait(budgetMs);
    }
  }

  /** The body with its causal metadata's MAC checked and removed; not ok when the MAC does not verify. */
  private unsealBody(body: unknown): { ok: true; body: unknown } | { ok: false } {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) return { ok: true, body };
    const metadata = (body as Record<string, unknown>)['causal-metadata'];
    if (metadata === null || metadata === undefined) return { ok: true, body };
    const unsealed = unsealMetadata(this.auth as PeerAuth, metadata);
    return unsealed === null ? { ok: false } : { ok: true, body: { ...(body as Record<string, unknown>), 'causal-metadata': unsealed } };
  }

  /** A reply with the causal metadata it carries sealed (with a cluster secret). */
  private sealReply(reply: { status: number; body: Record<string, unknown> }): HttpReply {
    const metadata = reply.body['causal-metadata'];
    if (this.auth === null || typeof metadata !== 'object' || metadata === null) return json(reply.status, reply.body);
    return json(reply.status, { ...reply.body, 'causal-metadata': sealMetadata(this.auth, metadata as Record<string, unknown>) });
  }

  /**
   * A write this node would make while a shard peer that is up has more than half its replication
   * queue's bytes waiting: refused (503), so that a flood sheds at the door instead of filling the
   * queue to where its oldest versions are dropped (which sync would then have to repair).
   */
  private replicationBacklogged(key: string): boolean {
    const shard = this.core.shard;
    if (shard === null || shardOfKey(this.core.map, key) !== shard) return false;
    const backlogged = this.replicator.liveBacklogBytesMax() > this.config.replicationQueueBytesMax / 2;
    if (backlogged) {
      const suppressed = this.refusals.take('replication backlog');
      if (suppressed !== null) this.log.warn({ suppressed }, 'write refused: replication backlog to a shard peer is over half its bound');
    }
    return backlogged;
  }

  private unavailable(reason: WaitReason, key: string, lacking?: Clock): HttpReply {
    this.log.info({ key, reason, lacking }, 'request not served: dependencies missing');
    if (reason === 'reshard') return json(503, { error: 'A reshard is in progress; try again later' });
    return json(503, { error: MESSAGES.causalUnavailable });
  }

  /**
   * Relay to a member of the key's shard; status and body come back unchanged. A read fails over
   * to the next member on any error. Any request fails over from a member that answers it lacks
   * the client's causal dependencies (it applied nothing). A write fails over only then, or when it provably never left (no
   * connection): after a timeout the first member may still apply it, and applying it at two
   * members would make it two writes, the late one overwriting whatever the client wrote since.
   * Such a write gets 503 (its outcome is unknown) and carries a deadline past which it is refused.
   */
  private async forward(
    method: KvMethod,
    path: string,
    body: unknown,
    shard: ShardId,
    targets: NodeAddress[],
    hops: number,
    deadlineMs: number | null,
  ): Promise<HttpReply> {
    if (hops >= FORWARD_HOPS_MAX) {
      return json(503, { error: 'The shard map is changing; try again later' });
    }
    const deadline = deadlineMs ?? this.timers.now() + this.config.requestTimeoutMs;
    let lacking: HttpReply | null = null;
    for (const target of targets) {
      // A read may take its full time at each member; a write's attempts share its deadline.
      const timeoutMs = method === 'GET' && deadlineMs === null ? this.config.requestTimeoutMs : Math.max(1, deadline - this.timers.now());
      try {
        const reply = await this.peers.call(target, method, path, body, {
          headers: { [HOPS_HEADER]: String(hops + 1), [DEADLINE_HEADER]: String(deadline) },
          timeoutMs,
        });
        // A member that lacks what the client depends on (cut off a moment ago, say) applied
        // nothing: another member may have it, so the request is tried there.
        if (reply.status === 503 && isCausalRefusal(reply.body)) {
          lacking = json(reply.status, reply.body);
          continue;
        }
        return json(reply.status, reply.body);
      } catch (error) {
        if (!(error instanceof PeerUnreachableError)) throw error;
        this.suspect(target);
        if (method !== 'GET' && error.maybeDelivered) {
          return json(503, { error: `A member of shard ${shard} did not answer in time; the write may or may not have been applied` });
        }
      }
    }
    return lacking ?? json(503, { error: `No member of shard ${shard} is reachable` });
  }

  private async keyCount(shard: ShardId): Promise<HttpReply> {
    const members = membersOf(this.core.map, shard);
    if (!members) return json(404, { error: `Shard ${shard} does not exist` });
    const replica = this.core.replica;
    if (replica !== null && replica.shard === shard) return json(200, { 'shard-key-count': replica.liveKeyCount() });
    for (const target of this.core.forwardTargets(shard)) {
      try {
        const reply = await this.peers.call(target, 'GET', `/internal/key-count/${encodeURIComponent(shard)}`, undefined, {
          timeoutMs: 2000,
        });
        if (reply.status === 200) return json(200, reply.body);
      } catch (error) {
        if (!(error instanceof PeerUnreachableError)) throw error;
        this.suspect(target);
      }
    }
    return json(503, { error: `No member of shard ${shard} is reachable` });
  }

  // ---------------------------------------------------------------- peers: failure detection and sync

  private tick(): void {
    if (this.closed) return;
    const now = this.timers.now();
    const pending = this.core.reshardInProgress;
    if (pending && now - pending.startedMs > this.config.reshardTimeoutMs) {
      this.log.warn({ epoch: pending.map.epoch, coordinator: pending.coordinator }, 'reshard not committed in time; abandoned');
      this.core.abortReshard(pending.map.epoch);
      this.stateChanged();
    }
    for (const peer of this.core.membership.probeTargets()) {
      // A probe still unanswered after PROBE_LATE_MS holds its link down now, not at its timeout.
      this.checkLate(peer);
      if (this.probing.has(peer)) continue;
      this.background.run('ping', () => this.pingOnce(peer));
    }
  }

  private async pingOnce(peer: NodeAddress): Promise<void> {
    this.probing.add(peer);
    let lateTimer: TimerHandle | null = null;
    try {
      let info: PingInfo | null = null;
      const links = this.core.links;
      const sentTo = links.incarnationOf(peer);
      links.probeSent(peer, this.timers.now());
      // Late is noticed when it happens, not at the next tick: data must stop before it could
      // cross a link that is failing.
      lateTimer = this.timers.setTimeout(() => this.checkLate(peer), this.config.probeLateMs + 1);
      try {
        const reply = await this.peers.call(peer, 'GET', '/internal/ping', undefined, { timeoutMs: this.config.pingTimeoutMs, lane: 'control' });
        if (reply.status === 200) info = reply.body as PingInfo;
        // Answered, but not with a ping (shedding load, say): the link does not serve.
        else this.onLinkChange(peer, links.failed(peer, sentTo, this.timers.now()));
      } catch (error) {
        if (!(error instanceof PeerUnreachableError)) throw error;
      }
      if (info !== null && isIncarnation(info.incarnation)) this.onLinkChange(peer, links.probeAnswered(peer, sentTo, info.incarnation, this.timers.now()));
      this.observe(peer, info !== null);
      if (info !== null && this.core.membership.has(peer)) {
        if (this.linkUp(peer)) this.replicator.resume(peer);
        this.onPing(peer, info);
      }
    } finally {
      if (lateTimer !== null) this.timers.clearTimeout(lateTimer);
      this.probing.delete(peer);
    }
  }

  /** Holds the link to `peer` down now if its probe in flight is late; the time it looked. */
  private checkLate(peer: NodeAddress): number {
    const now = this.timers.now();
    this.onLinkChange(peer, this.core.links.checkLate(peer, now));
    return now;
  }

  /** Whether data may cross the link to `peer` now (a late probe holds it down here). */
  private linkUp(peer: NodeAddress): boolean {
    return this.core.links.isUp(peer, this.checkLate(peer));
  }

  /** Whether data from `peer` (from its process `incarnation`) is taken now (not while this node holds the link down itself). */
  private linkAccepts(peer: NodeAddress, incarnation: string | null): boolean {
    return this.core.links.accepts(peer, this.checkLate(peer), incarnation);
  }

  /** A link was held down or released: stop or restart what crosses it, and say so. */
  private onLinkChange(peer: NodeAddress, change: LinkChange): void {
    if (change === null) return;
    if (change === 'held') {
      this.linkStats.holds++;
      this.log.warn({ peer, holdDownMs: this.config.holdDownMs }, 'link to peer failed: no data crosses it until it has answered every probe for the hold-down');
      this.replicator.pause(peer);
      return;
    }
    this.linkStats.releases++;
    this.log.info({ peer, holdDownMs: this.config.holdDownMs }, 'link answered through the hold-down: data crosses it again');
    if (this.core.membership.has(peer)) this.replicator.resume(peer);
    // Requests waiting for what this peer has may now pull it.
    this.stateChanged();
  }

  /** One probe now, answering whether the peer is up (used to confirm a suspicion). */
  private async probe(peer: NodeAddress): Promise<boolean> {
    try {
      const reply = await this.peers.call(peer, 'GET', '/internal/ping', undefined, { timeoutMs: this.config.pingTimeoutMs, lane: 'control' });
      return reply.status === 200;
    } catch {
      return false;
    }
  }

  /** A request to `peer` failed: count it, and confirm with a probe right away. */
  private suspect(peer: NodeAddress): void {
    if (this.closed || !this.core.membership.has(peer)) return;
    this.observe(peer, false);
    if (!this.probing.has(peer)) this.background.run('ping', () => this.pingOnce(peer));
  }

  private observe(peer: NodeAddress, answered: boolean): void {
    const outcome = this.core.membership.observe(peer, answered, this.timers.now());
    if (outcome.kind === 'removed') {
      this.onRemoved(peer, 'not answering');
      // Tell the others, as the spec asks; each checks before it removes.
      for (const other of this.core.membership.peers()) {
        this.peers
          .call(other, 'DELETE', '/view', { 'socket-address': peer }, {
            timeoutMs: 2000,
            lane: 'control',
            headers: { [DOWN_REPORT_HEADER]: this.config.address, ...this.adminHeaders() },
          })
          .catch(() => undefined);
      }
    } else if (outcome.kind === 'readmitted') {
      this.log.info({ peer, holdDownMs: this.config.holdDownMs }, 'node answered through the hold-down; admitted to the view again');
      this.stateChanged();
    }
  }

  private onRemoved(peer: NodeAddress, why: string): void {
    this.log.warn({ peer, why }, 'node removed from view');
    this.replicator.pause(peer);
    this.lastPing.delete(peer);
    this.stateChanged();
  }

  private onPing(peer: NodeAddress, info: PingInfo): void {
    const previous = this.lastPing.get(peer);
    this.lastPing.set(peer, info);
    for (const node of Array.isArray(info.view) ? info.view : []) {
      if (isNodeAddress(node) && this.core.membership.learn(node, this.timers.now())) {
        this.log.info({ peer: node, from: peer }, 'learned of a node from a peer; probing it before admitting it');
      }
    }
    if (info.mapDigest !== this.core.mapDigest) this.background.run('fetch map', () => this.fetchMap(peer));
    // Nothing is pulled over a link held down: a replica that was cut off does not catch up
    // behind its clients' backs the moment it reconnects.
    if (!this.linkUp(peer)) return;
    // Pull only what a peer already had one ping ago: what it has just now is usually still in flight to us.
    // Nor what its pushes to us are still bringing: under load, replication lags a ping or more, and
    // pulling the same versions again would double the work of a busy peer.
    const pushing = typeof info.replicating === 'number' && info.replicating > 0;
    if (previous && !pushing && this.core.peerIsAhead({ ...info, applied: previous.applied })) this.startPull(peer, 'behind peer');
    else if (this.core.replica && this.core.replica.pendingCount > 0 && previous && this.core.peerIsAhead(info)) {
      this.startPull(peer, 'gap in replication');
    }
  }

  private async fetchMap(peer: NodeAddress): Promise<void> {
    try {
      const reply = await this.peers.call(peer, 'GET', '/internal/state', undefined, { timeoutMs: 2000, lane: 'control' });
      const map = (reply.body as { map?: unknown } | undefined)?.map;
      if (reply.status === 200 && isShardMap(map)) this.adoptMap(map, `map of ${peer}`, true);
    } catch {
      // The next ping tries again.
    }
  }

  private adoptMap(map: ShardMap, source: string, syncNow: boolean): void {
    const before = this.core.map;
    const change = this.core.adoptMap(map);
    if (!change.changed) return;
    this.log.info(
      { source, epoch: this.core.map.epoch, previousEpoch: before.epoch, shard: this.core.shard, fullSync: change.needsFullSync },
      'shard map updated',
    );
    this.stateChanged();
    const orphaned = change.orphaned;
    if (orphaned !== null) this.background.run('late transfer', () => this.sendLate(orphaned));
    if (change.needsFullSync && syncNow) this.background.run('full sync', () => this.fullSync(source));
  }

  /**
   * This node missed a reshard (cut off or down) and dropped its old replica: what it held, and may
   * have acknowledged while cut off, goes to the keys' new owners, merged there by version order.
   * Every member of the current map gets the last part with what the transfer reflects, so clients
   * that depend on these writes are served once they are there. A member that cannot take it yet
   * (down, in another epoch, or frozen for the next reshard) is tried again, a bounded number of
   * times; if the store reshards meanwhile, the owners of the newest map are the targets.
   */
  private async sendLate(orphaned: Orphaned): Promise<void> {
    let epoch = this.core.map.epoch;
    let delivered = new Set<NodeAddress>();
    let remaining: [NodeAddress, Version[]][] = [];
    let sent = 0;
    for (let attempt = 1; attempt <= LATE_TRANSFER_ATTEMPTS && !this.closed; attempt++) {
      if (this.core.map.epoch !== epoch) {
        epoch = this.core.map.epoch;
        delivered = new Set();
      }
      const got = delivered;
      remaining = [...this.core.lateTransfers(orphaned)].filter(([peer]) => !got.has(peer));
      if (remaining.length === 0) {
        this.log.info({ epoch, versions: orphaned.versions.length, sent, attempts: attempt - 1 }, 'missed a reshard: sent what this node held to the new owners');
        return;
      }
      await Promise.all(
        remaining.map(async ([peer, versions]) => {
          const shard = shardOfNode(this.core.map, peer);
          if (shard === null) return got.add(peer);
          try {
            const result = await this.sendVersions(peer, '/internal/repair', { epoch, shard }, versions, this.config.requestTimeoutMs, {
              reflected: orphaned.reflected,
            });
            sent += result.sent;
            got.add(peer);
          } catch (error) {
            this.log.debug({ peer, attempt, err: error }, 'late transfer not taken yet; trying again');
          }
        }),
      );
      if (remaining.every(([peer]) => got.has(peer)) && this.core.map.epoch === epoch) continue;
      await sleep(this.timers, LATE_TRANSFER_RETRY_MS);
    }
    const missing = remaining.map(([peer]) => peer).filter((peer) => !delivered.has(peer));
    this.log.warn({ epoch, missing }, 'late transfer after a missed reshard not taken by every owner; the others repair them by anti-entropy');
  }

  private async pushMap(targets: NodeAddress[]): Promise<void> {
    const map = this.core.map;
    await Promise.allSettled(
      [...new Set(targets)]
        .filter((peer) => peer !== this.config.address)
        .map((peer) => this.peers.call(peer, 'POST', '/internal/map', { map }, { timeoutMs: 2000, lane: 'control' })),
    );
  }

  /** Rebuild this node's shard copy from a shard peer: on start, on joining a shard, after a missed reshard. */
  private fullSync(reason: string): Promise<void> {
    if (this.fullSyncRunning) return this.fullSyncRunning;
    this.fullSyncRunning = this.runFullSync(reason).finally(() => {
      this.fullSyncRunning = null;
    });
    return this.fullSyncRunning;
  }

  private async runFullSync(reason: string): Promise<void> {
    const started = this.timers.now();
    this.core.beginFullSync();
    const replica = this.core.replica;
    if (replica === null) {
      this.core.markReady();
      return;
    }
    const shard = replica.shard;
    const members = (membersOf(this.core.map, shard) ?? []).filter((n) => n !== this.config.address);
    // Peers in the view over links that are up first: the others would refuse or not answer.
    const rank = (n: NodeAddress) => (this.core.membership.has(n) ? 0 : 2) + (this.core.links.isHeld(n) ? 1 : 0);
    const ordered = [...members].sort((x, y) => rank(x) - rank(y));
    for (const peer of ordered) {
      if (this.closed) return;
      if (!(await this.pullFrom(peer, reason, true))) continue;
      this.core.markReady();
      this.stateChanged();
      await this.storage.flush();
      this.log.info({ reason, peer, shard, keys: replica.size, ms: this.timers.now() - started }, 'shard copied from peer');
      return;
    }
    // Nobody could serve us (a fresh store, or all peers down): serve what we have. Clients whose
    // metadata names writes we lack still get 503, never stale data.
    this.core.markReady();
    this.log.info({ reason, shard, ms: this.timers.now() - started }, 'no shard peer could send its data; serving as is');
    this.stateChanged();
  }

  /** A request waits for old-epoch writes handed over late: ask a shard peer whose base may be ahead. */
  private syncBase(): void {
    for (const peer of this.core.replicationPeers()) {
      if (this.timers.now() - (this.lastSyncMs.get(peer) ?? 0) < SYNC_INTERVAL_MS_MIN || !this.linkUp(peer)) continue;
      this.startPull(peer, 'request waiting for old-epoch writes');
      return;
    }
  }

  /** Ask the peers that have what a waiting request needs. */
  private syncFromAhead(lacking: Clock): void {
    for (const [peer, info] of this.lastPing) {
      if (!this.core.membership.has(peer) || !this.linkUp(peer)) continue;
      if (Object.entries(lacking).some(([node, counter]) => counterOf(info.applied, node) >= counter)) {
        this.startPull(peer, 'request waiting');
        return;
      }
    }
  }

  private startPull(peer: NodeAddress, reason: string): void {
    this.background.run('pull sync', () => this.pullSync(peer, reason));
  }

  private async pullSync(peer: NodeAddress, reason: string): Promise<void> {
    const now = this.timers.now();
    if (this.syncing || this.core.replica === null || !this.core.ready) return;
    if (now - (this.lastSyncMs.get(peer) ?? 0) < SYNC_INTERVAL_MS_MIN) return;
    this.syncing = true;
    this.lastSyncMs.set(peer, now);
    try {
      await this.pullFrom(peer, reason);
    } finally {
      this.syncing = false;
    }
  }

  /**
   * Asks a shard peer for what this replica lacks (everything, with `full`) and merges it. True when
   * the peer answered with its state; false when it could not (unreachable, not ready, other epoch).
   */
  private async pullFrom(peer: NodeAddress, reason: string, full = false): Promise<boolean> {
    const replica = this.core.replica;
    if (replica === null) return false;
    const epoch = this.core.map.epoch;
    const shard = replica.shard;
    try {
      const reply = await this.peers.call(
        peer,
        'POST',
        '/internal/sync',
        { epoch, shard, since: full ? {} : replica.applied, full, base: replica.base },
        { timeoutMs: this.config.requestTimeoutMs },
      );
      const answer = reply.body as { versions?: unknown; applied?: unknown; base?: unknown; lamport?: unknown };
      if (reply.status !== 200 || !isVersionList(answer.versions) || !isClock(answer.applied)) return false;
      const base = isEpochClocks(answer.base) ? answer.base : undefined;
      const lamport = Number.isSafeInteger(answer.lamport) ? (answer.lamport as number) : 0;
      if (!this.core.onSyncResponse(epoch, shard, answer.versions, answer.applied, base, lamport)) return false;
      this.repairStats.syncBytesReceived += versionBytes(answer.versions);
      this.log.debug({ peer, reason, versions: answer.versions.length }, 'pulled missing writes');
      this.stateChanged();
      return true;
    } catch (error) {
      if (!(error instanceof PeerUnreachableError)) throw error;
      this.suspect(peer);
      return false;
    }
  }

  /**
   * One anti-entropy round with the next shard peer in the view (so a node on probation is left
   * alone until its hold-down is over): send our partition digests, merge the peer's versions of the
   * partitions that differ, send ours of them back; the peer answers with a bounded number of bytes,
   * so while it says there is more, exchange again (at most REPAIR_EXCHANGES_MAX times). Then collect
   * tombstones every member reflects. A peer we are still pushing writes to is left for the next
   * round: its digests differ by what is in flight, and repairing that would send it all twice.
   */
  private async antiEntropyRound(): Promise<void> {
    const replica = this.core.replica;
    if (this.antiEntropyRunning || this.closed || replica === null || !this.core.ready || this.core.reshardInProgress) return;
    const peers = this.core.replicationPeers();
    if (peers.length === 0) return;
    const peer = peers[this.antiEntropyNext++ % peers.length] as NodeAddress;
    if (this.replicator.liveQueued(peer) > 0 || !this.linkUp(peer)) return;
    const epoch = this.core.map.epoch;
    const shard = replica.shard;
    this.antiEntropyRunning = true;
    try {
      for (let exchange = 0; exchange < REPAIR_EXCHANGES_MAX && !this.closed; exchange++) {
        if (!(await this.repairExchange(peer, epoch, shard, replica))) break;
      }
      const peerClocks = new Map<NodeAddress, Clock>();
      for (const [node, info] of this.lastPing) if (info.epoch === epoch && info.shard === shard) peerClocks.set(node, info.applied);
      const collected = this.core.collectTombstones(peerClocks);
      if (collected > 0) {
        this.repairStats.tombstonesCollected += collected;
        this.stateChanged();
      }
    } catch (error) {
      // Unreachable: suspect it. Refused (its epoch or shard changed meanwhile): the next round.
      if (error instanceof PeerUnreachableError) this.suspect(peer);
      else if (error instanceof PeerRefusedError) this.log.debug({ peer, err: error }, 'anti-entropy round ended early');
      else throw error;
    } finally {
      this.antiEntropyRunning = false;
    }
  }

  /** One digest exchange of an anti-entropy round; true when the peer has more differing partitions. */
  private async repairExchange(peer: NodeAddress, epoch: Epoch, shard: ShardId, replica: Replica): Promise<boolean> {
    const reply = await this.peers.call(peer, 'POST', '/internal/digest', { epoch, shard, digests: replica.digests(), from: this.config.address }, {
      timeoutMs: this.config.requestTimeoutMs,
    });
    const answer = reply.body as { differing?: unknown; versions?: unknown; more?: unknown };
    if (reply.status !== 200 || !isPartitionList(answer.differing) || !isVersionList(answer.versions)) return false;
    this.repairStats.rounds++;
    this.repairStats.bytes += versionBytes(answer.versions);
    if (answer.differing.length === 0) {
      this.repairStats.lastInSyncMs = this.timers.now();
      return false;
    }
    const changedHere = this.core.onRepair(epoch, shard, answer.versions) ?? 0;
    const ours = replica.versionsInPartitions(answer.differing);
    const pushed = await this.sendVersions(peer, '/internal/repair', { epoch, shard }, ours, this.config.requestTimeoutMs);
    this.repairStats.bytes += pushed.bytes;
    const changedThere = pushed.answers.reduce<number>((sum, a) => sum + (Number((a as { changed?: unknown } | undefined)?.changed) || 0), 0);
    // Keys repaired here; the peer counts those it took from us.
    this.repairStats.keysRepaired += changedHere;
    if (changedHere + changedThere > 0) {
      this.log.info({ peer, partitions: answer.differing.length, changedHere, changedThere }, 'anti-entropy repaired keys');
    }
    this.stateChanged();
    return answer.more === true && this.core.replica === replica;
  }

  /**
   * Sends versions to a peer in requests of about TRANSFER_BYTES_MAX, in order, each with `fields`
   * (epoch, shard). With `lastFields`, the last request also carries them, and at least one request
   * is sent: its arrival means every part did. Throws at the first request that fails or is refused.
   * Returns what was sent and the peers' answers.
   */
  private async sendVersions(
    peer: NodeAddress,
    path: string,
    fields: Record<string, unknown>,
    versions: Version[],
    timeoutMs: number,
    lastFields?: Record<string, unknown>,
  ): Promise<{ sent: number; bytes: number; answers: unknown[] }> {
    const result = { sent: 0, bytes: 0, answers: [] as unknown[] };
    const chunks = chunkByBytes(versions, TRANSFER_BYTES_MAX);
    if (lastFields !== undefined && chunks.length === 0) chunks.push({ versions: [], bytes: 0 });
    for (const [i, chunk] of chunks.entries()) {
      const body = { ...fields, ...(lastFields !== undefined && i === chunks.length - 1 ? lastFields : {}), versions: chunk.versions };
      const reply = await this.peers.call(peer, 'POST', path, body, { timeoutMs });
      if (reply.status !== 200) throw new PeerRefusedError(`${path} refused by ${peer}: ${JSON.stringify(reply.body)}`);
      result.sent += chunk.versions.length;
      result.bytes += chunk.bytes;
      result.answers.push(reply.body);
    }
    return result;
  }

  // ---------------------------------------------------------------- reshard

  private async reshard(shardCount: unknown): Promise<HttpReply> {
    const refusal = this.core.checkReshard(shardCount);
    if (refusal) return json(refusal.status, refusal.body);
    if (this.core.reshardIsNoop(shardCount as number)) {
      this.log.info({ shardCount, epoch: this.core.map.epoch }, 'reshard to the current shard count, every node in a shard: nothing to move');
      return json(200, { result: MESSAGES.resharded });
    }
    if (this.core.reshardInProgress) return json(503, { error: 'A reshard is already in progress; try again later' });
    const map = this.core.planReshard(shardCount as number);
    const nodes = this.core.membership.view();
    const started = this.timers.now();
    this.log.info({ epoch: map.epoch, shardCount, nodes }, 'reshard: preparing');

    // Phase 1: every node freezes writes. Phase 2: every node sends its data to the new owners.
    // Phase 3: every node switches epoch. A phase starts only when the one before finished
    // everywhere, so no transfer reaches a node that is not ready for it.
    const frozen = await this.everyNode(nodes, '/internal/reshard/prepare', { map, coordinator: this.config.address }, () =>
      this.prepare(map, this.config.address),
    );
    const refused = frozen.filter((reply) => reply.status !== 200);
    // Every shard's data must move, so some member of each old shard must take part, and some member
    // of each new shard must take part to receive it: a shard whose members are all down would start
    // the new epoch without its keys, and their old versions arriving later would overwrite what
    // clients wrote meanwhile.
    const prepared = nodes.filter((_, i) => frozen[i]?.status === 200 && !(frozen[i]?.body as { unreachable?: boolean }).unreachable);
    const stranded = this.core.shardsWithout(new Set(prepared), map);
    if (refused.length > 0 || stranded.length > 0) {
      this.log.warn({ epoch: map.epoch, refused: refused.map((r) => r.body), stranded }, 'reshard: refused or a shard is unreachable; abandoning');
      await this.abandonReshard(nodes, map.epoch);
      if (refused.length > 0) return json(503, { error: 'Another reshard is in progress; try again later' });
      return json(503, { error: `No member of shard ${stranded.join(', ')} is reachable, so its keys cannot move; try again later` });
    }
    // Phase 2 among the nodes that took part; the others copy their new shard from these when back.
    const sends = await this.everyNode(prepared, '/internal/reshard/send', { epoch: map.epoch, targets: prepared }, () =>
      this.sendReshardData(map.epoch, new Set(prepared)),
    );
    const incomplete = prepared.filter((_, i) => {
      const reply = sends[i];
      const body = reply?.body as { unreachable?: boolean; failed?: unknown[] } | undefined;
      return reply?.status !== 200 || body?.unreachable === true || (body?.failed?.length ?? 0) > 0;
    });
    if (incomplete.length > 0) {
      // A node whose data did not reach every new owner would drop it at the commit.
      this.log.warn({ epoch: map.epoch, incomplete }, 'reshard: transfers incomplete; abandoning');
      await this.abandonReshard(nodes, map.epoch);
      return json(503, { error: 'A node could not hand over its keys during the reshard; try again later' });
    }
    this.log.info({ epoch: map.epoch, ms: this.timers.now() - started }, 'reshard: data transferred; committing');
    await this.everyNode(nodes, '/internal/reshard/commit', { epoch: map.epoch }, () => this.commit(map.epoch));
    this.log.info({ epoch: map.epoch, ms: this.timers.now() - started }, 'reshard: committed');
    return json(200, { result: MESSAGES.resharded });
  }

  /** Every node unfreezes and stays in the old epoch (a node not reached times its reshard out). */
  private async abandonReshard(nodes: NodeAddress[], epoch: Epoch): Promise<void> {
    await this.everyNode(nodes, '/internal/reshard/abort', { epoch }, () => {
      this.core.abortReshard(epoch);
      this.stateChanged();
      return json(200, { ok: true });
    });
  }

  /**
   * One reshard phase on every node at once (this one through `local`). A node that cannot be
   * reached counts as done: it copies its new shard from a peer when it is back.
   */
  private async everyNode(nodes: NodeAddress[], path: string, body: unknown, local: () => HttpReply | Promise<HttpReply>): Promise<HttpReply[]> {
    return Promise.all(
      nodes.map(async (node) => {
        if (node === this.config.address) return local();
        try {
          const reply = await this.peers.call(node, 'POST', path, body, { timeoutMs: this.config.reshardTimeoutMs });
          return json(reply.status, reply.body);
        } catch (error) {
          if (!(error instanceof PeerUnreachableError)) throw error;
          this.log.warn({ peer: node, path }, 'reshard: node unreachable; it will copy its new shard when back');
          return json(200, { unreachable: true });
        }
      }),
    );
  }

  /** Phase 1 here: freeze writes until the commit. */
  private prepare(map: ShardMap, coordinator: NodeAddress): HttpReply {
    const prepared = this.core.prepareReshard(map, coordinator, this.timers.now());
    if (!prepared.ok) return json(409, { error: prepared.reason });
    this.stateChanged();
    return json(200, { ok: true });
  }

  /**
   * Phase 2 here: send every version this node holds to the members of its key's new shard among
   * `targets`, with this node's claim; answer when all is delivered, naming the targets it was not.
   */
  private async sendReshardData(epoch: Epoch, targets: ReadonlySet<NodeAddress>): Promise<HttpReply> {
    const transfers = this.core.reshardTransfers(epoch, targets);
    if (transfers === null) return json(409, { error: `no prepared reshard for epoch ${epoch}` });
    let sent = 0;
    const failed: NodeAddress[] = [];
    await Promise.all(
      [...transfers].map(async ([peer, transfer]) => {
        try {
          const result = await this.sendVersions(peer, '/internal/reshard/transfer', { epoch }, transfer.versions, this.config.reshardTimeoutMs, {
            claim: transfer.claim,
          });
          sent += result.sent;
        } catch (error) {
          this.log.warn({ peer, err: error }, 'reshard: transfer failed');
          failed.push(peer);
        }
      }),
    );
    if (failed.length === 0) this.core.markSent(epoch);
    this.log.info({ epoch, versionsSent: sent, failed }, 'reshard: data sent');
    return json(200, { ok: true, sent, failed });
  }

  private async commit(epoch: Epoch): Promise<HttpReply> {
    const committed = this.core.commitReshard(epoch);
    if (committed) {
      this.log.info({ epoch, shard: this.core.shard, keys: this.core.replica?.liveKeyCount() ?? 0 }, 'reshard: new epoch');
      this.lastPing.clear();
    }
    this.stateChanged();
    await this.storage.flush();
    return committed ? json(200, { ok: true }) : json(409, { error: `no prepared reshard for epoch ${epoch}` });
  }

  // ---------------------------------------------------------------- internal endpoints

  private async internalRoute(method: string, path: string, body: unknown, from: NodeAddress | null, incarnation: string | null): Promise<HttpReply> {
    if (method === 'GET' && path === '/internal/ping') {
      // A node that pings us is up and counts us in its view; if we dropped it (we found it down,
      // then restarted with a VIEW that predates it, or missed its announcement), we probe it again.
      if (from !== null && this.core.membership.learn(from, this.timers.now())) {
        this.log.info({ peer: from }, 'pinged by a node not in the view; probing it before admitting it');
      }
      const replicating = from === null ? 0 : this.replicator.liveQueued(from);
      const info: PingInfo = { ...this.core.pingInfo(), incarnation: this.incarnation };
      if (replicating > 0) info.replicating = replicating;
      return json(200, info);
    }
    if (method === 'GET' && path === '/internal/state') {
      return json(200, { map: this.core.map, view: this.core.membership.view(), ready: this.core.ready });
    }
    if (method === 'GET' && path.startsWith('/internal/key-count/')) {
      const shard = decodeURIComponent(path.slice('/internal/key-count/'.length));
      const replica = this.core.replica;
      if (replica === null || replica.shard !== shard) return json(409, { error: `not a replica of ${shard}` });
      return json(200, { 'shard-key-count': replica.liveKeyCount() });
    }
    if (method !== 'POST') return json(404, { error: `No route for ${method} ${path}` });
    // Data between replicas does not cross a link this node holds down, in either direction: the
    // sender learns how long from the answer and holds the link too.
    if (from !== null && DATA_ROUTES.has(path) && !this.linkAccepts(from, incarnation)) {
      this.linkStats.refused++;
      const suppressed = this.refusals.take(`link held ${from}`);
      if (suppressed !== null) this.log.info({ peer: from, path, suppressed }, 'data from a peer over a link held down: refused');
      const refusal = linkHeldReply(this.config.address, from, this.core.links.remainingMs(from, this.timers.now()));
      return json(refusal.status, refusal.body);
    }
    const fields = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
    switch (path) {
      case '/internal/map': {
        if (!isShardMap(fields.map)) throw new BadRequest('map is not a shard map');
        this.adoptMap(fields.map, 'pushed by peer', true);
        return json(200, { ok: true });
      }
      case '/internal/replicate': {
        if (!isEpochValue(fields.epoch) || typeof fields.shard !== 'string' || !isVersionList(fields.versions)) {
          throw new BadRequest('malformed replication batch');
        }
        const result = this.core.onReplicate(fields.epoch, fields.shard, fields.versions);
        if (!result.ok) return json(409, { error: result.reason });
        this.stateChanged();
        await this.storage.flush();
        return json(200, { applied: result.applied });
      }
      case '/internal/digest': {
        if (!isEpochValue(fields.epoch) || typeof fields.shard !== 'string' || !isPartitionDigests(fields.digests)) {
          throw new BadRequest('malformed digest request');
        }
        // Still pushing writes to the asker: our digests differ by what is in flight; next round.
        if (isNodeAddress(fields.from) && this.replicator.liveQueued(fields.from) > 0) {
          return json(409, { error: 'replication to the asking node is in flight; try the next round' });
        }
        const result = this.core.onDigestRequest(fields.epoch, fields.shard, fields.digests);
        if (!result.ok) return json(409, { error: result.reason });
        return json(200, { differing: result.differing, versions: result.versions, more: result.more });
      }
      case '/internal/repair': {
        if (!isEpochValue(fields.epoch) || typeof fields.shard !== 'string' || !isVersionList(fields.versions)) {
          throw new BadRequest('malformed repair');
        }
        if (fields.reflected !== undefined && !isEpochClocks(fields.reflected)) throw new BadRequest('malformed repair');
        const changed = this.core.onRepair(fields.epoch, fields.shard, fields.versions, fields.reflected);
        if (changed === null) return json(409, { error: `not a replica of ${fields.shard} at epoch ${fields.epoch}` });
        this.repairStats.keysRepaired += changed;
        this.stateChanged();
        await this.storage.flush();
        return json(200, { changed });
      }
      case '/internal/sync': {
        if (!isEpochValue(fields.epoch) || typeof fields.shard !== 'string' || !isClock(fields.since)) {
          throw new BadRequest('malformed sync request');
        }
        const base = isEpochClocks(fields.base) ? fields.base : undefined;
        const result = this.core.onSyncRequest(fields.epoch, fields.shard, fields.since, fields.full === true, base);
        if (!result.ok) return json(409, { error: result.reason });
        return json(200, { versions: result.versions, applied: result.applied, lamport: result.lamport, base: result.base });
      }
      case '/internal/reshard/prepare': {
        if (!isShardMap(fields.map) || !isNodeAddress(fields.coordinator)) throw new BadRequest('malformed prepare');
        return this.prepare(fields.map, fields.coordinator);
      }
      case '/internal/reshard/send': {
        if (!isEpochValue(fields.epoch) || !Array.isArray(fields.targets) || !fields.targets.every(isNodeAddress)) {
          throw new BadRequest('malformed send');
        }
        return this.sendReshardData(fields.epoch, new Set(fields.targets));
      }
      case '/internal/reshard/transfer': {
        if (!isEpochValue(fields.epoch) || !isVersionList(fields.versions) || (fields.claim !== undefined && !isTransferClaim(fields.claim))) {
          throw new BadRequest('malformed transfer');
        }
        return this.core.acceptTransfer(fields.epoch, fields.versions, fields.claim)
          ? json(200, { ok: true })
          : json(409, { error: `no prepared reshard for epoch ${fields.epoch}` });
      }
      case '/internal/reshard/commit': {
        if (!isEpochValue(fields.epoch)) throw new BadRequest('malformed commit');
        return this.commit(fields.epoch);
      }
      case '/internal/reshard/abort': {
        if (!isEpochValue(fields.epoch)) throw new BadRequest('malformed abort');
        this.core.abortReshard(fields.epoch);
        this.stateChanged();
        return json(200, { ok: true });
      }
      default:
        return json(404, { error: `No route for ${method} ${path}` });
    }
  }

  status(): Record<string, unknown> {
    const replica = this.core.replica;
    return {
      address: this.config.address,
      ready: this.core.ready,
      epoch: this.core.map.epoch,
      mode: this.core.map.mode,
      shard: this.core.shard,
      view: this.core.membership.view(),
      onProbation: this.core.membership.probeTargets().filter((n) => this.core.membership.isOnProbation(n)),
      incarnation: this.incarnation,
      /** Links held down after a failure (no data crosses them), and how many holds and releases so far. */
      links: { held: this.core.links.held(this.timers.now()), ...this.linkStats },
      keys: replica?.liveKeyCount() ?? 0,
      versions: replica?.size ?? 0,
      applied: replica?.applied ?? {},
      /** What of `applied` is on disk (null without DATA_DIR). */
      durableApplied: this.storage.durableApplied(),
      pendingEarlyWrites: replica?.pendingCount ?? 0,
      replication: this.replicator.snapshot(),
      repair: {
        ...this.repairStats,
        msSinceFullSync: this.repairStats.lastInSyncMs === 0 ? null : this.timers.now() - this.repairStats.lastInSyncMs,
      },
      reshardInProgress: this.core.reshardInProgress?.map.epoch ?? null,
      uptimeMs: this.timers.now() - this.startedMs,
      backgroundFailures: this.background.snapshot(),
      memory: { rssBytes: process.memoryUsage.rss() },
      eventLoop: readLoopDelay(),
    };
  }
}

class BadRequest extends Error {}
/** What a request that is not a node's (or names nothing) counts as. */
const NO_PEER_HEADERS: Readonly<PeerHeaders> = { hops: 0, deadlineMs: null, downReport: null, from: null, incarnation: null };

/** A request that claims to come from a node (it carries x-kvs-auth) but whose authenticator does not verify. */
class Unauthorized extends Error {}

/** What the node-to-node headers of a request say (defaults when absent). */
interface PeerHeaders {
  hops: number;
  deadlineMs: number | null;
  downReport: NodeAddress | null;
  from: NodeAddress | null;
  incarnation: string | null;
}

/** A peer answered, but not with 200 (another epoch or shard, a malformed request). */
class PeerRefusedError extends Error {}

function field(body: unknown, name: string): unknown {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
  return (body as Record<string, unknown>)[name];
}

/** The key of a /kvs/ path ('' when it is not valid URL encoding: the route answers 400 for that). */
function keyOf(path: string): string {
  try {
    return decodeURIComponent(path.slice('/kvs/'.length));
  } catch {
    return '';
  }
}

/** The 503 of a replica lacking a request's causal dependencies (it applied nothing). */
function isCausalRefusal(body: unknown): boolean {
  return typeof body === 'object' && body !== null && (body as Record<string, unknown>).error === MESSAGES.causalUnavailable;
}

function hasPeerHeader(headers: HttpRequest['headers']): boolean {
  for (const name in headers) if (name.startsWith(PEER_HEADER_PREFIX)) return true;
  return false;
}

function isKvMethod(method: string): method is KvMethod {
  return method === 'GET' || method === 'PUT' || method === 'DELETE';
}

function isEpochValue(value: unknown): value is Epoch {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

/** Versions in runs of about `bytesMax` JSON bytes (at least one version each), with their size. */
function chunkByBytes(versions: Version[], bytesMax: number): { versions: Version[]; bytes: number }[] {
  const chunks: { versions: Version[]; bytes: number }[] = [];
  let current: Version[] = [];
  let bytes = 0;
  for (const version of versions) {
    const size = versionBytes(version);
    if (current.length > 0 && bytes + size > bytesMax) {
      chunks.push({ versions: current, bytes });
      current = [];
      bytes = 0;
    }
    current.push(version);
    bytes += size;
  }
  if (current.length > 0) chunks.push({ versions: current, bytes });
  return chunks;
}

