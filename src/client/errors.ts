// Errors of the client library. Every error carries a stable `code` string (the undici habit), so
// callers branch on `err.code` rather than on messages or HTTP statuses, which may be reworded.

import type { NodeAddress } from '../core/types.ts';

export type KvsErrorCode =
  /** 400 (or another 4xx): the store refused the request (no value, key too long, impossible shard count...). */
  | 'bad_request'
  /** 404 where absence is not a normal answer: unknown shard, unknown node. */
  | 'not_found'
  /** 409: the request conflicts with the store's state (a node already a member of another shard). */
  | 'conflict'
  /** 413: the request body is larger than the node accepts. */
  | 'payload_too_large'
  /** 503 "Causal dependencies not satisfied": the replica lacks writes this session depends on.
   * Retrying later, or against another node, may succeed; the session metadata is unchanged. */
  | 'causal_unavailable'
  /** No node could be reached, or a node answered with another 5xx. */
  | 'unavailable'
  /** A node accepted the request but gave no complete answer within timeoutMs. */
  | 'timeout'
  /** A node answered with something that is not the JSON the API promises. */
  | 'bad_response';

export class KvsError extends Error {
  readonly code: KvsErrorCode;
  /** HTTP status of the answer, when a node answered at all. */
  readonly status: number | undefined;
  /** The node that answered, or the last one tried. */
  readonly node: NodeAddress | undefined;

  constructor(options: {
    code: KvsErrorCode;
    message: string;
    status?: number;
    node?: NodeAddress;
    cause?: unknown;
  }) {
    super(options.message, { cause: options.cause });
    this.name = 'KvsError';
    this.code = options.code;
    this.status = options.status;
    this.node = options.node;
  }
}

export function isKvsError(err: unknown, code?: KvsErrorCode): err is KvsError {
  return err instanceof KvsError && (code === undefined || err.code === code);
}

/**
 * Transport failures that prove a request never reached the node (no connection was made), shared
 * by every HTTP client of the project. Only these let a write be sent to another node: after any
 * other failure (a timeout, a connection dropped mid-way) the node may have applied it, or may
 * still, when the network delivers it late.
 */
export const NOT_SENT_ERROR_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** True when `error` (an undici or socket error) proves the request never left. */
export function wasNeverSent(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && NOT_SENT_ERROR_CODES.has(code);
}
