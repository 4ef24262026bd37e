// Authentication between nodes with a shared secret (CLUSTER_SECRET), and the MAC that makes
// causal metadata the store's own.
//
// A request between nodes carries `x-kvs-auth: v1.<time ms>.<nonce>.<mac>`, where the MAC is
// HMAC-SHA256 under the first secret of the list over: the method, the path, the SHA-256 of the
// body's bytes, every other x-kvs-* header (sorted; the sender's address among them), the time and
// the nonce. The receiver accepts it under any secret of its list (so a rolling restart can rotate
// the secret), only within SKEW_MS of its own clock, and only once (nonces are remembered for as
// long as their time is acceptable).

import { hash, randomBytes, timingSafeEqual } from 'node:crypto';

export const AUTH_HEADER = 'x-kvs-auth';
/** A request whose time is further than this from the receiver's clock is refused (clock skew plus transit). */
export const SKEW_MS = 10_000;
/** Nonces remembered at most; beyond, the oldest are forgotten and nothing older than them is accepted. */
export const NONCES_MAX = 200_000;

const AUTH_FORMAT = /^v1\.([0-9]{1,16})\.([A-Za-z0-9_-]{16,32})\.([A-Za-z0-9_-]{43})$/;

export type AuthResult = { ok: true } | { ok: false; reason: string };

export interface SignedParts {
  method: string;
  path: string;
  /** The body exactly as sent ('' when there is none). */
  body: string;
  /** Every x-kvs-* header but x-kvs-auth, lower-case names. */
  headers: Readonly<Record<string, string | string[] | undefined>>;
}

export class PeerAuth {
  /** Per secret, HMAC's padded keys, made once (see `hmacSha256`). */
  private readonly keys: HmacKey[];
  /** Nonces are this process's random prefix and a counter: unique without a random draw per request. */
  private readonly noncePrefix = randomBytes(9).toString('base64url');
  private nonceCounter = 0;
  /** Per secret, the prefix of a metadata MAC's input (see `metadataMac`). */
  private readonly metadataPrefixes: string[];
  private readonly now: () => number;
  /** nonce -> time it carried, in arrival order. */
  private readonly nonces = new Map<string, number>();
  /** After forgetting nonces at the bound: nothing with a time at or below this is accepted. */
  private floorMs = -Infinity;
  /** The body last signed and its SHA-256: a replicated batch goes to each shard peer with the same text. */
  private lastSignedBody = '';
  private lastSignedBodyHash = bodyHashOf('');

  constructor(secrets: readonly string[], now: () => number) {
    if (secrets.length === 0) throw new RangeError('PeerAuth needs at least one secret');
    this.keys = secrets.map((secret) => hmacKey(Buffer.from(secret, 'utf8')));
    this.metadataPrefixes = secrets.map((secret) => `kvs-metadata-v1\n${secret.length}:${secret}\n`);
    this.now = now;
  }

  /** The x-kvs-auth value for a request (sign with the first secret). */
  sign(parts: SignedParts): string {
    const time = String(Math.floor(this.now()));
    const nonce = `${this.noncePrefix}${(this.nonceCounter++).toString(36).padStart(4, '0')}`;
    if (parts.body !== this.lastSignedBody) {
      this.lastSignedBodyHash = bodyHashOf(parts.body);
      this.lastSignedBody = parts.body;
    }
    const text = canonical(parts, this.lastSignedBodyHash, time, nonce);
    return `v1.${time}.${nonce}.${hmacSha256(this.keys[0] as HmacKey, text).toString('base64url')}`;
  }

  /** Checks a request's x-kvs-auth: format, time, MAC under any secret, then that it was not seen before. */
  verify(auth: string | string[] | undefined, parts: SignedParts): AuthResult {
    if (typeof auth !== 'string') return { ok: false, reason: 'no authenticator' };
    const match = AUTH_FORMAT.exec(auth);
    if (match === null) return { ok: false, reason: 'malformed authenticator' };
    const [, time, nonce, given] = match as unknown as [string, string, string, string];
    const timeMs = Number(time);
    const now = this.now();
    if (Math.abs(now - timeMs) > SKEW_MS) return { ok: false, reason: `authenticator time is ${Math.round((now - timeMs) / 1000)} s off this node's clock` };
    // The cheap checks first: a replay or a stale time is refused before the body is hashed.
    if (timeMs <= this.floorMs || this.nonces.has(nonce)) return { ok: false, reason: 'authenticator already used' };
    const text = canonical(parts, bodyHashOf(parts.body), time, nonce);
    const givenBytes = Buffer.from(given, 'base64url');
    if (!this.keys.some((key) => equal(hmacSha256(key, text), givenBytes))) return { ok: false, reason: 'authenticator does not verify' };
    this.remember(nonce, timeMs, now);
    return { ok: true };
  }

  /**
   * The MAC of causal metadata (its canonical text) under the first secret: SHA3-256 over the
   * secret (length-prefixed) and the text. Keyed SHA-3 is a sound MAC (no length extension, the
   * construction KMAC builds on), and one call costs a third of an HMAC in Node: it runs twice on
   * every client request, where an HMAC would be a tenth of a small node's CPU.
   */
  metadataMac(text: string): string {
    return hash('sha3-256', (this.metadataPrefixes[0] as string) + text, 'base64url');
  }

  /** Whether `given` is the metadata MAC of `text` under any secret. */
  metadataMacVerifies(text: string, given: string): boolean {
    const givenBytes = Buffer.from(given, 'base64url');
    return this.metadataPrefixes.some((prefix) => equal(Buffer.from(hash('sha3-256', prefix + text, 'base64url'), 'base64url'), givenBytes));
  }

  private remember(nonce: string, timeMs: number, now: number): void {
    // Forget what can no longer be accepted anyway (its time is out of the window).
    for (const [old, oldTime] of this.nonces) {
      if (oldTime >= now - SKEW_MS) break;
      this.nonces.delete(old);
    }
    while (this.nonces.size >= NONCES_MAX) {
      const [old, oldTime] = this.nonces.entries().next().value as [string, number];
      this.nonces.delete(old);
      this.floorMs = Math.max(this.floorMs, oldTime);
    }
    this.nonces.set(nonce, timeMs);
  }
}

/**
 * What the MAC covers: `v1`, the method, the path, the body's SHA-256, every x-kvs-* header but
 * x-kvs-auth (sorted by name, `name:value`), the time and the nonce, one per line.
 */
function canonical(parts: SignedParts, bodyHash: string, time: string, nonce: string): string {
  const headers = parts.headers;
  const names: string[] = [];
  for (const name of Object.keys(headers)) if (name.startsWith('x-kvs-') && name !== AUTH_HEADER) names.push(name);
  if (names.length > 1) names.sort();
  let out = `v1\n${parts.method}\n${parts.path}\n${bodyHash}`;
  for (const name of names) {
    const value = headers[name];
    out += `\n${name}:${Array.isArray(value) ? value.join(',') : (value ?? '')}`;
  }
  return `${out}\n${time}\n${nonce}`;
}

/** HMAC's inner and outer keys (RFC 2104): the secret, hashed when longer than a block, padded and masked. */
export interface HmacKey {
  inner: Buffer;
  outer: Buffer;
}

const SHA256_BLOCK = 64;

export function hmacKey(secret: Buffer): HmacKey {
  const block = Buffer.alloc(SHA256_BLOCK);
  (secret.length > SHA256_BLOCK ? hash('sha256', secret, 'buffer') : secret).copy(block);
  const inner = Buffer.alloc(SHA256_BLOCK);
  const outer = Buffer.alloc(SHA256_BLOCK);
  for (let i = 0; i < SHA256_BLOCK; i++) {
    inner[i] = (block[i] as number) ^ 0x36;
    outer[i] = (block[i] as number) ^ 0x5c;
  }
  return { inner, outer };
}

/**
 * HMAC-SHA256 of `text` (UTF-8), the same bytes as `createHmac('sha256', secret)`, from two one-shot
 * hashes: creating an Hmac object costs more than the hashing itself, and this runs on every
 * request between nodes, at both ends (test/node/peer-auth.test.ts checks it against createHmac).
 */
export function hmacSha256(key: HmacKey, text: string): Buffer {
  const inner = Buffer.allocUnsafe(SHA256_BLOCK + Buffer.byteLength(text, 'utf8'));
  key.inner.copy(inner);
  inner.write(text, SHA256_BLOCK, 'utf8');
  const outer = Buffer.allocUnsafe(SHA256_BLOCK + 32);
  key.outer.copy(outer);
  hash('sha256', inner, 'buffer').copy(outer, SHA256_BLOCK);
  return hash('sha256', outer, 'buffer');
}

function bodyHashOf(body: string): string {
  return hash('sha256', body, 'base64url');
}

function equal(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The field of causal metadata that holds its MAC (with a cluster secret). */
export const METADATA_MAC_FIELD = 'm';

/**
 * `metadata` with its MAC added (over everything else in it, keys sorted). The copy returned has
 * its keys in that sorted order too, so a client that sends it back unchanged is checked with
 * `JSON.stringify` alone (see `unsealMetadata`).
 */
export function sealMetadata(auth: PeerAuth, metadata: Record<string, unknown>): Record<string, unknown> {
  const sorted = sortedCopy(withoutMac(metadata)) as Record<string, unknown>;
  sorted[METADATA_MAC_FIELD] = auth.metadataMac(canonicalJson(sorted));
  return sorted;
}

/** `metadata` without its MAC when the MAC verifies under one of the secrets; null otherwise. */
export function unsealMetadata(auth: PeerAuth, metadata: unknown): Record<string, unknown> | null {
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) return null;
  const given = (metadata as Record<string, unknown>)[METADATA_MAC_FIELD];
  if (typeof given !== 'string' || given.length !== 43) return null;
  const rest = withoutMac(metadata as Record<string, unknown>);
  // As sealed (JSON keeps key order), the plain serialisation is the canonical text; a client
  // that reordered keys costs the general path.
  if (auth.metadataMacVerifies(JSON.stringify(rest), given)) return rest;
  return auth.metadataMacVerifies(canonicalJson(rest), given) ? rest : null;
}

/** A deep copy with every object's keys inserted in sorted order. */
function sortedCopy(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map(sortedCopy);
  const record = value as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(record).sort()) out[key] = sortedCopy(record[key]);
  return out;
}

/** A shallow copy of `metadata` without its MAC field. */
function withoutMac(metadata: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(metadata)) if (key !== METADATA_MAC_FIELD) out[key] = metadata[key];
  return out;
}

/** JSON with every object's keys sorted: the same text for the same value, whatever the key order. */
export function canonicalJson(value: unknown): string {
  if (typeof value !== 'object' || value === null) return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + canonicalJson(value[i]);
    return `${out}]`;
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record);
  if (keys.length > 1) keys.sort();
  let out = '{';
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i] as string;
    const item = record[key];
    // Numbers and plain keys (all a metadata holds) without the general path.
    const text = typeof item === 'number' ? (Number.isFinite(item) ? String(item) : 'null') : canonicalJson(item);
    out += `${i === 0 ? '' : ','}${JSON.stringify(key)}:${text}`;
  }
  return `${out}}`;
}
