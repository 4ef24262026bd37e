import { ConfigError, loadConfig } from './config.ts';
import { createLogger } from './logger.ts';
import { KvsNode } from './node.ts';

/** Starts one node from environment variables (SOCKET_ADDRESS, VIEW, SHARD_COUNT, ...) and runs until signalled. */
export async function main(env: Record<string, string | undefined>): Promise<void> {
  let config;
  try {
    config = loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`kvs: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const log = createLogger(config.logLevel, config.address);
  const node = new KvsNode(config, log);
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
    log.fatal({ err: error }, 'node failed to start');
    process.exit(1);
  }
}

if (import.meta.main) await main(process.env);
