// Shared generators and checks for fuzzing the public HTTP API of real nodes (test/fuzz/fuzz.test.ts
// under `npm test`, test/fuzz/run.ts under `npm run fuzz`), and the raw-socket cases of the HTTP
// layer (test/integration/hostile.test.ts, and run.ts once per run).
//
// The contract every case checks (README, "Where the spec is silent"): whatever a client sends, the
// answer is an HTTP response with a 2xx or 4xx status, never a 5xx; an error is a JSON object with
// an "error" string; and the node keeps answering. A fuzzer must not change the store it fuzzes in
// ways a test cannot undo, so no case ever carries a valid reshard or add-member request, nor a
// socket address that PUT or DELETE /view would act on (see `sanitize`).

import fc from 'fast-check';
import { connect } from 'node:net';
import { Agent, type Dispatcher } from 'undici';
import type { NodeAddress } from '../helpers/http.ts';

// ---- names ---------------------------------------------------------------------------------------

/** Names that are properties of every JS object: as keys, ids or values they must be plain data. */
export const PROTO_NAMES = ['__proto__', 'constructor', 'toString', 'valueOf', 'hasOwnProperty', 'isPrototypeOf', 'prototype', '__defineGetter__'] as const;
/** The request fields the API reads. */
export const FIELD_NAMES = ['value', 'causal-metadata', 'socket-address', 'shard-count'] as const;

/** Methods Node's HTTP parser knows: they reach the routes. */
const COMMON_METHODS = ['GET', 'PUT', 'DELETE', 'POST', 'PATCH', 'OPTIONS', 'HEAD'] as const;
const RARE_METHODS = ['TRACE', 'PROPFIND', 'PURGE', 'SEARCH', 'QUERY', 'LOCK', 'M-SEARCH', 'COPY', 'REPORT'] as const;
/** Valid HTTP tokens the client sends but Node's parser does not know (it refuses them before any route). */
export const UNKNOWN_METHODS = ['FOO', 'BREW', 'patch', 'X_Y', 'GETS', 'DELETEX'] as const;

/**
 * Socket addresses that are not valid IP:PORT: safe to send to PUT /view and add-member (nothing a
 * lenient server could trim or normalise into a real address).
 */
const INVALID_ADDRESSES = ['', ' ', '127.0.0.1', '127.0.0.1:', ':8090', '127.0.0.1:0', '127.0.0.1:65536', '127.0.0.1:99999', '127.0.0.1:-1'] as const;
/** Valid addresses no cluster here uses: DELETE /view of them is a harmless 404. */
const ABSENT_ADDRESSES = ['10.255.255.1:8090', '127.0.0.1:1'] as const;

// ---- JSON text ---------------------------------------------------------------------------------

/** Numbers JSON allows that a double cannot hold, or holds oddly. */
const ODD_NUMBER_TEXTS = ['1e-400', '-0', '0.1e1', '1E+2', '123456789012345678901234567890', '9007199254740993', '-9007199254740993', '0.30000000000000004', '5e-324'] as const;
/** Numbers beyond a double (JSON.parse makes them Infinity): not leaves of jsonText (they would make most bodies invalid), only whole values. */
const OVERFLOW_NUMBER_TEXTS = ['1e400', '-1e400', '1' + '0'.repeat(400)] as const;
/** Strings JSON allows that are odd as data. */
const ODD_STRING_TEXTS = ['"\\ud800"', '"\\udfff\\ud800"', '"\\u0000"', '"\\u2028\\u2029"', '"\\ufeff"', '"%zz"', '"../.."', JSON.stringify('é'.repeat(51))] as const;

/** An object as JSON text, entries in order: duplicate keys and an own "__proto__" key survive. */
export function objectText(entries: readonly (readonly [string, string])[]): string {
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`;
}

const protoName = fc.constantFrom(...PROTO_NAMES);
const objectKey = fc.oneof(
  { weight: 3, arbitrary: fc.string({ maxLength: 10 }) },
  { weight: 2, arbitrary: protoName },
  { weight: 2, arbitrary: fc.constantFrom(...FIELD_NAMES) },
  { weight: 1, arbitrary: fc.constantFrom('v', 'e', 'c', 'o', 's0', 's1', '') },
);

/** JSON text of any value, with prototype names as keys and strings, odd numbers and odd strings. */
export const jsonText: fc.Arbitrary<string> = fc.letrec<{ text: string; leaf: string; obj: string; arr: string }>((tie) => ({
  text: fc.oneof({ depthSize: 'small', withCrossShrink: true }, tie('leaf'), tie('obj'), tie('arr')),
  leaf: fc.oneof(
    { weight: 16, arbitrary: fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)) },
    { weight: 3, arbitrary: protoName.map((s) => JSON.stringify(s)) },
    { weight: 3, arbitrary: fc.constantFrom(...ODD_NUMBER_TEXTS, ...ODD_STRING_TEXTS) },
  ),
  obj: fc.array(fc.tuple(objectKey, tie('text')), { maxLength: 5 }).map((entries) => objectText(entries)),
  arr: fc.array(tie('text'), { maxLength: 5 }).map((items) => `[${items.join(',')}]`),
})).text;

/**
 * Causal metadata shaped like the store's ({"v":1,"e":0,"c":{}}) with exactly one field made
 * invalid, so it is always refused (400): a valid one naming writes nobody made would wait and 503.
 */
const badMetadataText: fc.Arbitrary<string> = fc.oneof(
  fc.oneof(jsonText, fc.constantFrom('2', '"1"', '0', 'true', '1.5')).filter((t) => parsesTo(t) !== 1).map((v) => objectText([['v', v], ['e', '0'], ['c', '{}']])),
  fc.constantFrom('-1', '1.5', '"0"', 'null', '1e400', '9007199254740992', '[]', '{}', '"__proto__"').map((e) => objectText([['v', '1'], ['e', e], ['c', '{}']])),
  fc
    .oneof(
      jsonText.filter((t) => !isPlainObject(parsesTo(t))),
      fc.constantFrom(
        '{"s0":1}',
        '{"__proto__":{}}',
        '{"s0":{"__proto__":1}}',
        '{"s0":{"127.0.0.1:1":0}}',
        '{"s0":{"x":-1}}',
        '{"s0":{"x":1.5}}',
        '{"s0":{"x":1e400}}',
        '{"s0":{"x":"1"}}',
        '{"s0":[1]}',
        `{"${'s'.repeat(65)}":{}}`,
        `{"s0":{"${'n'.repeat(301)}":1}}`,
      ),
    )
    .map((c) => objectText([['v', '1'], ['e', '0'], ['c', c]])),
  fc
    .oneof(jsonText.filter((t) => !isPlainObject(parsesTo(t))), fc.constantFrom('{"x":{}}', '{"-1":{}}', '{"0":5}', '{"0":{}}', '{"01":{}}', '{"__proto__":{}}'))
    .map((o) => objectText([['v', '1'], ['e', '0'], ['c', '{}'], ['o', o]])),
);

/** A /kvs body: "value" and "causal-metadata" each present or not, holding anything, plus extra keys. */
const kvBodyText: fc.Arbitrary<string> = fc
  .record({
    value: fc.option(
      fc.oneof(
        { weight: 10, arbitrary: jsonText },
        { weight: 1, arbitrary: protoName.map((s) => JSON.stringify(s)) },
        { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...OVERFLOW_NUMBER_TEXTS), fc.boolean()).map(([n, nested]) => (nested ? `{"a":[1,${n}]}` : n)) },
      ),
      { nil: undefined, freq: 6 },
    ),
    // Mostly null, so that many cases get past the metadata check to the store itself.
    meta: fc.oneof(
      { weight: 5, arbitrary: fc.constant<string | undefined>('null') },
      { weight: 2, arbitrary: fc.constant<string | undefined>(undefined) },
      { weight: 2, arbitrary: badMetadataText },
      { weight: 1, arbitrary: jsonText },
      { weight: 1, arbitrary: protoName.map((s) => JSON.stringify(s)) },
    ),
    extra: fc.array(fc.tuple(objectKey, jsonText), { maxLength: 2 }),
    metaFirst: fc.boolean(),
  })
  .map(({ value, meta, extra, metaFirst }) => {
    const v: [string, string][] = value === undefined ? [] : [['value', value]];
    const m: [string, string][] = meta === undefined ? [] : [['causal-metadata', meta]];
    return objectText(metaFirst ? [...m, ...v, ...extra] : [...v, ...m, ...extra]);
  });

/** A body with one of the API's field names holding something odd (sanitized below where it could act). */
const fieldBodyText: fc.Arbitrary<string> = fc
  .tuple(
    fc.constantFrom(...FIELD_NAMES),
    fc.oneof(
      jsonText,
      protoName.map((s) => JSON.stringify(s)),
      fc.constantFrom(...INVALID_ADDRESSES, ...ABSENT_ADDRESSES).map((s) => JSON.stringify(s)),
      fc.constantFrom('0', '-1', '1.5', '-0', '1e400', '-1e400', '9007199254740992', '0.5', '"2"', 'true', '[1]', '{"n":2}'),
    ),
    fc.array(fc.tuple(objectKey, jsonText), { maxLength: 2 }),
  )
  .map(([name, value, extra]) => objectText([[name, value], ...extra]));

/** An object whose keys are prototype names, holding anything. */
const protoBodyText: fc.Arbitrary<string> = fc
  .array(fc.tuple(fc.oneof(protoName, fc.constantFrom(...FIELD_NAMES)), fc.oneof(jsonText, protoName.map((s) => JSON.stringify(s)))), { minLength: 1, maxLength: 4 })
  .map((entries) => objectText(entries));

/** Valid JSON cut short, or followed by garbage. */
const brokenJsonText: fc.Arbitrary<string> = fc
  .tuple(fc.oneof(kvBodyText, jsonText), fc.nat(), fc.constantFrom('', '}', ',', ']', '\u0000', 'x', '{"a":1}', '\ufeff'))
  .map(([t, cut, tail]) => t.slice(0, cut % (t.length + 1)) + tail);

/** A request body: none, empty, JSON of every shape, broken JSON, or arbitrary bytes. */
export const anyBody: fc.Arbitrary<Buffer | undefined> = fc
  .oneof(
    { weight: 1, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: fc.constantFrom('', ' ', '\r\n', 'null', '{}', '[]', '""', '0', 'true', '\ufeff{}', '{"value":1}{"value":2}') },
    { weight: 3, arbitrary: jsonText },
    { weight: 1, arbitrary: fc.json({ maxDepth: 3 }) },
    { weight: 4, arbitrary: kvBodyText },
    { weight: 3, arbitrary: fieldBodyText },
    { weight: 2, arbitrary: protoBodyText },
    { weight: 2, arbitrary: brokenJsonText },
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 512 }) },
  )
  .map((b) => (b === undefined ? undefined : typeof b === 'string' ? Buffer.from(b, 'utf8') : Buffer.from(b)));

/** Bodies for the routes that act on fields (view, add-member, reshard): mostly field bodies. */
const fieldHeavyBody: fc.Arbitrary<Buffer | undefined> = fc.oneof(
  { weight: 3, arbitrary: fieldBodyText.map((t) => Buffer.from(t, 'utf8')) },
  { weight: 2, arbitrary: anyBody },
);

/** A body the store takes: any value (prototype names as keys and strings included), no metadata. */
const wellFormedKvBodyText: fc.Arbitrary<string> = jsonText.map((value) => objectText([['value', value], ['causal-metadata', 'null']]));

/** Bodies for /kvs: mostly bodies with the real field names, many of them well-formed so cases reach the store. */
const kvHeavyBody: fc.Arbitrary<Buffer | undefined> = fc.oneof(
  { weight: 3, arbitrary: wellFormedKvBodyText.map((t) => Buffer.from(t, 'utf8')) },
  { weight: 3, arbitrary: kvBodyText.map((t) => Buffer.from(t, 'utf8')) },
  { weight: 2, arbitrary: anyBody },
);


// ---- paths -------------------------------------------------------------------------------------

/** Percent-encodings, valid and not: bad hex, truncated, invalid UTF-8, overlong, surrogates. */
export const PERCENT_SEQUENCES = [
  '%', '%4', '%zz', '%g0', '%%', '%00', '%0A', '%0D%0A', '%20', '%2F', '%2f', '%25', '%3F', '%23', '%2E%2E', '%C3', '%C3%28', '%C3%A9',
  '%E2%82', '%E2%82%AC', '%F0%9F%98', '%F0%9F%98%80', '%ED%A0%80', '%C0%AF', '%C0%80', '%FF', '%fe%ff', '%F4%90%80%80', '%5F%5Fproto%5F%5F',
] as const;

/** encodeURIComponent, except that a string with lone surrogates gets the WTF-8 bytes of one (invalid UTF-8). */
function encodeLoose(s: string): string {
  if (s.isWellFormed()) return encodeURIComponent(s);
  return `${encodeURIComponent(s.toWellFormed())}%ED%A0%80`;
}

const asciiFragment = fc.stringMatching(/^[!-~]{1,6}$/);
const pathFragment = fc.oneof(
  { weight: 3, arbitrary: fc.string({ maxLength: 12 }).map(encodeLoose) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 6 }).map(encodeLoose) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 4 }).map(encodeLoose) },
  { weight: 2, arbitrary: asciiFragment },
  { weight: 2, arbitrary: fc.constantFrom(...PERCENT_SEQUENCES) },
  { weight: 2, arbitrary: protoName },
);

/** A path segment of printable ASCII (may hold '/', '?', '#', '%'). */
const pathTail = fc.array(pathFragment, { maxLength: 5 }).map((parts) => parts.join(''));

/** A key for /kvs/<key>: odd text, prototype names, empty, at and over the 50 code point limit. */
const keyPath = fc.oneof(
  { weight: 4, arbitrary: fc.stringMatching(/^[A-Za-z0-9_.~-]{1,20}$/) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }).map(encodeLoose) },
  { weight: 4, arbitrary: pathTail },
  { weight: 2, arbitrary: protoName.chain((n) => fc.constantFrom(n, n.replace(/_/g, '%5F'))) },
  { weight: 1, arbitrary: fc.constantFrom('', '.', '..', '%2E%2E', 'a/b', 'a%2Fb', 'a?b', 'a#b', 'a;b', 'x'.repeat(50), 'x'.repeat(51)) },
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 45, max: 60 }), fc.constantFrom('k', 'é', '𝄞', '✓')).map(([n, ch]) => encodeLoose(ch.repeat(n))) },
);

/** Keys for /kvs: a small pool (so reads and deletes find what writes made) and odd ones. */
const kvKeyPath = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('k0', 'k1', 'k2', 'k%C3%A9', '__proto__', 'constructor', 'toString', 'hasOwnProperty') },
  { weight: 4, arbitrary: keyPath },
);

/** An id for /shard/members/<id> and friends: real ids, near misses, prototype names, odd text. */
function shardIdPath(realIds: readonly string[]): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 2, arbitrary: fc.constantFrom(...realIds, 's999', 's-1', 'S0', 's00', 's0%20', '%73%30', 's0/extra', 's0/', '', '%00', 's1e1', 's9007199254740993') },
    { weight: 3, arbitrary: protoName.chain((n) => fc.constantFrom(n, n.replace(/_/g, '%5F'))) },
    { weight: 3, arbitrary: pathTail },
  );
}

const query = fc.oneof({ weight: 5, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom('?', '?x=1', '?__proto__=1', '?%zz', '#frag') });

/** Paths that are no route (and never /internal/: node-to-node routes are not the public API). */
const unknownPath = fc
  .oneof(
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        '/', '//', '/kvs', '/kvs/', '/kvs//', '/view/', '/views', '/VIEW', '/%76iew', '//view', '/./view', '/kvs/../view', '/shard', '/shard/',
        '/shard/members', '/shard/members/', '/shard/key-count', '/shard/key-count/', '/shard/add-member', '/shard/reshard/x', '/shard/ids/x',
        '/status/', '/STATUS', '/internal', '/internal%2Fping', '/%2e%2e/%2e%2e/etc/passwd', '/__proto__', '/constructor', '/shard/__proto__',
      ),
    },
    { weight: 3, arbitrary: pathTail.map((t) => `/${t}`) },
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom('/kvs', '/view', '/shard', '/status'), asciiFragment).map(([a, b]) => a + b) },
  )
  .filter((p) => !p.startsWith('/internal/'));

// ---- cases -------------------------------------------------------------------------------------

export interface FuzzCase {
  method: string;
  /** Sent as is: the request target, percent-encodings and all. */
  path: string;
  body: Buffer | undefined;
  contentType: string | null;
  /** Index of the node the request goes to. */
  node: number;
}

const contentType = fc.oneof(
  { weight: 8, arbitrary: fc.constant<string | null>('application/json') },
  { weight: 1, arbitrary: fc.constantFrom<string | null>(null, 'text/plain', 'application/json; charset=latin1', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded') },
);

const commonMethod = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('GET', 'PUT', 'DELETE') },
  { weight: 2, arbitrary: fc.constantFrom(...COMMON_METHODS) },
  { weight: 1, arbitrary: fc.constantFrom(...RARE_METHODS) },
);

/** One line describing a case: what a failure report shows. */
export function describeCase(c: FuzzCase): string {
  return `${c.method} ${JSON.stringify(c.path)} to node #${c.node}, content-type ${JSON.stringify(c.contentType)}, body ${describeBody(c.body)}`;
}

export function describeBody(body: Buffer | undefined): string {
  if (body === undefined) return '(none)';
  const text = body.toString('utf8');
  const exact = Buffer.from(text, 'utf8').equals(body);
  const shown = exact ? JSON.stringify(text.length > 300 ? `${text.slice(0, 300)}...` : text) : `hex ${body.subarray(0, 120).toString('hex')}${body.length > 120 ? '...' : ''}`;
  return `${body.length} bytes ${shown}`;
}

/** undici puts only bytes 0x21-0xff in a request target: percent-encode anything else (as UTF-8). */
function wireSafePath(path: string): string {
  return path.replace(/[^\u0021-\u00ff]/gu, (ch) => encodeLoose(ch));
}

function finishCase(c: FuzzCase): FuzzCase {
  const safe = sanitize({ ...c, path: wireSafePath(c.path) });
  return Object.assign(safe, { [fc.toStringMethod]: () => describeCase(safe) });
}

function caseOf(nodeCount: number, method: fc.Arbitrary<string>, path: fc.Arbitrary<string>, body: fc.Arbitrary<Buffer | undefined>): fc.Arbitrary<FuzzCase> {
  return fc
    .record({ method, path, body, contentType, node: fc.nat({ max: Math.max(0, nodeCount - 1) }) })
    .map((c) => finishCase(c));
}

/**
 * Never let a fuzzed body act on the store's layout: a socket address that PUT /view, DELETE /view
 * or add-member could take (anything with a ':' except known-invalid and absent ones) and a shard
 * count a reshard could take (a number that is a positive integer, numeric strings and booleans,
 * in case a server coerces them) are replaced by null, on every route.
 */
export function sanitize(c: FuzzCase): FuzzCase {
  if (c.body === undefined) return c;
  let parsed: unknown;
  try {
    parsed = JSON.parse(c.body.toString('utf8'));
  } catch {
    return c;
  }
  if (!isPlainObject(parsed)) return c;
  let changed = false;
  if (Object.hasOwn(parsed, 'socket-address') && dangerousAddress(parsed['socket-address'], c.method)) {
    parsed['socket-address'] = null;
    changed = true;
  }
  if (Object.hasOwn(parsed, 'shard-count') && dangerousShardCount(parsed['shard-count'])) {
    parsed['shard-count'] = null;
    changed = true;
  }
  return changed ? { ...c, body: Buffer.from(JSON.stringify(parsed), 'utf8') } : c;
}

function dangerousAddress(value: unknown, method: string): boolean {
  if (typeof value !== 'string' || !value.includes(':')) return false;
  if ((INVALID_ADDRESSES as readonly string[]).includes(value)) return false;
  if (method === 'DELETE' && (ABSENT_ADDRESSES as readonly string[]).includes(value)) return false;
  return true;
}

function dangerousShardCount(value: unknown): boolean {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 1;
  if (typeof value === 'boolean') return true;
  if (typeof value === 'string') return value.trim() !== '' && Number.isFinite(Number(value));
  return false;
}

export interface FuzzProperty {
  name: string;
  what: string;
  arbitrary: fc.Arbitrary<FuzzCase>;
}

export interface FuzzLayout {
  nodeCount: number;
  /** The store's shard ids (s0, ...), mixed into generated ids. */
  shardIds: readonly string[];
}

/** Every property, by name. */
export function fuzzProperties(layout: FuzzLayout): FuzzProperty[] {
  const n = layout.nodeCount;
  const ids = shardIdPath(layout.shardIds.length > 0 ? layout.shardIds : ['s0']);
  return [
    {
      name: 'view',
      what: 'GET, PUT, DELETE and other methods on /view with arbitrary bodies (never an address that could act)',
      arbitrary: caseOf(n, commonMethod, fc.tuple(fc.constant('/view'), query).map(([p, q]) => p + q), fieldHeavyBody),
    },
    {
      name: 'kvs',
      what: 'GET, PUT, DELETE and other methods on /kvs/<odd key> with arbitrary bodies, "value" and "causal-metadata" holding anything',
      arbitrary: caseOf(n, commonMethod, fc.tuple(kvKeyPath, query).map(([k, q]) => `/kvs/${k}${q}`), kvHeavyBody),
    },
    {
      name: 'shard-read',
      what: '/shard/ids, /shard/node-shard-id, /shard/members/<id>, /shard/key-count/<id> and /status with odd ids, any method and body',
      arbitrary: caseOf(
        n,
        fc.oneof({ weight: 3, arbitrary: fc.constant('GET') }, { weight: 2, arbitrary: commonMethod }),
        fc
          .tuple(
            fc.oneof(
              { weight: 1, arbitrary: fc.constantFrom('/shard/ids', '/shard/node-shard-id', '/status') },
              { weight: 3, arbitrary: fc.tuple(fc.constantFrom('/shard/members/', '/shard/key-count/'), ids).map(([a, b]) => a + b) },
            ),
            query,
          )
          .map(([p, q]) => p + q),
        anyBody,
      ),
    },
    {
      name: 'shard-write',
      what: 'PUT /shard/add-member/<id> and PUT /shard/reshard (and other methods) with malformed bodies only',
      arbitrary: caseOf(
        n,
        fc.oneof({ weight: 3, arbitrary: fc.constant('PUT') }, { weight: 2, arbitrary: commonMethod }),
        fc
          .tuple(
            fc.oneof(
              { weight: 3, arbitrary: ids.map((id) => `/shard/add-member/${id}`) },
              { weight: 2, arbitrary: fc.constantFrom('/shard/reshard', '/shard/reshard/', '/shard/reshard?shard-count=2') },
            ),
            query,
          )
          .map(([p, q]) => p + q),
        fieldHeavyBody,
      ),
    },
    {
      name: 'unknown-path',
      what: 'paths that are no route, any method and body',
      arbitrary: caseOf(n, commonMethod, unknownPath, anyBody),
    },
    {
      name: 'http-odd',
      what: 'methods Node does not know (FOO, patch, ...) and raw non-ASCII bytes in the path, on every route',
      arbitrary: caseOf(
        n,
        fc.oneof({ weight: 2, arbitrary: fc.constantFrom(...UNKNOWN_METHODS) }, { weight: 1, arbitrary: commonMethod }),
        fc
          .tuple(
            fc.constantFrom('/view', '/kvs/', '/shard/ids', '/shard/node-shard-id', '/shard/members/', '/shard/key-count/', '/shard/add-member/', '/shard/reshard', '/status', '/nope/'),
            fc.oneof(
              { weight: 1, arbitrary: fc.constant('') },
              { weight: 2, arbitrary: fc.array(fc.integer({ min: 0x80, max: 0xff }), { minLength: 1, maxLength: 3 }).map((cs) => `k${String.fromCharCode(...cs)}`) },
              { weight: 1, arbitrary: keyPath },
            ),
          )
          .map(([p, t]) => (p.endsWith('/') ? p + t : t === '' ? p : `${p}/${t}`)),
        anyBody,
      ),
    },
  ];
}

// ---- sending and judging -------------------------------------------------------------------------

export type Answer =
  | { ok: true; status: number; headers: Record<string, string | string[] | undefined>; text: string; json: unknown; isJson: boolean; ms: number }
  | { ok: false; error: string; ms: number };

// Fuzz requests share keep-alive connections (state kept between requests on one connection is
// part of what is fuzzed); a short keep-alive on our side, so we never reuse one the node is closing.
const fuzzAgent = new Agent({ keepAliveTimeout: 500, keepAliveMaxTimeout: 1_000, connect: { timeout: 2_000 } });

/** Sends one case as is (undici refuses only what it cannot put on the wire). */
export async function sendCase(addr: NodeAddress, c: FuzzCase, timeoutMs: number): Promise<Answer> {
  const started = performance.now();
  try {
    const headers: Record<string, string> = {};
    if (c.contentType !== null) headers['content-type'] = c.contentType;
    const res = await fuzzAgent.request({
      origin: `http://${addr}`,
      path: c.path,
      method: c.method as Dispatcher.HttpMethod,
      headers,
      body: c.body,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs + 500),
    });
    const text = await res.body.text();
    let json: unknown;
    let isJson = false;
    try {
      json = JSON.parse(text);
      isJson = true;
    } catch {
      json = undefined;
    }
    return { ok: true, status: res.statusCode, headers: res.headers, text, json, isJson, ms: performance.now() - started };
  } catch (err) {
    const e = err as Error & { code?: string };
    return { ok: false, error: `${e.code ?? e.name}: ${e.message}`, ms: performance.now() - started };
  }
}

export interface Problem {
  /** Stable, short: failures with the same kind are one finding (run.ts groups by it). */
  kind: string;
  detail: string;
}

/** What is wrong with an answer, or null: the fuzz contract. */
export function judge(c: FuzzCase, a: Answer): Problem | null {
  const what = describeCase(c);
  if (!a.ok) return { kind: `no HTTP answer (${a.error.split(':')[0]})`, detail: `${what}\n  -> no HTTP answer after ${Math.round(a.ms)} ms: ${a.error}` };
  const got = `${what}\n  -> ${a.status} ${JSON.stringify(a.text.slice(0, 300))}`;
  // The operator's pages answer in their own formats: /ui redirects to /ui/ (HTML), /metrics is
  // Prometheus text. Only their status is judged.
  const path = c.path.split('?')[0];
  if (path === '/ui' || path === '/ui/' || path === '/metrics') return a.status >= 500 ? { kind: `${a.status} on ${path}`, detail: got } : null;
  if (a.status >= 500) return { kind: `${a.status} ${errorOf(a)}`, detail: `${got}\n  (a 5xx: nothing a client sends may get a server error)` };
  if (a.status < 200 || (a.status >= 300 && a.status < 400)) return { kind: `status ${a.status}`, detail: `${got}\n  (expected 2xx or 4xx)` };
  if (c.method === 'HEAD') return null;
  if (a.status >= 400) {
    if (!a.isJson || !isPlainObject(a.json) || typeof a.json.error !== 'string') {
      return { kind: `${a.status} without a JSON {"error": string} body`, detail: `${got}\n  (an error must be a JSON object with an "error" string)` };
    }
    return null;
  }
  if (!a.isJson) return { kind: `${a.status} with a body that is not JSON`, detail: `${got}\n  (a 2xx answer must be JSON)` };
  return null;
}

function errorOf(a: { text: string; json: unknown }): string {
  return isPlainObject(a.json) && typeof a.json.error === 'string' ? JSON.stringify(a.json.error).slice(0, 80) : JSON.stringify(a.text.slice(0, 60));
}

/** Every node answers GET /view with 200 and a view, within `timeoutMs`; and no node process exited. */
export async function checkAlive(nodes: readonly NodeAddress[], crashed: () => string | null, timeoutMs = 5_000): Promise<Problem | null> {
  const gone = crashed();
  if (gone !== null) return { kind: 'node crashed', detail: `a node exited: ${gone}` };
  for (const addr of nodes) {
    const a = await sendCase(addr, { method: 'GET', path: '/view', body: undefined, contentType: null, node: 0 }, timeoutMs);
    if (!a.ok || a.status !== 200 || !isPlainObject(a.json) || !Array.isArray(a.json.view)) {
      const got = a.ok ? `${a.status} ${a.text.slice(0, 200)}` : a.error;
      return { kind: 'node stopped answering GET /view', detail: `GET /view at ${addr} did not answer 200 within ${timeoutMs} ms: ${got}` };
    }
  }
  return null;
}

// ---- running a property ------------------------------------------------------------------------

export interface FuzzTarget {
  label: string;
  nodes: readonly NodeAddress[];
  /** Why a node process exited on its own, or null. */
  crashed: () => string | null;
}

export interface FuzzRunOptions {
  seed: number;
  numRuns: number;
  /** fast-check's replay path of a counterexample (with the same seed). */
  path?: string;
  /** Record every failing case and go on (no shrinking) instead of stopping at the first. */
  keepGoing?: boolean;
  /** Check that every node answers GET /view every this many cases. */
  aliveEvery?: number;
  /** Stop generating (or shrinking) after this long. */
  timeLimitMs?: number;
  requestTimeoutMs?: number;
  /** How to replay, shown in failure reports: given the property name, seed and path. */
  replay?: (name: string, seed: number, path?: string) => string;
}

export interface FuzzOutcome {
  property: string;
  target: string;
  seed: number;
  /** Cases sent, shrinking included. */
  cases: number;
  ok: boolean;
  /** Empty when ok; otherwise fast-check's report (seed, path, shrunk counterexample, the check that failed). */
  report: string;
  /** keepGoing: failures grouped by kind. */
  failures: Map<string, { count: number; example: string }>;
  /** How many answers had each status ('none' when there was no answer): shows what the cases reached. */
  statuses: Map<string, number>;
}

/** "201:12 400:80 404:8", statuses in order. */
export function formatStatuses(statuses: ReadonlyMap<string, number>): string {
  return [...statuses.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([s, n]) => `${s}:${n}`)
    .join(' ');
}

/** Runs one property with seeded fast-check against a running store. */
export async function runFuzzProperty(target: FuzzTarget, property: FuzzProperty, options: FuzzRunOptions): Promise<FuzzOutcome> {
  const aliveEvery = options.aliveEvery ?? 25;
  const timeoutMs = options.requestTimeoutMs ?? 5_000;
  const failures = new Map<string, { count: number; example: string }>();
  const statuses = new Map<string, number>();
  let cases = 0;
  const record = (p: Problem): void => {
    const key = p.kind;
    const seen = failures.get(key);
    if (seen) seen.count++;
    else failures.set(key, { count: 1, example: p.detail });
  };
  const prop = fc.asyncProperty(property.arbitrary, async (c) => {
    cases++;
    const addr = target.nodes[c.node % target.nodes.length] as NodeAddress;
    const answer = await sendCase(addr, c, timeoutMs);
    const status = answer.ok ? String(answer.status) : 'none';
    statuses.set(status, (statuses.get(status) ?? 0) + 1);
    let problem = judge(c, answer);
    if (problem === null && cases % aliveEvery === 0) problem = await checkAlive(target.nodes, target.crashed);
    if (problem === null) return;
    if (options.keepGoing) {
      record(problem);
      return;
    }
    throw new Error(`[${problem.kind}] ${problem.detail}`);
  });
  let report = '';
  try {
    await fc.assert(prop, {
      seed: options.seed,
      numRuns: options.numRuns,
      ...(options.path !== undefined ? { path: options.path } : {}),
      ...(options.timeLimitMs !== undefined ? { plugins: [fc.interruptAfterTimeLimit(options.timeLimitMs)] } : {}),
    });
  } catch (err) {
    // fast-check's report (seed, path, counterexample), then the check that failed (its cause).
    report = err instanceof Error ? err.message : String(err);
    const cause = err instanceof Error ? err.cause : undefined;
    if (cause instanceof Error && !report.includes(cause.message)) report = `${report}\nThe failed check: ${cause.message}`;
  }
  const alive = await checkAlive(target.nodes, target.crashed, 5_000);
  if (alive !== null) {
    if (options.keepGoing) record(alive);
    else report = `${report}${report ? '\n' : ''}after the property: ${alive.detail}`;
  }
  const ok = report === '' && failures.size === 0;
  if (!ok && report !== '') {
    const pathMatch = /path: "([^"]*)"/.exec(report);
    const replay = options.replay?.(property.name, options.seed, pathMatch?.[1]);
    report = `fuzz property "${property.name}" (${property.what}) on ${target.label} failed; seed ${options.seed}${replay ? `; replay: ${replay}` : ''}\n${report}`;
  }
  return { property: property.name, target: target.label, seed: options.seed, cases, ok, report, failures, statuses };
}

// ---- raw sockets -------------------------------------------------------------------------------

export interface RawResult {
  data: Buffer;
  /** How reading ended: the node closed (FIN or close), we stopped after a complete response, or the deadline. */
  end: 'closed' | 'complete' | 'deadline';
  /** A socket error (EPIPE, ECONNRESET) seen while writing or reading. */
  error: string | null;
  ms: number;
}

export interface RawExchangeOptions {
  /** Give up reading after this long. */
  deadlineMs?: number;
  /** After a complete response, wait this long for the node to close before stopping. */
  graceMs?: number;
}

/**
 * Connects, writes `bytes`, and reads until the node closes the connection, a complete response
 * arrived and `graceMs` passed without a close, or the deadline.
 */
export function rawExchange(addr: NodeAddress, bytes: Buffer, options: RawExchangeOptions = {}): Promise<RawResult> {
  const deadlineMs = options.deadlineMs ?? 5_000;
  const graceMs = options.graceMs ?? 1_000;
  const [host, port] = splitAddress(addr);
  const started = performance.now();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let error: string | null = null;
    let done = false;
    let graceTimer: NodeJS.Timeout | undefined;
    const socket = connect({ host, port });
    const finish = (end: RawResult['end']): void => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      clearTimeout(graceTimer);
      socket.destroy();
      resolve({ data: Buffer.concat(chunks), end, error, ms: performance.now() - started });
    };
    const deadline = setTimeout(() => finish('deadline'), deadlineMs);
    socket.on('connect', () => {
      socket.write(bytes, (err) => {
        if (err) error ??= `${(err as Error & { code?: string }).code ?? ''} ${err.message}`.trim();
      });
    });
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      const parsed = parseHttpResponse(Buffer.concat(chunks), false);
      if (parsed?.complete && graceTimer === undefined) graceTimer = setTimeout(() => finish('complete'), graceMs);
    });
    socket.on('end', () => finish('closed'));
    socket.on('close', () => finish('closed'));
    socket.on('error', (err: Error & { code?: string }) => {
      error ??= `${err.code ?? ''} ${err.message}`.trim();
    });
  });
}

export interface ParsedResponse {
  status: number;
  headers: Map<string, string[]>;
  body: Buffer;
  complete: boolean;
}

/** The first HTTP/1.x response in `data`, or null if there is no complete status line and header block. */
export function parseHttpResponse(data: Buffer, closed: boolean): ParsedResponse | null {
  const headEnd = data.indexOf('\r\n\r\n');
  if (headEnd < 0) return null;
  const lines = data.subarray(0, headEnd).toString('latin1').split('\r\n');
  const statusLine = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0] ?? '');
  if (!statusLine) return null;
  const headers = new Map<string, string[]>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    headers.set(name, [...(headers.get(name) ?? []), line.slice(colon + 1).trim()]);
  }
  const rest = data.subarray(headEnd + 4);
  const te = headers.get('transfer-encoding')?.join(',').toLowerCase() ?? '';
  const cl = headers.get('content-length')?.[0];
  if (te.includes('chunked')) {
    const parts: Buffer[] = [];
    let at = 0;
    for (;;) {
      const lineEnd = rest.indexOf('\r\n', at);
      if (lineEnd < 0) return { status: Number(statusLine[1]), headers, body: Buffer.concat(parts), complete: false };
      const size = parseInt(rest.subarray(at, lineEnd).toString('latin1'), 16);
      if (!Number.isFinite(size)) return { status: Number(statusLine[1]), headers, body: Buffer.concat(parts), complete: false };
      if (size === 0) return { status: Number(statusLine[1]), headers, body: Buffer.concat(parts), complete: true };
      if (rest.length < lineEnd + 2 + size + 2) return { status: Number(statusLine[1]), headers, body: Buffer.concat(parts), complete: false };
      parts.push(rest.subarray(lineEnd + 2, lineEnd + 2 + size));
      at = lineEnd + 2 + size + 2;
    }
  }
  if (cl !== undefined && /^\d+$/.test(cl)) {
    const length = Number(cl);
    return { status: Number(statusLine[1]), headers, body: rest.subarray(0, length), complete: rest.length >= length };
  }
  return { status: Number(statusLine[1]), headers, body: rest, complete: closed };
}

export interface RawCase {
  name: string;
  /** The bytes to send to the node at `addr`. */
  bytes: (addr: NodeAddress) => Buffer;
  /** Acceptable statuses; any 4xx when omitted. */
  statuses?: readonly number[];
}

const crlf = (lines: readonly string[]): string => lines.map((l) => `${l}\r\n`).join('');

/** Raw HTTP-layer cases: each must get a 4xx JSON error with `connection: close`, and the node keeps answering. */
export const RAW_CASES: readonly RawCase[] = [
  { name: 'a NUL byte in the path', bytes: () => Buffer.from(crlf(['GET /kvs/a\u0000b HTTP/1.1', 'Host: x', '']), 'latin1') },
  { name: 'a raw 0xff byte in the path', bytes: () => Buffer.concat([Buffer.from('GET /kvs/a'), Buffer.from([0xff]), Buffer.from(crlf(['b HTTP/1.1', 'Host: x', '']))]) },
  { name: 'a space inside the path', bytes: () => Buffer.from(crlf(['GET /kvs/a b HTTP/1.1', 'Host: x', ''])) },
  { name: 'a tab inside the path', bytes: () => Buffer.from(crlf(['GET /kvs/a\tb HTTP/1.1', 'Host: x', ''])) },
  { name: 'a 100 KB URL', statuses: [414, 431], bytes: () => Buffer.from(crlf([`GET /kvs/${'a'.repeat(100 * 1024)} HTTP/1.1`, 'Host: x', ''])) },
  { name: 'a 100 KB header', statuses: [431], bytes: () => Buffer.from(crlf(['GET /view HTTP/1.1', 'Host: x', `X-Big: ${'a'.repeat(100 * 1024)}`, ''])) },
  {
    name: '2,000 headers (12 KB in all, under the size limit)',
    statuses: [431, 400],
    bytes: () => Buffer.from(crlf(['GET /view HTTP/1.1', 'Host: x', ...Array.from({ length: 2000 }, () => 'x: 1'), ''])),
  },
  {
    name: 'duplicate Content-Length with different values',
    bytes: () => Buffer.from(crlf(['PUT /kvs/dup-cl-diff HTTP/1.1', 'Host: x', 'Content-Type: application/json', 'Content-Length: 13', 'Content-Length: 14', '']) + '{"value":1}  '),
  },
  {
    name: 'duplicate equal Content-Length',
    bytes: () => Buffer.from(crlf(['PUT /kvs/dup-cl-same HTTP/1.1', 'Host: x', 'Content-Type: application/json', 'Content-Length: 11', 'Content-Length: 11', '']) + '{"value":1}'),
  },
  {
    name: 'Content-Length together with Transfer-Encoding: chunked',
    bytes: () => Buffer.from(crlf(['PUT /kvs/cl-te HTTP/1.1', 'Host: x', 'Content-Type: application/json', 'Content-Length: 11', 'Transfer-Encoding: chunked', '', 'b', '{"value":1}', '0', ''])),
  },
  { name: 'a bad chunk size ("zz")', bytes: () => Buffer.from(crlf(['PUT /kvs/bad-chunk HTTP/1.1', 'Host: x', 'Content-Type: application/json', 'Transfer-Encoding: chunked', '', 'zz'])) },
  { name: 'a negative Content-Length', bytes: () => Buffer.from(crlf(['PUT /kvs/neg-cl HTTP/1.1', 'Host: x', 'Content-Length: -1', '']) + '{}') },
  { name: 'a non-numeric Content-Length', bytes: () => Buffer.from(crlf(['PUT /kvs/nan-cl HTTP/1.1', 'Host: x', 'Content-Length: abc', '']) + '{}') },
  { name: 'unknown method FOO', statuses: [405], bytes: () => Buffer.from(crlf(['FOO /view HTTP/1.1', 'Host: x', ''])) },
  { name: 'method CONNECT', statuses: [405], bytes: (addr) => Buffer.from(crlf([`CONNECT ${addr} HTTP/1.1`, `Host: ${addr}`, ''])) },
  { name: 'the HTTP/2 connection preface', bytes: () => Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n') },
  { name: 'TLS ClientHello bytes', bytes: () => tlsClientHello() },
];

/** The start of a TLS 1.2 ClientHello record, as a client that speaks HTTPS to a plain port sends. */
function tlsClientHello(): Buffer {
  const random = Buffer.alloc(32, 0x5a);
  const body = Buffer.concat([Buffer.from([0x03, 0x03]), random, Buffer.from([0x00, 0x00, 0x04, 0x13, 0x01, 0x00, 0xff, 0x01, 0x00, 0x00, 0x00])]);
  const handshake = Buffer.concat([Buffer.from([0x01, 0x00, (body.length >> 8) & 0xff, body.length & 0xff]), body]);
  return Buffer.concat([Buffer.from([0x16, 0x03, 0x01, (handshake.length >> 8) & 0xff, handshake.length & 0xff]), handshake]);
}

/** What is wrong with a raw exchange (empty when nothing): a 4xx (or `statuses`) JSON error with `connection: close`. */
export function judgeRaw(statuses: readonly number[] | undefined, result: RawResult): string[] {
  const parsed = parseHttpResponse(result.data, result.end === 'closed');
  const received = `${result.data.length} bytes ${JSON.stringify(result.data.subarray(0, 200).toString('latin1'))}; reading ended: ${result.end} after ${Math.round(result.ms)} ms${result.error ? `; socket error: ${result.error}` : ''}`;
  if (parsed === null) return [`no HTTP response: got ${received}`];
  const problems: string[] = [];
  const wanted = statuses ? statuses.join(' or ') : 'a 4xx';
  if (statuses ? !statuses.includes(parsed.status) : parsed.status < 400 || parsed.status >= 500) problems.push(`status ${parsed.status}, expected ${wanted}`);
  let body: unknown;
  try {
    body = JSON.parse(parsed.body.toString('utf8'));
  } catch {
    body = undefined;
  }
  if (!isPlainObject(body) || typeof body.error !== 'string') problems.push('the body is not a JSON object with an "error" string');
  const connection = (parsed.headers.get('connection') ?? []).join(',').toLowerCase();
  if (!connection.split(/\s*,\s*/).includes('close')) problems.push(`no "connection: close" header (connection: ${JSON.stringify(connection)})`);
  if (!parsed.complete) problems.push('the response is incomplete');
  return problems.length === 0 ? [] : [...problems, `got: ${received}`];
}

// ---- small helpers -----------------------------------------------------------------------------

export function splitAddress(addr: NodeAddress): [string, number] {
  const colon = addr.lastIndexOf(':');
  return [addr.slice(0, colon), Number(addr.slice(colon + 1))];
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parsesTo(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Closes the shared keep-alive connections (a script's last step, so the process can exit). */
export async function closeFuzzConnections(): Promise<void> {
  await fuzzAgent.close();
}
