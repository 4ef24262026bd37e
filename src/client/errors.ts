// Errors of the client library. Every error carries a stable `code` string (the undici habit), so
// callers branch on `err.code` rather than on messages or HTTP statuses, which may be reworded.

export type KvsErrorCode =
  /** 400 (or another 4xx): the store refused the request (no value, key too long, impossible shard count...). */
  | 'bad_request'
  /** 404 where absence is not a normal answer: unknown shard, unknown node. */
  | 'not_found'
  /** 401: a topology change (view, add-member, reshard) without the store's admin token, or with a
   * wrong one (the nodes run with ADMIN_TOKEN; give the client `adminToken`). */
  | 'unauthorized'
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
  /** The node's `host:port` (a plain string, as everywhere in the client). */
  readonly node: string | undefined;

  constructor(options: {
    code: KvsErrorCode;
    message: string;
    status?: number;
    node?: string;
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
  // TLS: the handshake failed, so no request was written or, in TLS 1.3 where the client may write
  // before the server has checked its certificate, none was read: the server refused the
  // connection before any application data. Later TLS failures (a bad record on an established
  // connection) are not listed: a request may have been served by then.
  // Our check of the server's certificate (Node's names for OpenSSL's X509 verification errors):
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_CRL',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECRYPT_CRL_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_SIGNATURE_FAILURE',
  'CRL_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CRL_NOT_YET_VALID',
  'CRL_HAS_EXPIRED',
  'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'ERROR_IN_CRL_LAST_UPDATE_FIELD',
  'ERROR_IN_CRL_NEXT_UPDATE_FIELD',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'CERT_CHAIN_TOO_LONG',
  'CERT_REVOKED',
  'INVALID_CA',
  'PATH_LENGTH_EXCEEDED',
  'INVALID_PURPOSE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  // The other side does not speak TLS (a plain HTTP server), or refused the handshake with an alert:
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_SSL_UNSUPPORTED_PROTOCOL',
  'ERR_SSL_NO_PROTOCOLS_AVAILABLE',
  'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION',
  'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE',
  'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA',
  'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE',
  'ERR_SSL_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_REVOKED',
  'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
  'ERR_SSL_TLSV1_ALERT_ACCESS_DENIED',
]);

/** True when `error` (an undici or socket error) proves the request never left. */
export function wasNeverSent(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && NOT_SENT_ERROR_CODES.has(code);
}
