// A typed client of the store's public HTTP API (shared/spec/api.md).
//
// A KvsClient is one causal session: it sends the session's causal metadata with every request and
// keeps the metadata of every answer, so read-your-writes and monotonic reads hold without the caller
// looking at it. It talks to one preferred node and moves to the next one only when a node cannot be
// reached. One undici Pool per node keeps connections alive between requests.
//
// A session is sequential: the metadata is opaque, so answers cannot be merged, and of requests
// made concurrently on one client the session keeps the metadata of the answer that came last.
// Concurrent flows each take their own client (pass `metadata` along to chain them).

import { Pool } from 'undici';
import { KvsError, wasNeverSent } from './errors.ts';
import type { KvsErrorCode } from './errors.ts';
import type { NodeStatus, ReshardPlan, StoreStatus } from './status-types.ts';

export { KvsError, isKvsError } from './errors.ts';
export type { KvsErrorCode } from './errors.ts';
/**
 * A node's `host:port` and a shard's id as a client sees them: plain strings, which the server
 * validates. (The server's core brands its own NodeAddress and ShardId; a branded value passes here.)
 */
export type NodeAddress = string;
export type ShardId = string;

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
/** The store's causal metadata: opaque, passed back as received. `null` before the first answer. */
export type CausalMetadata = JsonValue;

export type PutResult = { result: 'created' | 'replaced'; shardId: ShardId };
export type GetResult = { found: true; value: JsonValue; shardId: ShardId } | { found: false };
export type DeleteResult = { deleted: true; shardId: ShardId } | { deleted: false };

export type { NodeStatus, ReshardPlan, ReshardProgress, StoreNodeStatus, StoreNodeTombstones, StoreStatus } from './status-types.ts';

export type KvsClientOptions = {
  /** Nodes to talk to; the first is preferred until it fails. At least one. */
  nodes: NodeAddress[];
  /** Bound on one attempt at one node, from queueing to the last byte of the answer. A node waits up
   * CAUSAL_WAIT_MS (1 s by default) before answering 503, so this must be comfortably above that. */
  timeoutMs?: number;
  /** Bound on establishing a TCP connection. Shorter than timeoutMs because a node that does not
   * accept a connection this quickly is down or cut off, and another node is worth trying. */
  connectTimeoutMs?: number;
  /** Keep-alive connections per node. */
  connectionsPerNodeMax?: number;
  /** Answers larger than this are refused (values are at most ~2 MiB, see MAX_BODY_BYTES). */
  responseBytesMax?: number;
  /** Metadata to resume a session with (from another client's `metadata`). */
  metadata?: CausalMetadata;
  /** The store's ADMIN_TOKEN: sent as `Authorization: Bearer <token>` with the topology changes
   * (addToView, removeFromView, addMember, reshard) and with nothing else. Without it, a store that
   * has one answers those with 401 (`unauthorized`). */
  adminToken?: string;
  /**
   * A store with TLS: talk HTTPS, trusting the store's CA (PEM) by its chain, not by the address
   * in a node's certificate (nodes are addressed by IP). Absent: plain HTTP.
   */
  tls?: { ca: string | Buffer };
};

const timeoutMsDefault = 5_000;
const connectTimeoutMsDefault = 1_000;
const connectionsPerNodeMaxDefault = 8;
const responseBytesMaxDefault = 8 * 1024 * 1024;

// The spec fixes these strings byte for byte, which is what lets the client tell "no such key"
// (a normal answer) from a 404 of another kind, and a causal 503 from any other 503.
const keyAbsentError = 'Key does not exist';
const viewAbsentError = 'View has no such replica';
const causalError = 'Causal dependencies not satisfied; try again later';

type Method = 'GET' | 'PUT' | 'DELETE';
type Answer = { status: number; body: Record<string, unknown>; node: NodeAddress };
/** `admin`: a topology change, which carries the admin token when the client has one. */
type Attempt = { method: Method; path: string; fields?: Record<string, JsonValue>; node?: NodeAddress; admin?: boolean };

export class KvsClient {
  readonly nodes: readonly NodeAddress[];
  #metadata: CausalMetadata;
  #preferredIndex = 0;
  #closed = false;
  readonly #pools = new Map<NodeAddress, Pool>();
  readonly #timeoutMs: number;
  readonly #connectTimeoutMs: number;
  readonly #connectionsPerNodeMax: number;
  readonly #responseBytesMax: number;
  readonly #adminToken: string | undefined;
  readonly #tls: { ca: string | Buffer } | undefined;

  constructor(options: KvsClientOptions) {
    if (options.nodes.length === 0) throw new TypeError('KvsClient needs at least one node');
    for (const node of options.nodes) assertAddress(node);
    this.nodes = [...options.nodes];
    this.#metadata = options.metadata ?? null;
    this.#timeoutMs = options.timeoutMs ?? timeoutMsDefault;
    this.#connectTimeoutMs = Math.min(options.connectTimeoutMs ?? connectTimeoutMsDefault, this.#timeoutMs);
    this.#connectionsPerNodeMax = options.connectionsPerNodeMax ?? connectionsPerNodeMaxDefault;
    this.#responseBytesMax = options.responseBytesMax ?? responseBytesMaxDefault;
    if (options.adminToken !== undefined && !/^[\x21-\x7e]+$/.test(options.adminToken)) {
      throw new TypeError('adminToken must be printable characters without spaces');
    }
    this.#adminToken = options.adminToken;
    this.#tls = options.tls;
  }

  /** The session's causal metadata; hand it to another client to continue the same session. */
  get metadata(): CausalMetadata {
    return this.#metadata;
  }

  set metadata(metadata: CausalMetadata) {
    this.#metadata = metadata;
  }

  async put(key: string, value: JsonValue): Promise<PutResult> {
    const answer = await this.#send({ method: 'PUT', path: kvsPath(key), fields: { value } });
    expectStatus(answer, [200, 201]);
    const result = answer.body.result;
    if (result !== 'created' && result !== 'replaced') throw badResponse(answer, 'result');
    return { result, shardId: expectString(answer, 'shard-id') };
  }

  async get(key: string): Promise<GetResult> {
    const answer = await this.#send({ method: 'GET', path: kvsPath(key) });
    if (isKeyAbsent(answer)) return { found: false };
    expectStatus(answer, [200]);
    if (!('value' in answer.body)) throw badResponse(answer, 'value');
    return { found: true, value: answer.body.value as JsonValue, shardId: expectString(answer, 'shard-id') };
  }

  async delete(key: string): Promise<DeleteResult> {
    const answer = await this.#send({ method: 'DELETE', path: kvsPath(key) });
    if (isKeyAbsent(answer)) return { deleted: false };
    expectStatus(answer, [200]);
    return { deleted: true, shardId: expectString(answer, 'shard-id') };
  }

  async view(): Promise<NodeAddress[]> {
    const answer = await this.#send({ method: 'GET', path: '/view' });
    expectStatus(answer, [200]);
    return expectStringArray(answer, 'view');
  }

  async addToView(address: NodeAddress): Promise<{ added: boolean }> {
    const answer = await this.#send({ method: 'PUT', path: '/view', fields: { 'socket-address': address }, admin: true });
    expectStatus(answer, [200, 201]);
    return { added: answer.status === 201 };
  }

  async removeFromView(address: NodeAddress): Promise<{ removed: boolean }> {
    const answer = await this.#send({ method: 'DELETE', path: '/view', fields: { 'socket-address': address }, admin: true });
    if (answer.status === 404 && answer.body.error === viewAbsentError) return { removed: false };
    expectStatus(answer, [200]);
    return { removed: true };
  }

  async shardIds(): Promise<ShardId[]> {
    const answer = await this.#send({ method: 'GET', path: '/shard/ids' });
    expectStatus(answer, [200]);
    return expectStringArray(answer, 'shard-ids');
  }

  /** The shard of `node` (or of the node that answers), `null` for a node in no shard. */
  async nodeShardId(node?: NodeAddress): Promise<ShardId | null> {
    const answer = await this.#send({ method: 'GET', path: '/shard/node-shard-id', node });
    expectStatus(answer, [200]);
    const shardId = answer.body['node-shard-id'];
    if (shardId !== null && typeof shardId !== 'string') throw badResponse(answer, 'node-shard-id');
    return shardId;
  }

  async shardMembers(shardId: ShardId): Promise<NodeAddress[]> {
    const answer = await this.#send({ method: 'GET', path: `/shard/members/${encodeURIComponent(shardId)}` });
    expectStatus(answer, [200]);
    return expectStringArray(answer, 'shard-members');
  }

  async shardKeyCount(shardId: ShardId): Promise<number> {
    const answer = await this.#send({ method: 'GET', path: `/shard/key-count/${encodeURIComponent(shardId)}` });
    expectStatus(answer, [200]);
    const count = answer.body['shard-key-count'];
    if (typeof count !== 'number') throw badResponse(answer, 'shard-key-count');
    return count;
  }

  async addMember(shardId: ShardId, address: NodeAddress): Promise<void> {
    const answer = await this.#send({
      method: 'PUT',
      path: `/shard/add-member/${encodeURIComponent(shardId)}`,
      fields: { 'socket-address': address },
      admin: true,
    });
    expectStatus(answer, [200]);
  }

  async reshard(shardCount: number): Promise<void> {
    const answer = await this.#send({ method: 'PUT', path: '/shard/reshard', fields: { 'shard-count': shardCount }, admin: true });
    expectStatus(answer, [200]);
  }

  /** GET /status of one node (of the preferred node when none is named); no failover when named,
   * since the question is about that node. */
  async status(node?: NodeAddress): Promise<NodeStatus> {
    const answer = await this.#send({ method: 'GET', path: '/status', node });
    expectStatus(answer, [200]);
    if (typeof answer.body.ready !== 'boolean') throw badResponse(answer, 'ready');
    return answer.body as NodeStatus;
  }

  /**
   * GET /status/store: every node of the store (the dead ones too) with its state, keys and
   * backlogs, as one node sees it; the first node that answers (or the named one).
   */
  async storeStatus(node?: NodeAddress): Promise<StoreStatus> {
    const answer = await this.#send({ method: 'GET', path: '/status/store', node });
    expectStatus(answer, [200]);
    if (!Array.isArray(answer.body.nodes) || !Array.isArray(answer.body.shards)) throw badResponse(answer, 'nodes');
    return answer.body as unknown as StoreStatus;
  }

  /** GET /shard/reshard-plan/N: what a reshard to `shardCount` shards would move; nothing moves. */
  async reshardPlan(shardCount: number): Promise<ReshardPlan> {
    const answer = await this.#send({ method: 'GET', path: `/shard/reshard-plan/${shardCount}` });
    expectStatus(answer, [200]);
    if (!Array.isArray(answer.body.before) || !Array.isArray(answer.body.after)) throw badResponse(answer, 'before');
    return answer.body as unknown as ReshardPlan;
  }

  /** Closes every connection; the client cannot be used afterwards. */
  async close(): Promise<void> {
    this.#closed = true;
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map((pool) => pool.close()));
  }

  // Sends to the named node only, or to each node once starting with the preferred one, moving on
  // only when the request cannot have had an effect (or is a read, which is safe to repeat).
  async #send(attempt: Attempt): Promise<Answer> {
    if (this.#closed) throw new Error('KvsClient is closed');
    const body = JSON.stringify({ ...attempt.fields, 'causal-metadata': this.#metadata });
    const candidates = attempt.node === undefined ? this.#rotation() : [attempt.node];
    let lastError: KvsError | undefined;
    for (const node of candidates) {
      try {
        const answer = await this.#sendTo(node, attempt, body);
        // A session only moves forward: an answer without metadata (an error, a view request) keeps
        // what the session had, rather than forgetting what it depends on.
        const metadata = answer.body['causal-metadata'];
        if (metadata !== undefined && metadata !== null) this.#metadata = metadata as CausalMetadata;
        if (attempt.node === undefined) this.#preferredIndex = this.nodes.indexOf(node);
        return answer;
      } catch (err) {
        const failure = transportFailure(err, node, this.#timeoutMs);
        if (failure === undefined) throw err;
        lastError = failure.error;
        // A write that may have reached the node is not repeated elsewhere: it may have been applied,
        // and a second copy would report the wrong result ('replaced', deleted: false).
        if (!failure.notSent && attempt.method !== 'GET') throw failure.error;
      }
    }
    // Only reached when every candidate failed in a way that made trying the next one worthwhile.
    if (candidates.length === 1 || lastError === undefined) throw lastError;
    throw new KvsError({
      code: lastError.code,
      message: `no node answered (tried ${candidates.join(', ')}); last: ${lastError.message}`,
      node: lastError.node,
      cause: lastError,
    });
  }

  #rotation(): NodeAddress[] {
    const start = this.#preferredIndex;
    return this.nodes.map((_, i) => this.nodes[(start + i) % this.nodes.length]!);
  }

  async #sendTo(node: NodeAddress, attempt: Attempt, body: string): Promise<Answer> {
    const response = await this.#pool(node).request({
      method: attempt.method,
      path: attempt.path,
      headers:
        attempt.admin === true && this.#adminToken !== undefined
          ? { 'content-type': 'application/json', authorization: `Bearer ${this.#adminToken}` }
          : { 'content-type': 'application/json' },
      body,
      // undici closes the connection after a GET or DELETE that has a body unless told otherwise
      // (HTTP gives such bodies no meaning); ours carry the metadata, so keep the connection alive.
      reset: false,
      signal: AbortSignal.timeout(this.#timeoutMs),
    });
    const chunks: Buffer[] = [];
    let bytes = 0;
    for await (const chunk of response.body) {
      bytes += (chunk as Buffer).length;
      if (bytes > this.#responseBytesMax) {
        response.body.destroy();
        throw new KvsError({
          code: 'bad_response',
          message: `answer from ${node} is larger than ${this.#responseBytesMax} bytes`,
          status: response.statusCode,
          node,
        });
      }
      chunks.push(chunk as Buffer);
    }
    // Decoded once at the end: a chunk boundary may fall inside a multi-byte character.
    const text = Buffer.concat(chunks).toString('utf8');
    let parsed: unknown;
    try {
      parsed = text === '' ? {} : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new KvsError({
        code: 'bad_response',
        message: `answer from ${node} (${response.statusCode}) is not a JSON object: ${text.slice(0, 200)}`,
        status: response.statusCode,
        node,
      });
    }
    return { status: response.statusCode, body: parsed as Record<string, unknown>, node };
  }

  #pool(node: NodeAddress): Pool {
    let pool = this.#pools.get(node);
    if (pool === undefined) {
      assertAddress(node);
      pool = new Pool(`${this.#tls === undefined ? 'http' : 'https'}://${node}`, {
        connections: this.#connectionsPerNodeMax,
        connect:
          this.#tls === undefined
            ? { timeout: this.#connectTimeoutMs }
            : { timeout: this.#connectTimeoutMs, ca: this.#tls.ca, rejectUnauthorized: true, checkServerIdentity: () => undefined },
      });
      this.#pools.set(node, pool);
    }
    return pool;
  }
}

function assertAddress(node: NodeAddress): void {
  if (!/^[^\s/:]+:\d{1,5}$/.test(node) && !/^\[[0-9a-fA-F:.]+\]:\d{1,5}$/.test(node)) {
    throw new TypeError(`not a node address (host:port): ${JSON.stringify(node)}`);
  }
}

function kvsPath(key: string): string {
  return `/kvs/${encodeURIComponent(key)}`;
}

function isKeyAbsent(answer: Answer): boolean {
  return answer.status === 404 && answer.body.error === keyAbsentError;
}

function errorCodeOf(status: number, serverMessage: string): KvsErrorCode {
  if (status === 503 && serverMessage === causalError) return 'causal_unavailable';
  if (status === 401) return 'unauthorized';
  if (status === 404) return 'not_found';
  if (status === 409) return 'conflict';
  if (status === 413) return 'payload_too_large';
  if (status >= 500) return 'unavailable';
  return 'bad_request';
}

// Maps an undici failure to a KvsError; undefined for errors that are not transport failures
// (a KvsError from an answer, a bug), which are rethrown as they are.
function transportFailure(
  err: unknown,
  node: NodeAddress,
  timeoutMs: number,
): { error: KvsError; notSent: boolean } | undefined {
  if (err instanceof KvsError) return undefined;
  if (!(err instanceof Error)) return undefined;
  const code = (err as { code?: unknown }).code;
  if (wasNeverSent(err)) {
    return {
      error: new KvsError({ code: 'unavailable', message: `cannot reach ${node}: ${code}`, node, cause: err }),
      notSent: true,
    };
  }
  if (err.name === 'TimeoutError' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
    return {
      error: new KvsError({ code: 'timeout', message: `${node} did not answer within ${timeoutMs} ms`, node, cause: err }),
      notSent: false,
    };
  }
  if (typeof code === 'string' && (code.startsWith('UND_ERR_') || code.startsWith('E'))) {
    return {
      error: new KvsError({ code: 'unavailable', message: `connection to ${node} failed: ${err.message}`, node, cause: err }),
      notSent: false,
    };
  }
  return undefined;
}

// Accepts the statuses a request expects; any other becomes a KvsError whose code says what kind of
// failure it is. Callers handle the 404s that are normal answers ("no such key") before this.
function expectStatus(answer: Answer, statuses: number[]): void {
  if (statuses.includes(answer.status)) return;
  if (answer.status >= 400) {
    const serverMessage = typeof answer.body.error === 'string' ? answer.body.error : JSON.stringify(answer.body);
    throw new KvsError({
      code: errorCodeOf(answer.status, serverMessage),
      message: `${answer.node}: ${answer.status} ${serverMessage}`,
      status: answer.status,
      node: answer.node,
    });
  }
  throw new KvsError({
    code: 'bad_response',
    message: `${answer.node}: unexpected status ${answer.status}: ${JSON.stringify(answer.body).slice(0, 200)}`,
    status: answer.status,
    node: answer.node,
  });
}

function expectString(answer: Answer, field: string): string {
  const value = answer.body[field];
  if (typeof value !== 'string') throw badResponse(answer, field);
  return value;
}

function expectStringArray(answer: Answer, field: string): string[] {
  const value = answer.body[field];
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) throw badResponse(answer, field);
  return value;
}

function badResponse(answer: Answer, field: string): KvsError {
  return new KvsError({
    code: 'bad_response',
    message: `${answer.node}: answer ${answer.status} lacks a valid "${field}": ${JSON.stringify(answer.body).slice(0, 200)}`,
    status: answer.status,
    node: answer.node,
  });
}
