import { pino, type Logger } from 'pino';
import { PinoPretty } from 'pino-pretty';
import type { LogFormat, LogLevel } from './config.ts';

export type { Logger };

/**
 * One event per line on stdout, with the node's address on every line: a JSON object (`json`, for
 * log shippers and `jq`), or a coloured line with the time, level, message and fields (`pretty`,
 * for a person at a terminal; colour only when stdout is one).
 */
export function createLogger(level: LogLevel, address: string, format: LogFormat = 'json'): Logger {
  const options = { level, base: { node: address }, timestamp: pino.stdTimeFunctions.isoTime };
  if (format === 'json') return pino(options);
  // Synchronous, like pino's own stdout destination: a line is out before the process exits.
  return pino(options, PinoPretty({ sync: true, colorize: process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', singleLine: true, messageFormat: '{node} {msg}', ignore: 'pid,hostname,node' }));
}
