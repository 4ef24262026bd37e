import type { NodeAddress, Version } from '../core/types.ts';
import { JsonText, type PeerTransport } from './env.ts';
import { TRANSFER_BYTES_MAX } from './limits.ts';

/** A peer answered, but not with 200 (another epoch or shard, a malformed request). */
export class PeerRefusedError extends Error {}

/**
 * Sends versions to a peer in requests of about TRANSFER_BYTES_MAX, in order, each with `fields`
 * (epoch, shard). With `lastFields`, the last request also carries them, and at least one request
 * is sent: its arrival means every part did. Throws at the first request that fails or is refused.
 * Returns what was sent and the peers' answers.
 */
/** Where versions go and what each request carries besides them. */
export interface SendOptions {
  /** The peer route. */
  path: string;
  /** Sent with every request (epoch, shard). */
  fields: Record<string, unknown>;
  /** Sent with the last request only; with it, at least one request is sent, so its arrival means every part did. */
  lastFields?: Record<string, unknown>;
  timeoutMs: number;
}

export async function sendVersions(
  peers: PeerTransport,
  peer: NodeAddress,
  versions: Version[],
  { path, fields, lastFields, timeoutMs }: SendOptions,
): Promise<{ sent: number; bytes: number; answers: unknown[] }> {
  const result = { sent: 0, bytes: 0, answers: [] as unknown[] };
  const chunks = chunkByBytes(versions, TRANSFER_BYTES_MAX);
  if (lastFields !== undefined && chunks.length === 0) chunks.push({ texts: [], bytes: 0 });
  for (const [i, chunk] of chunks.entries()) {
    const body = bodyText({ ...fields, ...(lastFields !== undefined && i === chunks.length - 1 ? lastFields : {}) }, chunk.texts);
    const reply = await peers.call(peer, 'POST', path, body, { timeoutMs });
    if (reply.status !== 200) throw new PeerRefusedError(`${path} refused by ${peer}: ${JSON.stringify(reply.body)}`);
    result.sent += chunk.texts.length;
    result.bytes += chunk.bytes;
    result.answers.push(reply.body);
  }
  return result;
}

/**
 * Versions as JSON texts in runs of about `bytesMax` (at least one version each), with their
 * size: each version is serialised once, and its text goes into the request as it is.
 */
function chunkByBytes(versions: Version[], bytesMax: number): { texts: string[]; bytes: number }[] {
  const chunks: { texts: string[]; bytes: number }[] = [];
  let current: string[] = [];
  let bytes = 0;
  for (const version of versions) {
    const text = JSON.stringify(version);
    // UTF-16 units: below the UTF-8 bytes for non-ASCII text, at most 3 times; the body limit
    // (INTERNAL_BODY_BYTES_MAX) is 64 times the chunk's.
    const size = text.length;
    if (current.length > 0 && bytes + size > bytesMax) {
      chunks.push({ texts: current, bytes });
      current = [];
      bytes = 0;
    }
    current.push(text);
    bytes += size;
  }
  if (current.length > 0) chunks.push({ texts: current, bytes });
  return chunks;
}

/** The request body `{...fields, "versions": [...]}`, from the versions' texts. */
function bodyText(fields: Record<string, unknown>, texts: string[]): JsonText {
  const head = JSON.stringify(fields);
  return new JsonText(`${head === '{}' ? '{' : `${head.slice(0, -1)},`}"versions":[${texts.join(',')}]}`);
}
