// Regression tests for what hostile or broken clients found, against real nodes (each store on ten
// ports of the file's range, test/helpers/ports.ts):
//   - the HTTP layer, raw bytes on a socket: every malformed request gets a 4xx JSON error with
//     `connection: close` (the slow-headers case waits for the 20 s headers timeout, overlapped
//     with the rest of the file);
//   - bodies over MAX_BODY_BYTES get a 413 the client can read, never a reset (the same store);
//   - values nested deeper than 64 are refused, 64 is stored, replicated and survives anti-entropy
//     (ANTI_ENTROPY_INTERVAL_MS=200);
//   - prototype names as shard ids are no shard, and as keys are plain keys (replicated only; and
//     sharded, with a joiner);
//   - numbers beyond a double and invalid UTF-8 are refused; valid non-ASCII round-trips.

import { Readable } from 'node:stream';
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client as UndiciClient, request } from 'undici';
import { NotYet, pollUntil } from '../helpers/cluster.ts';
import {
  Client,
  assertErrorReply,
  call,
  get,
  getNodeShardId,
  getView,
  kvsPath,
  readShardLayout,
  sortedAddresses,
  type CausalMetadata,
  type NodeAddress,
  type Reply,
} from '../helpers/http.ts';
import { RAW_CASES, judgeRaw, rawExchange, type RawResult } from '../fuzz/cases.ts';
import { portsFor } from '../helpers/ports.ts';
import { useCluster } from '../helpers/store.ts';

const ports = portsFor(import.meta.url);

/** The default MAX_BODY_BYTES. */
const MAX_BODY_BYTES = 2 * 1024 * 1024;
/** The deepest nesting of arrays and objects a stored value may have. */
const DEPTH_MAX = 64;
/** The server's headers timeout (http-server.ts): a request whose headers are not complete by then gets 408. */
const HEADERS_TIMEOUT_MS = 20_000;
/** How long the slow-headers case waits for the 408 in all: the timeout, Node's 1 s check, slack. */
const SLOW_HEADERS_DEADLINE_MS = HEADERS_TIMEOUT_MS + 5_000;
const REPLICATION_DEADLINE_MS = 10_000;

/** The node still answers GET /view with 200 (within a bound generous enough for a loaded CI machine). */
async function assertAnswers(addr: NodeAddress, what: string): Promise<void> {
  let r: Reply;
  try {
    r = await call('GET', addr, '/view', undefined, { timeoutMs: 5_000 });
  } catch (err) {
    assert.fail(`${what}: ${addr} must still answer GET /view: ${(err as Error).message}`);
  }
  assert.equal(r.status, 200, `${what}: ${addr} must still answer GET /view with 200; got ${r.status} ${r.text.slice(0, 200)}`);
}

/** Reads a key on `addr` with the writer's metadata until it is there (replication), and returns it. */
async function readReplicated(addr: NodeAddress, key: string, meta: CausalMetadata, what: string): Promise<Reply> {
  const { value } = await pollUntil(
    `${what}: GET ${kvsPath(key)} at ${addr} to answer 200`,
    async () => {
      const r = await get(addr, key, meta);
      if (r.status === 503 || r.status === 404) throw new NotYet(`${r.status} ${r.text.slice(0, 200)}`);
      return r;
    },
    { timeoutMs: REPLICATION_DEADLINE_MS, intervalMs: 50 },
  );
  return value;
}

/** A key the receiving node must not hold: GET answers 404. */
async function assertNotCreated(addr: NodeAddress, key: string, what: string): Promise<void> {
  const r = await get(addr, key, null);
  assert.equal(r.status, 404, `${what}: the refused write must not create ${JSON.stringify(key)}; GET at ${addr} got ${r.status} ${r.text.slice(0, 300)}`);
}

function putRaw(addr: NodeAddress, key: string, body: string | Buffer): Promise<Reply> {
  return call('PUT', addr, kvsPath(key), undefined, { rawBody: body });
}

// ---- the HTTP layer and over-size bodies (one store for both, and for the slow-headers case) ------

let httpNodes: NodeAddress[] = [];
let slowHeaders: Promise<RawResult> | undefined;

// A store for the whole file: its logs are printed for any failed test of the file.
const httpStore = useCluster({
  ports: ports.slice(0, 10),
  nodeCount: 2,
  logLines: 20,
  afterStart: (cluster) => {
    httpNodes = cluster.addresses();
    // Headers that never finish, sent first so the wait for the headers timeout overlaps the rest of the file.
    const slowAddr = httpNodes[1] as NodeAddress;
    slowHeaders = rawExchange(slowAddr, Buffer.from('GET /view HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n'), { deadlineMs: SLOW_HEADERS_DEADLINE_MS, graceMs: 200 });
  },
});

describe('HTTP layer: malformed requests on a raw socket get a 4xx JSON error with connection: close', () => {
  for (const rc of RAW_CASES) {
    test(rc.name, async () => {
      const addr = httpNodes[0] as NodeAddress;
      const result = await rawExchange(addr, rc.bytes(addr));
      const problems = judgeRaw(rc.statuses, result);
      assert.ok(problems.length === 0, `${rc.name}: expected ${rc.statuses ? rc.statuses.join(' or ') : 'a 4xx'} with a JSON {"error": string} body and connection: close:\n  ${problems.join('\n  ')}`);
      await assertAnswers(addr, `after ${rc.name}`);
      httpStore.cluster.assertNoCrash();
    });
  }
});

describe('over-size bodies get a 413 the client can read', () => {
  /** One PUT on a connection of its own; a thrown error (EPIPE, ECONNRESET, ...) is returned as text. */
  async function putOnFreshConnection(addr: NodeAddress, key: string, body: Buffer | Readable): Promise<{ status: number; text: string } | { error: string }> {
    const client = new UndiciClient(`http://${addr}`, { connect: { timeout: 5_000 } });
    try {
      const res = await request(`http://${addr}${kvsPath(key)}`, {
        dispatcher: client,
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body,
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
      });
      return { status: res.statusCode, text: await res.body.text() };
    } catch (err) {
      const e = err as Error & { code?: string };
      return { error: `${e.code ?? e.name}: ${e.message}` };
    } finally {
      await client.destroy().catch(() => undefined);
    }
  }

  function problemWith413(answer: { status: number; text: string } | { error: string }): string | null {
    if ('error' in answer) return `no readable answer: ${answer.error}`;
    let body: unknown;
    try {
      body = JSON.parse(answer.text);
    } catch {
      body = undefined;
    }
    const isError = typeof body === 'object' && body !== null && !Array.isArray(body) && typeof (body as { error?: unknown }).error === 'string';
    if (answer.status !== 413 || !isError) return `${answer.status} ${JSON.stringify(answer.text.slice(0, 200))}`;
    return null;
  }

  function jsonOfSize(bytes: number): Buffer {
    const head = Buffer.from('{"causal-metadata": null, "value": "');
    const tail = Buffer.from('"}');
    return Buffer.concat([head, Buffer.alloc(bytes - head.length - tail.length, 0x61), tail]);
  }

  test('a 3 MiB PUT gets a JSON 413, 50 times in a row, each on a fresh connection', async () => {
    const addr = httpNodes[0] as NodeAddress;
    const body = jsonOfSize(3 * 1024 * 1024);
    const failures: string[] = [];
    for (let i = 1; i <= 50; i++) {
      const problem = problemWith413(await putOnFreshConnection(addr, 'big-3mib', body));
      if (problem !== null) failures.push(`#${i}: ${problem}`);
    }
    assert.ok(
      failures.length === 0,
      `every 3 MiB PUT (MAX_BODY_BYTES ${MAX_BODY_BYTES}) must get 413 with a JSON {"error": string} body the client reads, never a reset; ${failures.length} of 50 did not:\n  ${failures.slice(0, 10).join('\n  ')}`,
    );
    await assertAnswers(addr, 'after 50 over-size PUTs');
    await assertNotCreated(addr, 'big-3mib', '3 MiB PUT');
  });

  test('a 64 MB PUT gets a JSON 413 (3 times, each on a fresh connection)', async () => {
    const addr = httpNodes[0] as NodeAddress;
    const body = jsonOfSize(64 * 1000 * 1000);
    const failures: string[] = [];
    for (let i = 1; i <= 3; i++) {
      const problem = problemWith413(await putOnFreshConnection(addr, 'big-64mb', body));
      if (problem !== null) failures.push(`#${i}: ${problem}`);
    }
    assert.ok(failures.length === 0, `a 64 MB PUT must get 413 with a JSON {"error": string} body the client reads, never a reset; ${failures.length} of 3 did not:\n  ${failures.join('\n  ')}`);
    await assertAnswers(addr, 'after a 64 MB PUT');
    await assertNotCreated(addr, 'big-64mb', '64 MB PUT');
  });

  test('a 3 MiB chunked PUT (no Content-Length) gets a JSON 413', async () => {
    const addr = httpNodes[0] as NodeAddress;
    const whole = jsonOfSize(3 * 1024 * 1024);
    async function* chunks(): AsyncIterable<Buffer> {
      for (let at = 0; at < whole.length; at += 64 * 1024) yield whole.subarray(at, at + 64 * 1024);
    }
    const problem = problemWith413(await putOnFreshConnection(addr, 'big-chunked', Readable.from(chunks())));
    assert.equal(problem, null, `a 3 MiB chunked PUT must get 413 with a JSON {"error": string} body the client reads; got ${problem}`);
    await assertAnswers(addr, 'after a chunked over-size PUT');
    await assertNotCreated(addr, 'big-chunked', 'chunked 3 MiB PUT');
  });

  test('afterwards every node answers and none crashed', async () => {
    for (const addr of httpNodes) await assertAnswers(addr, 'after the over-size bodies');
    httpStore.cluster.assertNoCrash();
  });
});

// ---- nesting depth -------------------------------------------------------------------------------

/** `n` nested arrays around a string: depth n. */
const deepArrays = (n: number): string => `${'['.repeat(n)}"deep"${']'.repeat(n)}`;
/** `n` nested objects {"a": ...} around a string: depth n. */
const deepObjects = (n: number): string => `${'{"a":'.repeat(n)}"deep"${'}'.repeat(n)}`;

describe(`values nested deeper than ${DEPTH_MAX} are refused; ${DEPTH_MAX} is stored everywhere and survives anti-entropy`, () => {
  const store = useCluster({ ports: ports.slice(10, 10), nodeCount: 3, extraEnv: { ANTI_ENTROPY_INTERVAL_MS: '200' }, logLines: 30 });
  let nodes: NodeAddress[] = [];

  before(() => {
    nodes = store.nodes;
  });

  /** Anti-entropy rounds each node has completed (GET /status repair.rounds). */
  async function rounds(): Promise<Map<NodeAddress, number>> {
    const out = new Map<NodeAddress, number>();
    for (const addr of nodes) {
      const r = await call('GET', addr, '/status', undefined, { timeoutMs: 2_000 });
      const n = r.body?.repair?.rounds;
      if (r.status !== 200 || typeof n !== 'number') throw new NotYet(`GET /status at ${addr}: ${r.status} ${r.text.slice(0, 200)}`);
      out.set(addr, n);
    }
    return out;
  }

  /** Waits until every node has completed `more` anti-entropy rounds beyond now, and none crashed. */
  async function waitAntiEntropyRounds(more: number, what: string): Promise<void> {
    store.cluster.assertNoCrash();
    const base = await rounds();
    await pollUntil(
      `${what}: ${more} more anti-entropy rounds on every node (ANTI_ENTROPY_INTERVAL_MS=200)`,
      async () => {
        store.cluster.assertNoCrash();
        const now = await rounds();
        const behind = nodes.filter((a) => (now.get(a) ?? 0) < (base.get(a) ?? 0) + more);
        if (behind.length > 0) throw new NotYet(behind.map((a) => `${a}: ${base.get(a)} -> ${now.get(a)}`).join('; '));
      },
      { timeoutMs: 15_000, intervalMs: 100 },
    );
    store.cluster.assertNoCrash();
  }

  test(`a value nested exactly ${DEPTH_MAX} deep is stored, read back exactly on every replica, and survives anti-entropy`, async () => {
    const writer = new Client();
    const stored: { key: string; value: unknown }[] = [];
    for (const [shape, text] of [['arrays', deepArrays(DEPTH_MAX)], ['objects', deepObjects(DEPTH_MAX)]] as const) {
      const key = `deep-${DEPTH_MAX}-${shape}`;
      const r = await putRaw(nodes[0] as NodeAddress, key, `{"value": ${text}, "causal-metadata": ${JSON.stringify(writer.meta)}}`);
      assert.equal(r.status, 201, `PUT of ${DEPTH_MAX} nested ${shape} must be stored (201); got ${r.status} ${r.text.slice(0, 300)}`);
      writer.meta = r.body['causal-metadata'];
      stored.push({ key, value: JSON.parse(text) });
    }
    for (const { key, value } of stored) {
      for (const addr of nodes) {
        const r = await readReplicated(addr, key, writer.meta, `${DEPTH_MAX}-deep value`);
        assert.equal(r.status, 200, `GET ${key} at ${addr}: ${r.status} ${r.text.slice(0, 300)}`);
        assert.deepEqual(r.body.value, value, `${key} at ${addr} must read back exactly what was written`);
      }
    }
    await waitAntiEntropyRounds(3, `after storing ${DEPTH_MAX}-deep values`);
    for (const { key, value } of stored) {
      for (const addr of nodes) {
        const r = await get(addr, key, writer.meta);
        assert.equal(r.status, 200, `after anti-entropy, GET ${key} at ${addr}: ${r.status} ${r.text.slice(0, 300)}`);
        assert.deepEqual(r.body.value, value, `after anti-entropy, ${key} at ${addr} must still be exactly what was written`);
      }
    }
  });

  test(`values nested deeper than ${DEPTH_MAX} get 400 naming the limit, and are not stored`, async (t) => {
    const cases: [string, string][] = [
      ['65 nested arrays', deepArrays(65)],
      ['5,000 nested arrays', deepArrays(5_000)],
      ['100,000 nested arrays', deepArrays(100_000)],
      ['65 nested objects', deepObjects(65)],
      ['5,000 nested objects', deepObjects(5_000)],
      ['100,000 nested objects', deepObjects(100_000)],
      [`${DEPTH_MAX} nested arrays inside an object (depth 65)`, `{"x": ${deepArrays(DEPTH_MAX)}}`],
    ];
    for (const [i, [name, text]] of cases.entries()) {
      await t.test(name, async () => {
        const key = `too-deep-${i}`;
        const addr = nodes[1] as NodeAddress;
        store.cluster.assertNoCrash();
        const r = await putRaw(addr, key, `{"value": ${text}, "causal-metadata": null}`);
        assertErrorReply(r, 400, `PUT of ${name}`);
        assert.match(r.body.error, new RegExp(`\\b${DEPTH_MAX}\\b`), `the 400 for ${name} must name the limit ${DEPTH_MAX}: ${JSON.stringify(r.body.error)}`);
        await assertNotCreated(addr, key, `PUT of ${name}`);
        store.cluster.assertNoCrash();
      });
    }
  });

  test('afterwards every node is alive and anti-entropy still runs', async () => {
    await waitAntiEntropyRounds(3, 'after the too-deep PUTs');
    for (const addr of nodes) await assertAnswers(addr, 'after the too-deep PUTs');
  });
});

// ---- prototype names ---------------------------------------------------------------------------

const PROTO_IDS = ['__proto__', 'constructor', 'toString', 'valueOf', 'hasOwnProperty'] as const;

/** Ids as they appear in the path: each name, and __proto__ percent-encoded. */
const PROTO_ID_PATHS: readonly string[] = [...PROTO_IDS, '%5F%5Fproto%5F%5F'];

/**
 * GET key-count, GET members and PUT add-member of every prototype name get 404; `candidate` is a
 * node in the view that add-member could take (so the id alone decides).
 */
function protoIdTests(getNodes: () => NodeAddress[], candidate: () => NodeAddress): void {
  for (const id of PROTO_ID_PATHS) {
    test(`shard id ${JSON.stringify(id)}: key-count, members and add-member get 404`, async () => {
      const nodes = getNodes();
      const problems: string[] = [];
      for (const addr of nodes) {
        for (const [method, path, body] of [
          ['GET', `/shard/key-count/${id}`, undefined],
          ['GET', `/shard/members/${id}`, undefined],
          ['PUT', `/shard/add-member/${id}`, { 'socket-address': candidate() }],
        ] as const) {
          const r = await call(method, addr, path, body);
          const isError = r.body !== null && typeof r.body === 'object' && !Array.isArray(r.body) && typeof r.body.error === 'string';
          if (r.status !== 404 || !isError) problems.push(`${method} ${path} at ${addr}: ${r.status} ${r.text.slice(0, 200)}`);
        }
      }
      assert.ok(problems.length === 0, `a prototype name is no shard: expected 404 with a JSON {"error": string} body, got:\n  ${problems.join('\n  ')}`);
    });
  }
}

/** Keys named like prototype properties are plain keys: PUT 201, then GET 200 with the value, on every node. */
function protoKeyTests(getNodes: () => NodeAddress[], prefix: string): void {
  test('keys named __proto__, constructor, ... are plain keys: PUT 201, GET 200 with the value everywhere', async () => {
    const nodes = getNodes();
    const writer = new Client();
    const names = [...PROTO_IDS, 'isPrototypeOf', '__defineGetter__', 'prototype'];
    for (const [i, name] of names.entries()) {
      const key = `${prefix}${name}`;
      const value = { name, i, nested: { [name]: name } };
      const r = await writer.put(nodes[i % nodes.length] as NodeAddress, key, value);
      assert.equal(r.status, 201, `PUT ${kvsPath(key)} must create the key (201); got ${r.status} ${r.text.slice(0, 300)}`);
    }
    for (const [i, name] of names.entries()) {
      const key = `${prefix}${name}`;
      for (const addr of nodes) {
        const r = await readReplicated(addr, key, writer.meta, `prototype-named key ${key}`);
        assert.equal(r.status, 200, `GET ${kvsPath(key)} at ${addr}: ${r.status} ${r.text.slice(0, 300)}`);
        assert.deepEqual(r.body.value, { name, i, nested: { [name]: name } }, `GET ${kvsPath(key)} at ${addr} must return the value written`);
      }
    }
  });
}

describe('prototype names on a replicated-only store (3 nodes)', () => {
  const store = useCluster({ ports: ports.slice(20, 10), nodeCount: 3, logLines: 20 });
  let nodes: NodeAddress[] = [];
  let layoutBefore: Awaited<ReturnType<typeof readShardLayout>>;

  before(async () => {
    nodes = store.nodes;
    layoutBefore = await readShardLayout(nodes[0] as NodeAddress);
  });

  protoIdTests(
    () => nodes,
    () => nodes[2] as NodeAddress,
  );
  protoKeyTests(() => nodes, '');

  test('afterwards the shard layout is unchanged on every node and no node crashed', async () => {
    store.cluster.assertNoCrash();
    for (const addr of nodes) {
      assert.deepEqual(await readShardLayout(addr), layoutBefore, `shard layout at ${addr} must be unchanged`);
    }
  });
});

describe('prototype names on a sharded store (4 nodes, 2 shards, and a node in no shard)', () => {
  const store = useCluster({ ports: ports.slice(30, 10), nodeCount: 4, shardCount: 2, logLines: 20 });
  let nodes: NodeAddress[] = [];
  let joiner: NodeAddress;
  let layoutBefore: Awaited<ReturnType<typeof readShardLayout>>;

  before(async () => {
    const cluster = store.cluster;
    joiner = await cluster.startJoiner(store.ports.port(4));
    await cluster.waitReady([joiner]);
    nodes = cluster.addresses();
    await cluster.waitForViews(nodes, { timeoutMs: 10_000 });
    assert.equal(await getNodeShardId(joiner), null, 'the joiner must be in no shard before the tests');
    layoutBefore = await readShardLayout(nodes[0] as NodeAddress);
  });

  protoIdTests(
    () => nodes,
    () => joiner,
  );
  protoKeyTests(() => nodes.filter((a) => a !== joiner), 'sharded-');

  test('afterwards the shard layout is unchanged, the joiner is in no shard, and no node crashed', async () => {
    store.cluster.assertNoCrash();
    for (const addr of nodes) {
      assert.deepEqual(await readShardLayout(addr), layoutBefore, `shard layout at ${addr} must be unchanged`);
    }
    assert.equal(await getNodeShardId(joiner), null, `${joiner} must still be in no shard`);
    assert.deepEqual(sortedAddresses(await getView(nodes[0] as NodeAddress)), nodes, 'the view must be unchanged');
  });
});

// ---- numbers and text ---------------------------------------------------------------------------

describe('numbers beyond a double and invalid UTF-8 are refused; valid non-ASCII round-trips', () => {
  const store = useCluster({ ports: ports.slice(40, 10), nodeCount: 3, logLines: 20 });
  let nodes: NodeAddress[] = [];

  before(() => {
    nodes = store.nodes;
  });

  test('1e400 and -1e400 (as the value, or inside it) get 400 and create nothing', async (t) => {
    const bodies: [string, string][] = [
      ['1e400', '{"value": 1e400, "causal-metadata": null}'],
      ['-1e400', '{"value": -1e400, "causal-metadata": null}'],
      ['1e400 inside an array inside an object', '{"value": {"a": [1, 2, 1e400]}, "causal-metadata": null}'],
    ];
    for (const [i, [name, body]] of bodies.entries()) {
      await t.test(name, async () => {
        const key = `not-finite-${i}`;
        const addr = nodes[i % nodes.length] as NodeAddress;
        const r = await putRaw(addr, key, body);
        assertErrorReply(r, 400, `PUT ${body}`);
        await assertNotCreated(addr, key, `PUT ${body}`);
      });
    }
  });

  test('invalid UTF-8 in a body gets 400 and creates nothing', async (t) => {
    const bodies: [string, Buffer][] = [
      ['bytes 0xff 0xfe inside the value string', Buffer.concat([Buffer.from('{"value": "a'), Buffer.from([0xff, 0xfe]), Buffer.from('b", "causal-metadata": null}')])],
      ['a lone 0xc3 at the end of the value string', Buffer.concat([Buffer.from('{"value": "caf'), Buffer.from([0xc3]), Buffer.from('", "causal-metadata": null}')])],
      ['a lone 0xc3 in a field name', Buffer.concat([Buffer.from('{"value": "ok", "x'), Buffer.from([0xc3]), Buffer.from('": 1, "causal-metadata": null}')])],
    ];
    for (const [i, [name, body]] of bodies.entries()) {
      await t.test(name, async () => {
        const key = `bad-utf8-${i}`;
        const addr = nodes[i % nodes.length] as NodeAddress;
        const r = await putRaw(addr, key, body);
        assertErrorReply(r, 400, `PUT with ${name} (${body.toString('hex')})`);
        await assertNotCreated(addr, key, `PUT with ${name}`);
      });
    }
  });

  test('a valid non-ASCII value ("héllo ✓ 𝄞") round-trips exactly on every replica', async () => {
    const value = 'héllo ✓ 𝄞';
    const writer = new Client();
    for (const key of ['unicode', 'ключ ✓ 𝄞']) {
      const r = await writer.put(nodes[0] as NodeAddress, key, value);
      assert.equal(r.status, 201, `PUT ${kvsPath(key)} of ${JSON.stringify(value)}: ${r.status} ${r.text.slice(0, 300)}`);
    }
    for (const key of ['unicode', 'ключ ✓ 𝄞']) {
      for (const addr of nodes) {
        const r = await readReplicated(addr, key, writer.meta, 'non-ASCII value');
        assert.equal(r.status, 200, `GET ${kvsPath(key)} at ${addr}: ${r.status} ${r.text.slice(0, 300)}`);
        assert.equal(r.body.value, value, `GET ${kvsPath(key)} at ${addr} must return exactly ${JSON.stringify(value)} (code points ${[...value].map((c) => c.codePointAt(0)!.toString(16)).join(' ')})`);
      }
    }
    store.cluster.assertNoCrash();
  });
});

// ---- slow headers (last: it waits for the headers timeout, started in the first `before`) ----------

describe('slow headers', () => {
  test(`headers not finished within the headers timeout (${HEADERS_TIMEOUT_MS / 1000} s) get a JSON 408 with connection: close`, { timeout: SLOW_HEADERS_DEADLINE_MS + 10_000 }, async () => {
    assert.ok(slowHeaders, 'the slow-headers connection was not opened');
    const result = await slowHeaders;
    const problems = judgeRaw([408], result);
    assert.ok(
      problems.length === 0,
      `a request whose headers never finish must get 408 with a JSON {"error": string} body and connection: close within ${SLOW_HEADERS_DEADLINE_MS / 1000} s:\n  ${problems.join('\n  ')}`,
    );
    await assertAnswers(httpNodes[1] as NodeAddress, 'after the slow-headers connection');
    httpStore.cluster.assertNoCrash();
  });
});
