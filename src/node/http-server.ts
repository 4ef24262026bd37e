import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerOptions, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { bodyFault } from '../core/json-value.ts';
import { RawJson } from './replies.ts';
import {
  CONNECTIONS_MAX,
  HANDSHAKE_MS_MAX,
  HEADERS_MS_MAX,
  KEEP_ALIVE_MS,
  LINGER_BYTES_MAX,
  LINGER_MS_MAX,
  REQUEST_MS_MAX,
  RETRY_AFTER_S,
  SHED_DRAIN_PAUSE_MS,
  TIMEOUT_CHECK_INTERVAL_MS,
} from './limits.ts';

export { CONNECTIONS_MAX, LINGER_BYTES_MAX, LINGER_MS_MAX, RETRY_AFTER_S };

export interface HttpRequest {
  method: string;
  /** Path without the query string, still percent-encoded. */
  path: string;
  headers: IncomingMessage['headers'];
  /** Parsed JSON body; undefined when the request had no body. */
  body: unknown;
  /** The body's text as received (undefined when there was none): what a peer's authenticator covers. */
  rawBody?: string;
  /** IP address the connection came from (node-to-node headers are honoured only from nodes). */
  remoteAddress: string;
  /**
   * With TLS: the connection presented a client certificate that the cluster's CA signed (so it
   * comes from a node). Absent or false otherwise.
   */
  peerCertified?: boolean;
}

export interface HttpReply {
  status: number;
  /** Sent as JSON; with `contentType`, a string or Buffer sent as it is. */
  body: unknown;
  /** The body is not JSON but this type (`text/html; charset=utf-8`, ...). */
  contentType?: string;
  /** Extra response headers (content-type and content-length are set from the body). */
  headers?: Record<string, string>;
  /**
   * An answer sent as it is made (chunked, of `contentType`), in place of `body`: `stream` writes
   * its parts and resolves once it has written the last. The request counts as in flight until then.
   */
  stream?: (write: (text: string) => void) => Promise<void>;
}

export type Handler = (request: HttpRequest) => Promise<HttpReply>;

/**
 * What a node may hold at once for one class of requests (clients, peers). Beyond either bound a
 * new request is answered 503 with Retry-After at once, before its body is read into memory.
 */
export interface InFlightLimits {
  requestsMax: number;
  /** Bytes of request bodies being read or served. */
  bytesMax: number;
}

/** The limits of the class a path belongs to. */
export interface RequestClass {
  name: string;
  /** Largest body accepted; larger ones get 413. */
  bodyBytesMax: number;
  /** Deepest nesting of arrays and objects accepted in a body; deeper ones get 400. */
  depthMax: number;
  /** What the 400 for a too-deep body says. */
  depthMessage: string;
  inFlight: InFlightLimits;
  /** False to shed a request (503 with Retry-After) before its body is read: the node is too busy for it. */
  admits?: (method: string, path: string) => boolean;
}

export interface HttpServerOptions {
  host: string;
  port: number;
  classify: (path: string) => RequestClass;
  handler: Handler;
  onError: (error: unknown) => void;
  /**
   * A request the HTTP parser refused, or one shed by admission (rate limited by the caller). With
   * TLS, also a connection whose TLS handshake failed: status 0, as nothing was answered.
   */
  onRefused: (what: { status: number; reason: string; remoteAddress: string }) => void;
  /**
   * PEM certificate (with any intermediates), key and CA: serve HTTPS. A client may present a
   * certificate; one the CA signed marks its requests `peerCertified`. Clients without one are
   * served all the same (the public API needs no certificate). Absent: plain HTTP.
   */
  tls?: { cert: string | Buffer; key: string | Buffer; ca: string | Buffer };
}

const OVERLOADED = 'The node is overloaded; try again later';

/** Requests and body bytes in flight for one class. */
class InFlight {
  requests = 0;
  bytes = 0;
}

/**
 * A node:http server (node:https with `tls`): it reads bodies on every method (clients send JSON
 * on GET and DELETE), bounds them, and turns every failure into a JSON error, never a crash, an
 * empty answer or a reset: what Node's HTTP parser refuses is answered on the socket
 * (`clientError`), CONNECT and unknown methods get 405, an over-size body a 413 the client can
 * read. A failed TLS handshake has no channel to answer on: its socket is destroyed. Frameworks
 * that drop GET bodies are why this is not fastify.
 */
export async function startHttpServer(options: HttpServerOptions): Promise<Server> {
  const inFlight = new Map<string, InFlight>();
  const httpOptions: ServerOptions = {
    keepAliveTimeout: KEEP_ALIVE_MS,
    headersTimeout: HEADERS_MS_MAX,
    requestTimeout: REQUEST_MS_MAX,
    connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
    // A request without Host would get Node's own empty 400; we answer every request ourselves.
    requireHostHeader: false,
  };
  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    serve(req, res, options, inFlight).catch((error: unknown) => {
      options.onError(error);
      if (!res.headersSent) send(res, 500, { error: 'Internal error' });
      else res.destroy();
    });
  };
  const tls = options.tls;
  // Connections whose TLS handshake completed: only on those does an HTTP answer make sense.
  const secured = new WeakSet<Duplex>();
  let server: Server;
  if (tls === undefined) {
    server = createServer(httpOptions, listener);
  } else {
    const https = createHttpsServer(
      {
        ...httpOptions,
        cert: tls.cert,
        key: tls.key,
        ca: tls.ca,
        // Ask every client for a certificate, but serve those without one (or with one the CA did
        // not sign): the public API is for any client; `peerCertified` tells nodes apart.
        requestCert: true,
        rejectUnauthorized: false,
        handshakeTimeout: HANDSHAKE_MS_MAX,
      },
      listener,
    );
    https.on('secureConnection', (socket: TLSSocket) => secured.add(socket));
    // node:https is a tls.Server with node:http's request handling mixed in: the same events and methods.
    server = https as unknown as Server;
  }
  server.maxConnections = CONNECTIONS_MAX;
  server.on('clientError', (error: Error & { code?: string; rawPacket?: Buffer }, socket: Duplex) => {
    if (tls !== undefined && (!secured.has(socket) || error.code?.startsWith('ERR_SSL_') === true)) {
      // A TLS handshake that failed (plain HTTP sent to HTTPS, a client refusing our certificate,
      // a handshake timeout), or a TLS failure later: there is no channel to answer on.
      const what = secured.has(socket) ? 'TLS failed' : 'TLS handshake failed';
      if (error.code !== 'ECONNRESET') options.onRefused({ status: 0, reason: `${what}: ${error.code ?? error.message}`, remoteAddress: remoteOf(socket) });
      socket.destroy();
      return;
    }
    if (error.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const [status, message] = parserRefusal(error);
    options.onRefused({ status, reason: error.code ?? error.message, remoteAddress: remoteOf(socket) });
    answerOnSocket(socket, status, message);
  });
  server.on('connect', (req: IncomingMessage, socket: Duplex) => {
    options.onRefused({ status: 405, reason: 'CONNECT', remoteAddress: remoteOf(socket) });
    answerOnSocket(socket, 405, 'Method CONNECT is not allowed');
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
    answerOnSocket(socket, 400, 'Protocol upgrades are not supported');
  });
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    send(res, 417, { error: `Expectation ${JSON.stringify(req.headers.expect)} is not supported` }, true);
  });
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    // An over-size body is refused before the client sends it; anything else may come.
    const declared = declaredLength(req);
    if (declared !== null && declared > options.classify(pathOf(req)).bodyBytesMax) {
      server.emit('request', req, res);
      return;
    }
    res.writeContinue();
    server.emit('request', req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

function pathOf(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const queryAt = url.indexOf('?');
  return queryAt >= 0 ? url.slice(0, queryAt) : url;
}

/** Content-Length as a number, or null when the body is chunked or absent. */
function declaredLength(req: IncomingMessage): number | null {
  const header = req.headers['content-length'];
  return header === undefined ? null : Number(header);
}

function remoteOf(socket: Duplex): string {
  return (socket as Duplex & { remoteAddress?: string }).remoteAddress ?? '';
}

async function serve(req: IncomingMessage, res: ServerResponse, options: HttpServerOptions, inFlight: Map<string, InFlight>): Promise<void> {
  const path = pathOf(req);
  const kind = options.classify(path);
  const remoteAddress = req.socket.remoteAddress ?? '';
  const bodyBytesMax = kind.bodyBytesMax;
  const declared = declaredLength(req);
  if (declared !== null && declared > bodyBytesMax) {
    answerEarly(req, res, 413, `Request body is larger than ${bodyBytesMax} bytes`, DRAIN_TOO_LARGE);
    return;
  }
  let counter = inFlight.get(kind.name);
  if (counter === undefined) inFlight.set(kind.name, (counter = new InFlight()));
  const reserved = declared ?? 0;
  const busy = kind.admits !== undefined && !kind.admits(req.method ?? 'GET', path);
  if (busy || counter.requests >= kind.inFlight.requestsMax || counter.bytes + reserved > kind.inFlight.bytesMax) {
    options.onRefused({ status: 503, reason: busy ? `${kind.name} request shed: node busy` : `${kind.name} requests in flight at their bound`, remoteAddress });
    answerEarly(req, res, 503, OVERLOADED, DRAIN_SHED, { 'retry-after': String(RETRY_AFTER_S) });
    return;
  }
  counter.requests++;
  counter.bytes += reserved;
  let held = reserved;
  try {
    // A chunked body (or one longer than declared... which the parser refuses) reserves as it grows.
    const read = await readBody(req, bodyBytesMax, (size) => {
      if (size > held) {
        counter.bytes += size - held;
        held = size;
      }
      return counter.bytes <= kind.inFlight.bytesMax;
    });
    if (read.kind === 'too-large') {
      answerEarly(req, res, 413, `Request body is larger than ${bodyBytesMax} bytes`, DRAIN_TOO_LARGE);
      return;
    }
    if (read.kind === 'overloaded') {
      answerEarly(req, res, 503, OVERLOADED, DRAIN_SHED, { 'retry-after': String(RETRY_AFTER_S) });
      return;
    }
    if (read.kind === 'aborted') return;
    let body: unknown;
    let text: string;
    try {
      text = utf8.decode(read.bytes);
    } catch {
      send(res, 400, { error: 'Request body is not valid UTF-8' });
      return;
    }
    if (text.trim().length > 0) {
      try {
        body = JSON.parse(text);
      } catch {
        send(res, 400, { error: 'Request body is not valid JSON' });
        return;
      }
      const fault = bodyFault(body, kind.depthMax);
      if (fault === 'depth') {
        send(res, 400, { error: kind.depthMessage });
        return;
      }
      if (fault === 'number') {
        send(res, 400, { error: 'Request body holds a number outside the range of a double (such as 1e400)' });
        return;
      }
    }
    // With TLS: a client certificate the CA signed (`authorized` is false without one, undefined on plain HTTP).
    const peerCertified = (req.socket as TLSSocket).authorized === true;
    const reply = await options.handler({ method: req.method ?? 'GET', path, headers: req.headers, body, rawBody: text, remoteAddress, peerCertified });
    if (reply.stream !== undefined) await sendStream(res, reply, reply.stream);
    else if (reply.contentType === undefined && reply.headers === undefined) send(res, reply.status, reply.body);
    else sendAs(res, reply);
  } finally {
    counter.requests--;
    counter.bytes -= held;
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

type BodyRead =
  | { kind: 'ok'; bytes: Buffer }
  | { kind: 'too-large' }
  | { kind: 'overloaded' }
  | { kind: 'aborted' };

/**
 * Reads a body into memory, at most `bytesMax`. Stops (leaving the rest unread) when the body grows
 * past `bytesMax`, or when `grow` (told the size so far) says the class is past its in-flight bound.
 */
function readBody(req: IncomingMessage, bytesMax: number, grow: (size: number) => boolean): Promise<BodyRead> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (result: BodyRead): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('close', onClose);
      req.off('error', onClose);
      req.pause();
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > bytesMax) return done({ kind: 'too-large' });
      if (!grow(size)) return done({ kind: 'overloaded' });
      chunks.push(chunk);
    };
    const onEnd = (): void => done({ kind: 'ok', bytes: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size) });
    const onClose = (): void => done({ kind: 'aborted' });
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('close', onClose);
    req.on('error', onClose);
  });
}

/** How an early answer reads the rest of the body. */
interface Drain {
  /** Keep the connection for the client's next request once the body is read (else close it). */
  keepAlive: boolean;
  /** Pause this long after each chunk (0: read at full speed). */
  pauseMs: number;
}

/** An over-size body: read it at full speed, so the client finishes and reads its 413, then close. */
const DRAIN_TOO_LARGE: Drain = { keepAlive: false, pauseMs: 0 };
/**
 * A request shed for overload: its body (within the size bound) is read slowly, a pause after
 * each chunk, and the connection is kept. The client has its answer at once; TCP holds it back
 * while the rest of its body trickles in, so a flood slows itself down instead of costing the node
 * CPU, and its connections do not crowd the accept queue that new clients (an operator's
 * `GET /view`) wait in.
 */
const DRAIN_SHED: Drain = { keepAlive: true, pauseMs: SHED_DRAIN_PAUSE_MS };

/**
 * Answers before the body is read (413, or 503 when shedding), then reads and discards what the
 * client still sends, up to LINGER_BYTES_MAX and LINGER_MS_MAX: closing while the client sends
 * would reset the connection and lose the answer. At a bound the connection is closed.
 */
function answerEarly(req: IncomingMessage, res: ServerResponse, status: number, message: string, drain: Drain, headers: Record<string, string> = {}): void {
  const payload = JSON.stringify({ error: message });
  if (!drain.keepAlive) res.shouldKeepAlive = false;
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
    ...(drain.keepAlive ? {} : { connection: 'close' }),
    ...headers,
  });
  res.write(payload);
  if (req.complete) {
    res.end();
    return;
  }
  let drained = 0;
  let pause: NodeJS.Timeout | undefined;
  const finish = (atBound: boolean): void => {
    clearTimeout(timer);
    clearTimeout(pause);
    req.off('data', onData);
    req.off('end', onEnd);
    req.off('close', onEnd);
    req.off('error', onEnd);
    res.end();
    // A body not read to its end cannot be followed by another request on this connection.
    if (atBound && drain.keepAlive) req.socket.destroy();
  };
  const onEnd = (): void => finish(false);
  const onData = (chunk: Buffer): void => {
    drained += chunk.length;
    if (drained > LINGER_BYTES_MAX) return finish(true);
    if (drain.pauseMs > 0) {
      req.pause();
      pause = setTimeout(() => req.resume(), drain.pauseMs);
    }
  };
  const timer = setTimeout(() => finish(true), LINGER_MS_MAX);
  timer.unref();
  req.on('data', onData);
  req.on('end', onEnd);
  req.on('close', onEnd);
  req.on('error', onEnd);
  req.resume();
}

function send(res: ServerResponse, status: number, body: unknown, close = false): void {
  const payload = body instanceof RawJson ? body.text : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
    ...(status === 503 ? { 'retry-after': String(RETRY_AFTER_S) } : {}),
    ...(close ? { connection: 'close' } : {}),
  });
  res.end(payload);
}

/** A reply with its own headers, and a body of its own type (else JSON). */
function sendAs(res: ServerResponse, reply: HttpReply): void {
  const raw = reply.contentType !== undefined && (typeof reply.body === 'string' || Buffer.isBuffer(reply.body));
  const payload = raw ? (reply.body as string | Buffer) : JSON.stringify(reply.body);
  res.writeHead(reply.status, {
    ...reply.headers,
    'content-type': raw ? (reply.contentType as string) : 'application/json',
    'content-length': Buffer.byteLength(payload),
  });
  res.end(payload);
}

/** A reply whose body is written as `stream` makes it (chunked); nothing is written once the connection is gone. */
async function sendStream(res: ServerResponse, reply: HttpReply, stream: NonNullable<HttpReply['stream']>): Promise<void> {
  res.writeHead(reply.status, { ...reply.headers, 'content-type': reply.contentType ?? 'application/octet-stream' });
  await stream((text) => {
    if (!res.destroyed) res.write(text);
  });
  res.end();
}

/** What to answer for a request Node's HTTP parser refused. */
function parserRefusal(error: Error & { code?: string; rawPacket?: Buffer }): [number, string] {
  switch (error.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return [408, 'The request did not arrive in time'];
    case 'HPE_HEADER_OVERFLOW': {
      // The limit covers the request line and the headers together: no line end yet means the URL.
      const raw = error.rawPacket;
      if (raw !== undefined && !raw.includes(0x0a)) return [414, 'Request URL is too long'];
      return [431, 'Request headers are too large'];
    }
    case 'HPE_INVALID_METHOD': {
      const line = error.rawPacket?.subarray(0, 64).toString('latin1') ?? '';
      const method = /^([A-Z][A-Z_-]{0,31}) /.exec(line)?.[1];
      if (method !== undefined) return [405, `Method ${method} is not allowed`];
      return [400, 'Request is not HTTP/1.1'];
    }
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return [413, 'Chunk extensions are too large'];
    default:
      return [400, `Malformed HTTP request (${error.code ?? 'parse error'})`];
  }
}

/** Writes a whole JSON answer on a socket that has no response object, then closes it. */
function answerOnSocket(socket: Duplex, status: number, message: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const payload = JSON.stringify({ error: message });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
      'content-type: application/json\r\n' +
      `content-length: ${Buffer.byteLength(payload)}\r\n` +
      'connection: close\r\n\r\n' +
      payload,
  );
  // Read and drop what the client still sends, so that closing does not reset the answer away.
  let drained = 0;
  const timer = setTimeout(() => socket.destroy(), LINGER_MS_MAX);
  timer.unref();
  socket.on('data', (chunk: Buffer) => {
    drained += chunk.length;
    if (drained > LINGER_BYTES_MAX) socket.destroy();
  });
  socket.once('close', () => clearTimeout(timer));
  socket.resume();
}
