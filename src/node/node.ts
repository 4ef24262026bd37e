import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import { NodeCore } from '../core/node-core.ts';
import type { PlantedBug } from '../core/planted-bugs.ts';
import { initialShardMap } from '../core/shard-map.ts';
import type { NodeConfig } from './config.ts';
import type { CoreReader, NodeContext } from './context.ts';
import { coreLoop, type CoreStep } from './core-loop.ts';
import { realTimers, type NodeEnv, type PeerTransport, type Timers } from './env.ts';
import { Background, LogLimiter } from './background.ts';
import { FailureDetector } from './failure-detector.ts';
import { ForwardBatcher } from './forward-batch.ts';
import { Forwarding } from './forwarding.ts';
import { KV_BATCH_PATH, parseBatch, serveBatch, type BatchServer } from './kv-batch.ts';
import { startHttpServer, type HttpReply, type HttpRequest } from './http-server.ts';
import { clientClass, PEER_CLASS } from './request-classes.ts';
import { announce, discover } from './join.ts';
import { sendLate } from './late-transfer.ts';
import { DATA_CONNECTIONS_PER_PEER, FORWARD_BATCH_BYTES_MAX, REPLICATION_BUSY_PACE_MS, REPLICATION_PACE_MS, RESHARD_WAIT_MS, STORE_STATUS_FRESH_MS, TRANSFER_BYTES_MAX } from './limits.ts';
import type { Logger } from './logger.ts';
import { LinkTransport } from './link-transport.ts';
import { Maps } from './maps.ts';
import { Metrics } from './metrics.ts';
import { PeerAuth } from './peer-auth.ts';
import { PeerClient } from './peer-client.ts';
import { hasPeerHeader, knownNodes, PeerGate, Unauthorized, type PeerHeaders } from './peer-gate.ts';
import { PeerNames } from './peer-names.ts';
import { PeerRoutes } from './peer-routes.ts';
import { keyOf, PublicRoutes } from './public-routes.ts';
import { BadRequest, json } from './replies.ts';
import { Replicator } from './replicator.ts';
import { Resharding } from './reshard.ts';
import { storeStatus } from './store-status.ts';
import { coalesce } from './coalesce.ts';
import { ParkedRequests } from './parked-requests.ts';
import { nodeStatus } from './status.ts';
import { VERSION } from './version.ts';
import { Sync } from './sync.ts';
import type { TlsMaterial } from './tls.ts';
import { SqliteStorage } from './sqlite-storage.ts';
import { MemoryStorage, type SavedState, type Storage } from './storage.ts';

export type { NodeEnv } from './env.ts';

/**
 * The runtime around one NodeCore: HTTP in and out, timers, waiting. Everything it decides about
 * the protocol it asks the core; what it adds is I/O, time and bounded waiting. This class is the
 * composition root: it builds the concerns (each in its own file) and wires them, starts and stops
 * them. Every input to the core goes through one loop (core-loop.ts), which stages what changed for
 * the disk and releases parked requests.
 */
export class KvsNode {
  readonly config: NodeConfig;
  /** The core, read-only: inputs go in through `step` (the one loop, core-loop.ts). */
  readonly core: CoreReader;
  private readonly step: CoreStep;
  /** Names this process among all the runs of this node: peers tell a restart from a reconnection by it. */
  readonly incarnation: string;
  /** Signs and checks requests between nodes, and causal metadata, when CLUSTER_SECRET is set. */
  private readonly auth: PeerAuth | null;
  private readonly log: Logger;
  private readonly peers: PeerTransport;
  private readonly timers: Timers;
  /** Rate limit of the log lines about refused requests (one per reason per interval). */
  private readonly refusals: LogLimiter;
  private server: Server | null = null;
  private closed = false;
  private readonly startedMs: number;
  private readonly storage: Storage;
  private readonly tls: TlsMaterial | undefined;
  /** What the concerns share (built in the constructor). */
  private readonly ctx: NodeContext;
  private readonly gate: PeerGate;
  /** Without a cluster secret: the IPs of known nodes' host names, for the address check. */
  private readonly names: PeerNames | null;
  private readonly failures: FailureDetector;
  private readonly sync: Sync;
  private readonly maps: Maps;
  private readonly publicRoutes: PublicRoutes;
  private readonly peerRoutes: PeerRoutes;
  private readonly parked: ParkedRequests;
  private readonly metrics: Metrics;
  private readonly resharding: Resharding;
  /** How the items of a POST /internal/kv-batch are served (kv-batch.ts). */
  private readonly batches: BatchServer;

  constructor(config: NodeConfig, log: Logger, env: NodeEnv = {}) {
    this.config = config;
    this.tls = env.tls;
    this.log = log;
    this.timers = env.timers ?? realTimers;
    this.incarnation = env.incarnation ?? randomBytes(8).toString('hex');
    this.auth = config.clusterSecrets.length > 0 ? new PeerAuth(config.clusterSecrets, () => this.timers.now()) : null;
    this.startedMs = this.timers.now();
    const background = new Background(log, this.timers);
    this.refusals = new LogLimiter(this.timers);
    let saved: SavedState = { map: null, replica: null };
    if (env.storage) ({ storage: this.storage, saved } = env.storage);
    else if (config.dataDir === null) this.storage = new MemoryStorage();
    else ({ storage: this.storage, saved } = SqliteStorage.open(config.dataDir, config.address, log));
    // What this node knew before it stopped is newer than what the environment says at start, and
    // replaces it: merged within one epoch, a VIEW or SHARD_COUNT edited since the first start would
    // deal the nodes otherwise and the union put nodes in two shards. (Without a map on disk, the
    // store's map, heard at discovery, replaces the environment's the same way.)
    const map = saved.map ?? initialShardMap(config.view, config.shardCount);
    const core = new NodeCore(
      {
        self: config.address,
        pendingMax: config.pendingMax,
        pendingBytesMax: config.pendingBytesMax,
        failuresToRemove: config.failuresToRemove,
        holdDownMs: config.holdDownMs,
        probeLateMs: config.probeLateMs,
        checkMetadataOrigin: config.clusterSecrets.length === 0,
        plantedBugs: env.plantedBugs,
        causalWaitMs: config.causalWaitMs,
        reshardWaitMs: RESHARD_WAIT_MS,
        tombstoneGraceMs: config.tombstoneGraceMs,
        graveyardMax: config.graveyardMax,
        memberJoinGraceMs: config.memberJoinGraceMs,
      },
      config.view,
      map,
    );
    this.core = core;
    this.step = coreLoop(core, this.timers, this.storage, (wake) => this.parked.release(wake));
    // The disk holds the map and replica it gave back: not written again until they change.
    const restored = this.step({ kind: 'restore', map: saved.map, replica: saved.replica });
    const kept = restored ? (saved.replica?.graveyard?.length ?? 0) : 0;
    if (kept > config.graveyardMax) log.error({ kept, graveyardMax: config.graveyardMax }, 'GRAVEYARD_MAX is below the tombstones kept on disk for members collected without: only GRAVEYARD_MAX of them are restored, and a late write of such a member may bring a deleted key back; raise it');
    this.peers = new LinkTransport(
      env.transport ??
        new PeerClient({
          connectTimeoutMs: config.connectTimeoutMs,
          requestTimeoutMs: Math.max(config.requestTimeoutMs, config.reshardTimeoutMs),
          connectionsPerPeer: DATA_CONNECTIONS_PER_PEER,
          tls: this.tls,
        }),
      { self: config.address, incarnation: this.incarnation },
      { view: this.core.linkView, report: (event) => this.step({ kind: 'link', event }) },
      (peer, change) => this.failures.onLinkChange(peer, change),
      this.auth,
    );
    const replicator = new Replicator(
      {
        self: config.address,
        batchMax: config.replicationBatchMax,
        batchBytesMax: TRANSFER_BYTES_MAX,
        queueMax: config.replicationQueueMax,
        queueBytesMax: config.replicationQueueBytesMax,
        timeoutMs: config.requestTimeoutMs,
        paceMs: REPLICATION_PACE_MS,
        busyPaceMs: REPLICATION_BUSY_PACE_MS,
      },
      this.peers,
      log,
      {
        timers: this.timers,
        onUnreachable: (peer, what) => this.failures.suspect(peer, what),
        isUp: (peer) => this.core.isMember(peer) && this.failures.linkUp(peer),
        hintLog: this.storage.hints,
        run: (task, work) => background.run(task, work),
      },
    );
    replicator.restore(this.storage.loadHints());

    // The concerns, each with its own state; they reach each other only through what is wired here.
    const ctx: NodeContext = (this.ctx = {
      config,
      core: this.core,
      step: this.step,
      incarnation: this.incarnation,
      auth: this.auth,
      log,
      peers: this.peers,
      timers: this.timers,
      storage: this.storage,
      replicator,
      background,
      refusals: this.refusals,
      startedMs: this.startedMs,
      isClosed: () => this.closed,
    });
    this.names =
      this.auth === null
        ? new PeerNames({ timers: this.timers, log, limiter: this.refusals, known: () => knownNodes(ctx), run: (task, work) => background.run(task, work) })
        : null;
    this.gate = new PeerGate(ctx, this.names);
    this.failures = new FailureDetector(
      ctx,
      {
        adminHeaders: () => this.gate.adminHeaders(),
        fetchMap: (peer) => this.maps.fetchMap(peer),
        startPull: (peer, reason) => this.sync.startPull(peer, reason),
      },
      env.timers === undefined,
    );
    this.sync = new Sync(ctx, this.failures);
    this.maps = new Maps(ctx, { sendLate: (orphaned) => sendLate(ctx, orphaned), fullSync: (reason) => this.sync.fullSync(reason) });
    const resharding = (this.resharding = new Resharding(ctx, { carryOut: (change, before, options) => this.maps.carryOut(change, before, options) }));
    this.parked = new ParkedRequests(ctx, {
      syncFromAhead: (lacking) => this.sync.syncFromAhead(lacking),
      syncBase: () => this.sync.syncBase(),
    });
    const soon = env.soon ?? setImmediate;
    const forwarding = new Forwarding(
      ctx,
      (peer, what) => this.failures.suspect(peer, what),
      new ForwardBatcher(this.peers, this.timers, soon, { itemsMax: config.forwardBatchMax, bytesMax: FORWARD_BATCH_BYTES_MAX }),
    );
    this.publicRoutes = new PublicRoutes(ctx, {
      parked: this.parked,
      gate: this.gate,
      forwarding,
      sync: this.sync,
      failures: this.failures,
      maps: this.maps,
      resharding,
      status: () => this.status(),
      metrics: () => this.metrics.reply(),
      storeStatus: coalesce(() => storeStatus(this.ctx, () => this.status()), STORE_STATUS_FRESH_MS, () => this.timers.now()),
    });
    this.batches = {
      soon,
      onError: (error, item) => log.error({ err: error, method: item.method, path: item.path }, 'request failed'),
      // Each item is served as the forwarded request it stands for would be, counted and timed as one.
      serve: (one, peer) => this.metrics.timed(one.method, one.path, async () => {
        try {
          const reply = this.publicRoutes.route(one, peer);
          return reply instanceof Promise ? await reply : reply;
        } catch (error) {
          return this.refusal(one, error);
        }
      }),
    };
    this.peerRoutes = new PeerRoutes(ctx, { failures: this.failures, maps: this.maps, sync: this.sync, resharding });
    this.metrics = new Metrics(
      { core: this.core, replicator, parked: this.parked, background, repairStatus: () => this.sync.repairStatus(), reshard: () => this.resharding.progress(), forwardBatches: () => forwarding.batchCounts, storage: this.storage },
      { realProcess: env.timers === undefined, timers: this.timers },
    );
  }

  // ---------------------------------------------------------------- life cycle

  /** Listens on the configured address, then joins the store (`run`). */
  async start(): Promise<void> {
    const clients = clientClass(
      this.config,
      (method, path) => (method === 'PUT' || method === 'DELETE') && path.startsWith('/kvs/') && this.publicRoutes.replicationBacklogged(keyOf(path)),
    );
    this.server = await startHttpServer({
      host: this.config.listenHost,
      port: this.config.port,
      tls: this.tls,
      classify: (path) => (path.startsWith('/internal/') ? PEER_CLASS : clients),
      handler: (request) => this.handle(request),
      onError: (error) => this.log.error({ err: error }, 'request failed'),
      onRefused: ({ status, reason, remoteAddress }) => {
        this.metrics.refused(status);
        const suppressed = this.refusals.take(`${status} ${reason}`);
        if (suppressed !== null) this.log.warn({ status, reason, remoteAddress, suppressed }, 'request refused before routing');
      },
    });
    this.log.info(
      { version: VERSION, host: this.config.listenHost, port: this.config.port, view: this.config.view, shardCount: this.config.shardCount },
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
    this.names?.start();
    await discover(this.ctx, this.maps);
    await announce(this.ctx, this.gate);
    this.failures.start();
    this.sync.startAntiEntropy();
    if (this.core.replicaIsRestored) await this.sync.catchUp();
    else if (this.core.replica !== null) await this.sync.fullSync('start');
    this.log.info({ epoch: this.core.map.epoch, shard: this.core.shard, ms: this.timers.now() - this.startedMs }, 'ready');
  }

  async close(): Promise<void> {
    this.closed = true;
    this.failures.stop();
    this.names?.stop();
    this.sync.stop();
    this.parked.closeAll();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
    await this.peers.close();
    this.storage.close();
  }

  // ---------------------------------------------------------------- routing

  /** One request, from a client or a peer, as the HTTP server (or the simulator) delivers it; counted and timed in /metrics. */
  handle(request: HttpRequest): Promise<HttpReply> {
    return this.metrics.timed(request.method, request.path, () => this.route(request));
  }

  private async route(request: HttpRequest): Promise<HttpReply> {
    const { method, path } = request;
    try {
      // Only a request that claims to be a node's is checked (a client's costs nothing here).
      const trusted = (path.startsWith('/internal/') || hasPeerHeader(request.headers)) && this.gate.fromPeer(request);
      const peer = this.gate.peerHeaders(request, trusted);
      if (path.startsWith('/internal/') && !trusted) return this.gate.refusePeerRoute(request);
      if (path === KV_BATCH_PATH && method === 'POST') return serveBatch(parseBatch(request.body), request, peer, this.batches);
      const reply = path.startsWith('/internal/')
        ? this.peerRoutes.route(method, path, request.body, peer.from, peer.incarnation)
        : this.publicRoutes.route(request, peer);
      // A route answers at once (a refusal, a 404) or later: only the later answer is awaited.
      return reply instanceof Promise ? await reply : reply;
    } catch (error) {
      return this.refusal(request, error);
    }
  }

  /** The answer to a request whose route threw: a refusal for what the request got wrong; anything else is rethrown. */
  private refusal(request: Pick<HttpRequest, 'method' | 'path' | 'remoteAddress'>, error: unknown): HttpReply {
    if (error instanceof Unauthorized) return this.gate.refuseUnauthorized(request, error.message);
    if (error instanceof BadRequest) return json(400, { error: error.message });
    if (error instanceof URIError) return json(400, { error: 'Path is not valid URL encoding' });
    throw error;
  }

  status(): Record<string, unknown> {
    const status = nodeStatus(this.ctx, {
      linkStatus: () => this.failures.linkStatus(),
      repairStatus: () => this.sync.repairStatus(),
      lateTransfers: () => this.maps.lateTransfers,
      requests: () => this.metrics.kv.snapshot(),
      reshard: () => this.resharding.progress(),
    });
    // Without a cluster secret: the node names looked up for the address check.
    return this.names === null ? status : { ...status, peerNames: this.names.snapshot() };
  }
}
