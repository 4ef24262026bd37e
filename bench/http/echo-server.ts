// The baseline of bench/http.ts: a bare node:http JSON echo, run as its own process on one port.
// It does what any JSON-over-HTTP server must do and nothing more: read the body, JSON.parse it,
// answer a small JSON object (content-type application/json). What it serves per second on these
// cores is what Node's HTTP stack allows; the store is measured against it.
//
//   node bench/http/echo-server.ts --port 11000 [--host 127.0.0.1]
//
// Prints `listening <host>:<port>` on stdout once it accepts connections; exits on SIGTERM/SIGINT.

import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

const { values: flags } = parseArgs({
  options: { port: { type: 'string' }, host: { type: 'string', default: '127.0.0.1' } },
  strict: true,
});
const port = Number(flags.port);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error(`echo-server: --port takes a port number, got ${JSON.stringify(flags.port)}`);
  process.exit(2);
}

// Keep-alive as long as the store's (65 s), so neither side closes a benchmark's connections.
const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    let status = 200;
    let answer: unknown;
    try {
      const body: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      const value = typeof body === 'object' && body !== null && 'value' in body ? body.value : null;
      answer = { result: 'echo', value, 'causal-metadata': null };
    } catch {
      status = 400;
      answer = { error: 'Malformed JSON' };
    }
    const text = JSON.stringify(answer);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  });
});

server.once('error', (err) => {
  console.error(`echo-server: ${err.message}`);
  process.exit(2);
});
server.listen(port, flags.host, () => console.log(`listening ${flags.host}:${port}`));

const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
