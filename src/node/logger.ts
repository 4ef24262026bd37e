import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON lines on stdout, one object per event, with the node's address on every line. */
export function createLogger(level: string, address: string): Logger {
  return pino({ level, base: { node: address }, timestamp: pino.stdTimeFunctions.isoTime });
}
