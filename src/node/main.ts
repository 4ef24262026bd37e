import { ConfigError, loadConfig } from './config.ts';
import { createLogger } from './logger.ts';
import { KvsNode } from './node.ts';
import { loadTls, type TlsMaterial } from './tls.ts';

/** Starts one node from environment variables (SOCKET_ADDRESS, VIEW, SHARD_COUNT, ...) and runs until signalled. */
export async function main(env: Record<string, string | undefined>): Promise<void> {
  let config;
  let tls: TlsMaterial | null;
  try {
    config = loadConfig(env);
    // TLS_CERT, TLS_KEY, TLS_CA: read now, so a missing or unusable file is refused like any setting.
    tls = loadTls(config);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`kvs: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const log = createLogger(config.logLevel, config.address, config.logFormat);
  const node = new KvsNode(config, log, tls === null ? {} : { tls });
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    const forced = setTimeout(() => process.exit(0), 3000);
    forced.unref();
    node.close().finally(() => process.exit(0));
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  try {
    await node.start();
  } catch (error) {
    const refusal = listenRefusal(error, config.listenHost, config.port);
    if (refusal !== null) {
      process.stderr.write(`kvs: ${refusal}\n`);
      process.exit(2);
    }
    log.fatal({ err: error }, 'node failed to start');
    process.exit(1);
  }
}

/** What to tell a deployer when the node cannot listen where it was told to; null for other errors. */
function listenRefusal(error: unknown, host: string, port: number): string | null {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'EADDRINUSE') return `port ${port} on ${host} is already in use by another process; stop it, or set PORT (or SOCKET_ADDRESS) to a free port`;
  if (code === 'EACCES') return `not allowed to listen on port ${port} on ${host}; use a port above 1023 or run with the right to bind it`;
  if (code === 'EADDRNOTAVAIL') return `LISTEN_HOST ${host} is not an address of this machine; use 0.0.0.0 or one of its own addresses`;
  return null;
}

if (import.meta.main) await main(process.env);
