// Every request this node sends to a peer goes through here: it names the sender (address and
// incarnation) in headers, signs the request when the cluster has a secret, and it tells the core's link table what the request showed about the
// link (no answer: the link failed; a refusal because the peer holds the link: send it no data
// for as long).

import type { LinkChange } from '../core/links.ts';
import type { LinkEvent, LinkView } from '../core/node-core.ts';
import type { NodeAddress } from '../core/types.ts';
import { JsonText, type PeerCallOptions, type PeerMethod, type PeerTransport } from './env.ts';
import { AUTH_HEADER, type PeerAuth } from './peer-auth.ts';
import { PeerUnreachableError, type PeerReply } from './peer-client.ts';

/** Set on every request between nodes: the sending node's address. */
export const FROM_HEADER = 'x-kvs-from';
/** Set on every request between nodes: the sending process's incarnation (new at each start). */
export const INCARNATION_HEADER = 'x-kvs-incarnation';

const INCARNATION = /^[0-9a-z]{1,32}$/;

export function isIncarnation(value: unknown): value is string {
  return typeof value === 'string' && INCARNATION.test(value);
}

/**
 * The answer of a node that refuses data over a link it holds down: 503, with how long it still
 * holds it (null while the link does not answer its probes yet).
 */
export function linkHeldReply(self: NodeAddress, peer: NodeAddress, remainingMs: number | null): { status: number; body: Record<string, unknown> } {
  const left = remainingMs === null ? 'until it answers again and then for the hold-down' : `for ${remainingMs} ms more`;
  return {
    status: 503,
    body: { error: `The link between ${self} and ${peer} failed; no data crosses it ${left}`, linkHeld: true, remainingMs },
  };
}

/** The time left of a link-held refusal (null: unknown), or undefined when `reply` is not one. */
export function linkHeldRemaining(reply: PeerReply): number | null | undefined {
  if (reply.status !== 503 || typeof reply.body !== 'object' || reply.body === null) return undefined;
  const body = reply.body as Record<string, unknown>;
  if (body.linkHeld !== true) return undefined;
  return Number.isSafeInteger(body.remainingMs) && (body.remainingMs as number) >= 0 ? (body.remainingMs as number) : null;
}

export class LinkTransport implements PeerTransport {
  private readonly inner: PeerTransport;
  private readonly links: LinkView;
  private readonly report: (event: LinkEvent) => LinkChange;
  private readonly headers: Record<string, string>;
  private readonly onChange: (peer: NodeAddress, change: LinkChange) => void;
  private readonly auth: PeerAuth | null;

  constructor(
    inner: PeerTransport,
    identity: { self: NodeAddress; incarnation: string },
    links: { view: LinkView; report: (event: LinkEvent) => LinkChange },
    onChange: (peer: NodeAddress, change: LinkChange) => void,
    auth: PeerAuth | null = null,
  ) {
    if (!isIncarnation(identity.incarnation)) throw new RangeError(`not an incarnation: ${identity.incarnation}`);
    this.inner = inner;
    this.links = links.view;
    this.report = links.report;
    this.headers = { [FROM_HEADER]: identity.self, [INCARNATION_HEADER]: identity.incarnation };
    this.onChange = onChange;
    this.auth = auth;
  }

  async call(peer: NodeAddress, method: PeerMethod, path: string, body: unknown, options: PeerCallOptions = {}): Promise<PeerReply> {
    // A failure counts against the process the request was meant for, not one that replaced it since.
    const sentTo = this.links.incarnationOf(peer);
    const headers: Record<string, string> = options.headers === undefined ? { ...this.headers } : { ...options.headers, ...this.headers };
    // Serialised here, once, so that what is signed is exactly what is sent.
    const sent = body === undefined ? undefined : body instanceof JsonText ? body : new JsonText(JSON.stringify(body));
    if (this.auth !== null) headers[AUTH_HEADER] = this.auth.sign({ method, path, body: sent?.text ?? '', headers });
    const innerOptions: PeerCallOptions = { headers };
    if (options.timeoutMs !== undefined) innerOptions.timeoutMs = options.timeoutMs;
    if (options.lane !== undefined) innerOptions.lane = options.lane;
    if (options.rawReply !== undefined) innerOptions.rawReply = options.rawReply;
    if (options.onLine !== undefined) innerOptions.onLine = options.onLine;
    let reply: PeerReply;
    try {
      reply = await this.inner.call(peer, method, path, sent, innerOptions);
    } catch (error) {
      if (error instanceof PeerUnreachableError) this.onChange(peer, this.report({ type: 'failed', peer, sentTo }));
      throw error;
    }
    this.report({ type: 'answered', peer });
    const remaining = linkHeldRemaining(reply);
    if (remaining !== undefined) this.report({ type: 'refused-by', peer, remainingMs: remaining });
    return reply;
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
