// HTTP helpers for the black-box integration tests.
//
// GET and DELETE carry JSON bodies (the causal metadata travels there). The global fetch refuses a
// body on GET, so everything goes through undici's `request`. Every request has a timeout, so a
// hung node fails the test with a message instead of hanging the suite.

import assert from 'node:assert/strict';
import { Agent, request, type Dispatcher } from 'undici';

/** `IP:PORT` of a node, as in SOCKET_ADDRESS and VIEW. */
export type NodeAddress = string;

/** Opaque causal metadata: clients never look inside it. */
export type CausalMetadata = unknown;

export type HttpMethod = 'GET' | 'PUT' | 'DELETE' | 'POST';

export interface Reply {
  status: number;
  /** Parsed JSON body, or `undefined` when the body was not JSON (see `text`). */
  body: any;
  /** Raw response body text. */
  text: string;
}

export interface CallOptions {
  /** Send this exact text/bytes as the body instead of JSON-encoding `body` (malformed JSON, huge bodies). */
  rawBody?: string | Buffer;
  /** Per-request timeout for headers and for the body, default `REQUEST_TIMEOUT_MS`. */
  timeoutMs?: number;
  /** Extra request headers. */
  headers?: Record<string, string>;
  /** Another connection pool (a source address, a TLS client certificate...). */
  dispatcher?: Dispatcher;
  /** `https` for a store with TLS (with a dispatcher that trusts its CA). */
  scheme?: 'http' | 'https';
}

export const REQUEST_TIMEOUT_MS = 10_000;

// Short keep-alive so a connection to a node that was just SIGKILLed or restarted is not reused for
// long; nodes are on loopback, so connecting again is cheap.
const dispatcher = new Agent({
  keepAliveTimeout: 1_000,
  keepAliveMaxTimeout: 2_000,
  connect: { timeout: 5_000 },
});

/**
 * Sends one request and returns its status and parsed body.
 * `body === undefined` and no `rawBody`: the request carries no body at all.
 */
export async function call(
  method: HttpMethod,
  addr: NodeAddress,
  path: string,
  body?: unknown,
  options: CallOptions = {},
): Promise<Reply> {
  const timeoutMs = options.timeoutMs ?? REQUEST_TIMEOUT_MS;
  const payload = options.rawBody ?? (body === undefined ? undefined : JSON.stringify(body));
  let res;
  try {
    res = await request(`${options.scheme ?? 'http'}://${addr}${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...options.headers },
      body: payload,
      dispatcher: options.dispatcher ?? dispatcher,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
  } catch (err) {
    const e = err as Error & { code?: string };
    throw Object.assign(new Error(`${method} ${options.scheme ?? 'http'}://${addr}${path} failed: ${e.code ?? ''} ${e.message}`, { cause: err }), { code: e.code });
  }
  const text = await res.body.text();
  let parsed: unknown;
  try {
    parsed = text === '' ? undefined : JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: res.statusCode, body: parsed, text };
}

/** Path of a key: the key is URL-encoded, so spaces, slashes, `%` and unicode survive. */
export function kvsPath(key: string): string {
  return `/kvs/${encodeURIComponent(key)}`;
}

export function put(addr: NodeAddress, key: string, value: unknown, meta: CausalMetadata): Promise<Reply> {
  return call('PUT', addr, kvsPath(key), { value, 'causal-metadata': meta });
}

export function get(addr: NodeAddress, key: string, meta: CausalMetadata): Promise<Reply> {
  return call('GET', addr, kvsPath(key), { 'causal-metadata': meta });
}

export function del(addr: NodeAddress, key: string, meta: CausalMetadata): Promise<Reply> {
  return call('DELETE', addr, kvsPath(key), { 'causal-metadata': meta });
}

// ---- small typed wrappers for the view and shard endpoints --------------------------------------

export async function getView(addr: NodeAddress, options: CallOptions = {}): Promise<NodeAddress[]> {
  const r = await call('GET', addr, '/view', undefined, options);
  expectStatus(r, 200, `GET /view at ${addr}`);
  if (!Array.isArray(r.body?.view)) throw new Error(`GET /view at ${addr}: no "view" array: ${r.text}`);
  return r.body.view as NodeAddress[];
}

export async function getShardIds(addr: NodeAddress): Promise<string[]> {
  const r = await call('GET', addr, '/shard/ids');
  expectStatus(r, 200, `GET /shard/ids at ${addr}`);
  if (!Array.isArray(r.body?.['shard-ids'])) throw new Error(`GET /shard/ids at ${addr}: no "shard-ids" array: ${r.text}`);
  return r.body['shard-ids'] as string[];
}

export async function getMembers(addr: NodeAddress, shardId: string): Promise<NodeAddress[]> {
  const r = await call('GET', addr, `/shard/members/${encodeURIComponent(shardId)}`);
  expectStatus(r, 200, `GET /shard/members/${shardId} at ${addr}`);
  if (!Array.isArray(r.body?.['shard-members'])) throw new Error(`GET /shard/members at ${addr}: no "shard-members": ${r.text}`);
  return r.body['shard-members'] as NodeAddress[];
}

export async function getKeyCount(addr: NodeAddress, shardId: string): Promise<number> {
  const r = await call('GET', addr, `/shard/key-count/${encodeURIComponent(shardId)}`);
  expectStatus(r, 200, `GET /shard/key-count/${shardId} at ${addr}`);
  const n = r.body?.['shard-key-count'];
  if (typeof n !== 'number') throw new Error(`GET /shard/key-count at ${addr}: no number: ${r.text}`);
  return n;
}

export async function getNodeShardId(addr: NodeAddress): Promise<string | null> {
  const r = await call('GET', addr, '/shard/node-shard-id');
  expectStatus(r, 200, `GET /shard/node-shard-id at ${addr}`);
  if (!r.body || !('node-shard-id' in r.body)) throw new Error(`GET /shard/node-shard-id at ${addr}: ${r.text}`);
  return r.body['node-shard-id'] as string | null;
}

function expectStatus(r: Reply, status: number, what: string): void {
  if (r.status !== status) throw new Error(`${what}: expected ${status}, got ${r.status} ${r.text}`);
}

/** Compares `IP:PORT` addresses numerically, octet by octet, then by port (the store's order). */
export function compareAddresses(a: NodeAddress, b: NodeAddress): number {
  const key = (x: NodeAddress): number[] => {
    const [ip = '', port = '0'] = x.split(':');
    return [...ip.split('.').map(Number), Number(port)];
  };
  const ka = key(a);
  const kb = key(b);
  for (let i = 0; i < Math.max(ka.length, kb.length); i++) {
    const d = (ka[i] ?? 0) - (kb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

export function sortedAddresses(xs: readonly NodeAddress[]): NodeAddress[] {
  return [...xs].sort(compareAddresses);
}

/**
 * A client that chains causal metadata the way a real client does: every request carries the
 * metadata of the last response it got (from any node).
 */
export class Client {
  meta: CausalMetadata = null;

  async put(addr: NodeAddress, key: string, value: unknown): Promise<Reply> {
    return this.track(await put(addr, key, value, this.meta));
  }

  async get(addr: NodeAddress, key: string): Promise<Reply> {
    return this.track(await get(addr, key, this.meta));
  }

  async del(addr: NodeAddress, key: string): Promise<Reply> {
    return this.track(await del(addr, key, this.meta));
  }

  private track(r: Reply): Reply {
    if (r.status >= 200 && r.status < 300 && r.body && 'causal-metadata' in r.body) {
      this.meta = r.body['causal-metadata'];
    }
    return r;
  }
}

/** Asserts the reply is an error: the given status (or any 4xx) and a JSON object with an "error" string. */
export function assertErrorReply(r: Reply, status: number | '4xx', what: string): void {
  const detail = `${what}: got ${r.status} ${r.text.slice(0, 300)}`;
  if (status === '4xx') assert.ok(r.status >= 400 && r.status < 500, `expected a 4xx status; ${detail}`);
  else assert.equal(r.status, status, `expected status ${status}; ${detail}`);
  assert.ok(r.body !== null && typeof r.body === 'object' && !Array.isArray(r.body), `expected a JSON object body; ${detail}`);
  assert.equal(typeof r.body.error, 'string', `expected an "error" string; ${detail}`);
}

/** Shard ids and the members of each, as one node answers them. */
export interface ShardLayout {
  ids: string[];
  members: Record<string, NodeAddress[]>;
}

export async function readShardLayout(addr: NodeAddress): Promise<ShardLayout> {
  const ids = await getShardIds(addr);
  const members: Record<string, NodeAddress[]> = {};
  for (const id of ids) members[id] = await getMembers(addr, id);
  return { ids, members };
}

/** The shard a layout puts `addr` in, or null. */
export function shardOf(layout: ShardLayout, addr: NodeAddress): string | null {
  for (const id of layout.ids) if (layout.members[id]?.includes(addr)) return id;
  return null;
}
