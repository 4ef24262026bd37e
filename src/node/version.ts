import { readFileSync } from 'node:fs';

/**
 * The store's version, from its package.json (two folders up from here, from the source and from
 * the compiled package alike): in /status and the start-up log line, so an operator can see which
 * nodes a rolling upgrade has reached.
 */
export const VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
