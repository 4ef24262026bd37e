import type { HttpReply } from './http-server.ts';

export const json = (status: number, body: unknown): HttpReply => ({ status, body });

/** A malformed request (body, path or header): answered 400 with its message. */
export class BadRequest extends Error {}
