// A logger for tests of one module: the error lines it was given (message and `reason`), and nothing
// printed.

import type { Logger } from '../../src/node/logger.ts';

export function recordingLogger(): { log: Logger; errors: string[] } {
  const errors: string[] = [];
  const log = {
    error: (fields: Record<string, unknown>, message: string) => errors.push(fields.reason === undefined ? message : `${message}: ${String(fields.reason)}`),
    fatal: () => undefined,
    warn: () => undefined,
    info: () => undefined,
    debug: () => undefined,
  } as unknown as Logger;
  return { log, errors };
}
