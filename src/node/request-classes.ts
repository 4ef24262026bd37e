// The two classes of requests the HTTP server admits, each within bounds of its own: clients (every
// route but /internal/) and nodes (/internal/), so that a client flood cannot starve the nodes.

import { VALUE_DEPTH_MAX } from '../core/json-value.ts';
import type { NodeConfig } from './config.ts';
import type { RequestClass } from './http-server.ts';
import { INTERNAL_BODY_BYTES_MAX, PEER_BODY_DEPTH_MAX, PEER_BYTES_MAX, PEER_REQUESTS_MAX } from './limits.ts';

/** The deepest a client's body may nest: its object holds the value one level down. */
export const CLIENT_BODY_DEPTH_MAX = VALUE_DEPTH_MAX + 1;

/** Limits of client requests; `shed` says whether to refuse a request before reading its body (a write while replication is backlogged). */
export function clientClass(config: NodeConfig, shed: (method: string, path: string) => boolean): RequestClass {
  return {
    name: 'client',
    bodyBytesMax: config.maxBodyBytes,
    depthMax: CLIENT_BODY_DEPTH_MAX,
    depthMessage: `Request body nests arrays or objects deeper than ${CLIENT_BODY_DEPTH_MAX} levels (a value may nest ${VALUE_DEPTH_MAX})`,
    inFlight: { requestsMax: config.clientRequestsMax, bytesMax: config.clientBytesMax },
    admits: (method, path) => !shed(method, path),
  };
}

/** Limits of requests between nodes (/internal/). */
export const PEER_CLASS: RequestClass = {
  name: 'peer',
  bodyBytesMax: INTERNAL_BODY_BYTES_MAX,
  depthMax: PEER_BODY_DEPTH_MAX,
  depthMessage: `Request body nests arrays or objects deeper than ${PEER_BODY_DEPTH_MAX} levels`,
  inFlight: { requestsMax: PEER_REQUESTS_MAX, bytesMax: PEER_BYTES_MAX },
};
