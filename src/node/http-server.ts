import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export interface HttpRequest {
  method: string;
  /** Path without the query string, still percent-encoded. */
  path: string;
  headers: IncomingMessage['headers'];
  /** Parsed JSON body; undefined when the request had no body. */
  body: unknown;
}

export interface HttpReply {
  status: number;
  body: unknown;
}

export type Handler = (request: HttpRequest) => Promise<HttpReply>;

export interface HttpServerOptions {
  host: string;
  port: number;
  /** Largest body accepted on a path; larger ones get 413. */
  maxBodyBytes: (path: string) => number;
  handler: Handler;
  onError: (error: unknown) => void;
}

/**
 * A plain node:http server: it reads bodies on every method (clients send JSON on GET and DELETE),
 * bounds them, and turns every failure into a JSON error, never a crash. Frameworks that drop GET
 * bodies are why this is not fastify.
 */
export async function startHttpServer(options: HttpServerOptions): Promise<Server> {
  const server = createServer({ keepAliveTimeout: 65_000, requestTimeout: 30_000 }, (req, res) => {
    serve(req, res, options).catch((error: unknown) => {
      options.onError(error);
      if (!res.headersSent) send(res, 500, { error: 'Internal error' });
      else res.destroy();
    });
  });
  server.headersTimeout = 20_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

async function serve(req: IncomingMessage, res: ServerResponse, options: HttpServerOptions): Promise<void> {
  const url = req.url ?? '/';
  const queryAt = url.indexOf('?');
  const path = queryAt >= 0 ? url.slice(0, queryAt) : url;
  const bodyBytesMax = options.maxBodyBytes(path);
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > bodyBytesMax) {
    req.resume();
    send(res, 413, { error: `Request body is larger than ${bodyBytesMax} bytes` }, true);
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > bodyBytesMax) {
      send(res, 413, { error: `Request body is larger than ${bodyBytesMax} bytes` }, true);
      return;
    }
    chunks.push(chunk);
  }
  let body: unknown;
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim().length > 0) {
    try {
      body = JSON.parse(text);
    } catch {
      send(res, 400, { error: 'Request body is not valid JSON' });
      return;
    }
  }
  const reply = await options.handler({ method: req.method ?? 'GET', path, headers: req.headers, body });
  send(res, reply.status, reply.body);
}

function send(res: ServerResponse, status: number, body: unknown, close = false): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
    ...(close ? { connection: 'close' } : {}),
  });
  res.end(payload);
}
