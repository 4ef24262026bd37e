// The container's health check: exits 0 when this machine's node answers GET /status with 200
// within a bound, 1 otherwise (with one line on stderr saying why). It reads the node's own
// settings (SOCKET_ADDRESS or PORT, LISTEN_HOST, TLS_CERT) from the same environment.
//   node src/node/healthcheck.ts

import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

/** Bound on the whole check; Docker's own --timeout is above it. */
const HEALTHCHECK_TIMEOUT_MS = 3_000;

/** Where the node of `env` listens, as seen from its own machine. */
export function healthTarget(env: Record<string, string | undefined>): { host: string; port: number; tls: boolean } {
  const address = env.SOCKET_ADDRESS?.trim() ?? '';
  const port = Number(env.PORT?.trim() || address.slice(address.lastIndexOf(':') + 1));
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error('set SOCKET_ADDRESS (or PORT) as for the node');
  const listen = env.LISTEN_HOST?.trim() || '0.0.0.0';
  // A node on every interface is reached on loopback; one on a single address, there.
  const host = listen === '0.0.0.0' || listen === '::' ? '127.0.0.1' : listen;
  return { host, port, tls: (env.TLS_CERT?.trim() ?? '') !== '' };
}

export function checkHealth(env: Record<string, string | undefined>): Promise<string | null> {
  let target: ReturnType<typeof healthTarget>;
  try {
    target = healthTarget(env);
  } catch (err) {
    return Promise.resolve((err as Error).message);
  }
  const request = target.tls ? httpsRequest : httpRequest;
  return new Promise((resolve) => {
    const req = request(
      // With TLS the node's certificate names its address, not loopback: this only asks whether
      // this machine's own process answers, so the certificate is not what is checked here.
      { host: target.host, port: target.port, path: '/status', method: 'GET', timeout: HEALTHCHECK_TIMEOUT_MS, rejectUnauthorized: false },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200 ? null : `GET /status answered ${res.statusCode}`);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${HEALTHCHECK_TIMEOUT_MS} ms`)));
    req.on('error', (err) => resolve(`${target.host}:${target.port}: ${err.message}`));
    req.end();
  });
}

if (import.meta.main) {
  const fault = await checkHealth(process.env);
  if (fault !== null) {
    process.stderr.write(`kvs healthcheck: ${fault}\n`);
    process.exit(1);
  }
}
