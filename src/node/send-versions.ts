import { versionBytes } from '../core/json-value.ts';
import type { NodeAddress, Version } from '../core/types.ts';
import type { PeerTransport } from './env.ts';
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
  if (lastFields !== undefined && chunks.length === 0) chunks.push({ versions: [], bytes: 0 });
  for (const [i, chunk] of chunks.entries()) {
    const body = { ...fields, ...(lastFields !== undefined && i === chunks.length - 1 ? lastFields : {}), versions: chunk.versions };
    const reply = await peers.call(peer, 'POST', path, body, { timeoutMs });
    if (reply.status !== 200) throw new PeerRefusedError(`${path} refused by ${peer}: ${JSON.stringify(reply.body)}`);
    result.sent += chunk.versions.length;
    result.bytes += chunk.bytes;
    result.answers.push(reply.body);
  }
  return result;
}

/** Versions in runs of about `bytesMax` JSON bytes (at least one version each), with their size. */
function chunkByBytes(versions: Version[], bytesMax: number): { versions: Version[]; bytes: number }[] {
  const chunks: { versions: Version[]; bytes: number }[] = [];
  let current: Version[] = [];
  let bytes = 0;
  for (const version of versions) {
    const size = versionBytes(version);
    if (current.length > 0 && bytes + size > bytesMax) {
      chunks.push({ versions: current, bytes });
      current = [];
      bytes = 0;
    }
    current.push(version);
    bytes += size;
  }
  if (current.length > 0) chunks.push({ versions: current, bytes });
  return chunks;
}
