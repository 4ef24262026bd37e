// Requests as a node of the store would send them: signed with the cluster secret the test
// clusters run with (Cluster.start and the lab give every node CLUSTER_SECRET unless told not to).

import { PeerAuth, AUTH_HEADER } from '../../src/node/peer-auth.ts';
import { call, type CallOptions, type HttpMethod, type NodeAddress, type Reply } from './http.ts';

/** The secret of every test store that does not set its own. */
export const TEST_CLUSTER_SECRET = 'test-cluster-secret-not-for-production';

/** Headers that authenticate a request from `from` (x-kvs-from and x-kvs-auth). */
export function signedHeaders(
  method: HttpMethod,
  path: string,
  body: unknown,
  options: { secret?: string; from?: NodeAddress; nowMs?: number; extra?: Record<string, string> } = {},
): Record<string, string> {
  const nowMs = options.nowMs ?? Date.now();
  const auth = new PeerAuth([options.secret ?? TEST_CLUSTER_SECRET], () => nowMs);
  const headers: Record<string, string> = { 'x-kvs-from': options.from ?? '127.0.0.1:1', ...options.extra };
  headers[AUTH_HEADER] = auth.sign({ method, path, body: body === undefined ? '' : JSON.stringify(body), headers });
  return headers;
}

/** One request signed as a node's. */
export function peerCall(
  method: HttpMethod,
  addr: NodeAddress,
  path: string,
  body?: unknown,
  options: CallOptions & { secret?: string; from?: NodeAddress } = {},
): Promise<Reply> {
  const headers = signedHeaders(method, path, body, { ...(options.secret ? { secret: options.secret } : {}), ...(options.from ? { from: options.from } : {}) });
  return call(method, addr, path, body, { ...options, headers: { ...options.headers, ...headers } });
}
