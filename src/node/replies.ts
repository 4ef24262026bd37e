import type { HttpReply } from './http-server.ts';

export const json = (status: number, body: unknown): HttpReply => ({ status, body });

/**
 * A reply body that is JSON text already (a peer's answer relayed as it came): sent as it is.
 * Anything that serialises it (JSON.stringify) gets the value it stands for.
 */
export class RawJson {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
  toJSON(): unknown {
    return JSON.parse(this.text);
  }
}

/** A malformed request (body, path or header): answered 400 with its message. */
export class BadRequest extends Error {}
