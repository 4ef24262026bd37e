// GET /openapi.json describes the public API exactly: the document is valid OpenAPI 3.1; its
// operations are the entries of the route table the dispatcher really uses (no route missing, none
// invented); on a real sharded store every documented operation is routed (never the router's
// "No route" 404 or a 405), and real answers validate against the documented schema of their
// status; paths and methods the document does not have get what the table says (404 or 405).
// GET /status/ready answers 200 on a ready node and 503 on one still joining.

import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'undici';
import { address, pollUntil, NotYet, StoreNode } from '../helpers/cluster.ts';
import { keywordProblems, resolvePointer, validate } from '../helpers/json-schema.ts';
import { portsFor } from '../helpers/ports.ts';
import { useCluster } from '../helpers/store.ts';
import type { NodeAddress } from '../helpers/http.ts';
import { OPENAPI, type Operation, type Response } from '../../src/node/openapi.ts';
import { PUBLIC_ROUTES } from '../../src/node/public-routes.ts';
import { templateParameters } from '../../src/node/route-table.ts';

const ports = portsFor(import.meta.url);
const NODE_COUNT = 4;
const TOKEN = 'openapi-test-admin-token-0123456789';
const ADMIN = { authorization: `Bearer ${TOKEN}` };
/** Ports 0-3: the store; 8: a node that waits for a peer that never comes; 9: that peer (nothing listens there). */
const LONELY_PORT = ports.port(8);
const NEVER_A_NODE = ports.address(9);

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;
const doc: unknown = OPENAPI;

interface DocOperation {
  method: string;
  path: string;
  operation: Operation;
  pathParameters: { name: string; in: string; required?: boolean }[];
}

/** Every operation of a document, with the path parameters its path item and itself declare. */
function operationsOf(document: typeof OPENAPI): DocOperation[] {
  const out: DocOperation[] = [];
  for (const [path, item] of Object.entries(document.paths)) {
    const itemRecord = item as Record<string, unknown>;
    for (const method of METHODS) {
      const operation = itemRecord[method] as Operation | undefined;
      if (operation === undefined) continue;
      const declared = [...((itemRecord.parameters as DocOperation['pathParameters'] | undefined) ?? []), ...(((operation as unknown as Record<string, unknown>).parameters as DocOperation['pathParameters'] | undefined) ?? [])];
      out.push({ method: method.toUpperCase(), path, operation, pathParameters: declared.filter((p) => p.in === 'path') });
    }
  }
  return out;
}

/** Every `$ref` in a document, with where it is. */
function refsIn(value: unknown, where = '#'): { ref: string; where: string }[] {
  if (Array.isArray(value)) return value.flatMap((item, i) => refsIn(item, `${where}/${i}`));
  if (typeof value !== 'object' || value === null) return [];
  const out: { ref: string; where: string }[] = [];
  for (const [key, sub] of Object.entries(value)) {
    if (key === '$ref' && typeof sub === 'string') out.push({ ref: sub, where });
    else out.push(...refsIn(sub, `${where}/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`));
  }
  return out;
}

/** The documented response for a status, `$ref`s followed. */
function documented(operation: Operation, status: number): Response | undefined {
  const found = operation.responses[String(status)];
  if (found === undefined) return undefined;
  return ('$ref' in found ? resolvePointer(doc, found.$ref) : found) as Response | undefined;
}

// ---------------------------------------------------------------- the document alone

describe('the OpenAPI document', () => {
  const operations = operationsOf(OPENAPI);

  test('is structurally valid OpenAPI 3.1: version, info, responses, unique operationIds, $refs that resolve, declared path parameters', () => {
    assert.match(OPENAPI.openapi, /^3\.1\.\d+$/);
    assert.ok(typeof OPENAPI.info.title === 'string' && OPENAPI.info.title.length > 0, 'info.title');
    assert.ok(typeof OPENAPI.info.version === 'string' && OPENAPI.info.version.length > 0, 'info.version');
    assert.ok(operations.length > 0);
    const ids = new Set<string>();
    for (const { method, path, operation, pathParameters } of operations) {
      const what = `${method} ${path}`;
      assert.ok(path.startsWith('/'), `${what}: a path starts with /`);
      assert.ok(typeof operation.operationId === 'string' && operation.operationId.length > 0, `${what}: operationId`);
      assert.ok(!ids.has(operation.operationId), `${what}: operationId ${operation.operationId} is not unique`);
      ids.add(operation.operationId);
      const statuses = Object.keys(operation.responses);
      assert.ok(statuses.length > 0, `${what}: no responses`);
      for (const status of statuses) {
        assert.match(status, /^([1-5][0-9]{2}|default)$/, `${what}: response key ${status}`);
        const r = documented(operation, Number(status));
        assert.ok(r !== undefined && typeof r.description === 'string', `${what} ${status}: a response needs a description`);
      }
      // Path parameters: each {name} of the template declared (in: path, required), nothing else declared.
      const inTemplate = templateParameters(path).sort();
      assert.deepEqual(pathParameters.map((p) => p.name).sort(), inTemplate, `${what}: path parameters declared`);
      for (const p of pathParameters) assert.equal(p.required, true, `${what}: path parameter ${p.name} must be required`);
      for (const requirement of operation.security ?? []) {
        for (const name of Object.keys(requirement)) assert.ok(name in OPENAPI.components.securitySchemes, `${what}: security scheme ${name}`);
      }
    }
    const refs = refsIn(doc);
    assert.ok(refs.length > 10, 'component schemas are shared through $ref');
    const dangling = refs.filter(({ ref }) => resolvePointer(doc, ref) === undefined);
    assert.deepEqual(dangling, [], 'every $ref resolves');
    // Every component schema is used somewhere.
    const used = new Set(refs.map(({ ref }) => ref));
    const unused = Object.keys(OPENAPI.components.schemas).filter((name) => !used.has(`#/components/schemas/${name}`));
    assert.deepEqual(unused, [], 'component schemas nobody refers to');
  });

  test('uses only the schema keywords the test checker knows (so no schema part goes unchecked)', () => {
    const problems: string[] = [];
    for (const [name, schema] of Object.entries(OPENAPI.components.schemas)) problems.push(...keywordProblems(schema, `#/components/schemas/${name}`));
    for (const { method, path, operation, pathParameters } of operations) {
      const responses = Object.entries(operation.responses).map(([status]) => [status, documented(operation, Number(status))] as const);
      for (const [status, r] of responses) {
        for (const [type, media] of Object.entries(r?.content ?? {})) problems.push(...keywordProblems(media.schema, `${method} ${path} ${status} ${type}`));
        for (const [header, h] of Object.entries(r?.headers ?? {})) problems.push(...keywordProblems(h.schema, `${method} ${path} ${status} header ${header}`));
      }
      for (const [type, media] of Object.entries(operation.requestBody?.content ?? {})) problems.push(...keywordProblems(media.schema, `${method} ${path} request ${type}`));
      for (const p of pathParameters) problems.push(...keywordProblems((p as unknown as { schema: unknown }).schema, `${method} ${path} parameter ${p.name}`));
    }
    assert.deepEqual(problems, []);
  });

  test('describes exactly the routes the dispatcher serves: none missing, none invented, nothing under /internal/', () => {
    const inDocument = operations.map(({ method, path }) => `${method} ${path}`).sort();
    const inTable = PUBLIC_ROUTES.routes.map(({ method, path }) => `${method} ${path}`).sort();
    assert.deepEqual(inDocument.filter((r) => !inTable.includes(r)), [], 'documented, but the server has no such route');
    assert.deepEqual(inTable.filter((r) => !inDocument.includes(r)), [], 'served, but not documented');
    assert.deepEqual(inDocument, inTable);
    assert.ok(!Object.keys(OPENAPI.paths).some((path) => path.startsWith('/internal/')), 'routes between nodes are not public');
  });

  test('the topology changes (PUT/DELETE /view, add-member, reshard) and only they ask for the bearer admin token, and document its 401', () => {
    const scheme = OPENAPI.components.securitySchemes.adminToken;
    assert.equal(scheme?.type, 'http');
    assert.equal(scheme?.scheme, 'bearer');
    const guarded = operations.filter(({ operation }) => operation.security?.some((r) => 'adminToken' in r)).map(({ method, path }) => `${method} ${path}`);
    assert.deepEqual(guarded.sort(), ['DELETE /view', 'PUT /shard/add-member/{id}', 'PUT /shard/reshard', 'PUT /view']);
    for (const { method, path, operation } of operations) {
      if (guarded.includes(`${method} ${path}`)) assert.ok(documented(operation, 401) !== undefined, `${method} ${path}: 401`);
    }
  });
});

describe('the JSON Schema checker', () => {
  const schema = (name: string) => ({ $ref: `#/components/schemas/${name}` });
  const shardIdAnswer = operationsOf(OPENAPI).find((o) => o.operation.operationId === 'getNodeShardId')!.operation;
  const nodeShardId = documented(shardIdAnswer, 200)!.content!['application/json']!.schema;
  const ready503 = documented(operationsOf(OPENAPI).find((o) => o.operation.operationId === 'getReady')!.operation, 503)!.content!['application/json']!.schema;

  test('accepts real shapes and rejects wrong ones: missing, extra, mistyped, wrong constant', () => {
    const found = { result: 'found', value: { any: ['json', 1, null] }, 'causal-metadata': { opaque: true }, 'shard-id': 's0' };
    assert.deepEqual(validate(schema('KvFound'), found, doc), []);
    assert.match(validate(schema('KvFound'), { ...found, 'shard-id': 0 }, doc).join(), /\$\.shard-id: expected string/);
    const { 'shard-id': _, ...withoutShard } = found;
    assert.match(validate(schema('KvFound'), withoutShard, doc).join(), /required property "shard-id"/);
    assert.match(validate(schema('KvCreated'), { result: 'replaced', 'causal-metadata': {}, 'shard-id': 's1' }, doc).join(), /expected "created"/);
    assert.match(validate(schema('Error'), { error: 'x', extra: 1 }, doc).join(), /"extra" is not allowed/);
    assert.match(validate(schema('Error'), { error: 5 }, doc).join(), /expected string/);
    assert.match(validate(schema('ReshardPlan'), { epoch: 1.5 }, doc).join(), /\$\.epoch: expected integer/);
    assert.match(validate(schema('StoreStatus'), { mode: 'both' }, doc).join(), /"both" is not one of/);
    assert.match(validate(schema('NodeRow'), { keys: -1 }, doc).join(), /below the minimum/);
    assert.match(validate(schema('View'), { view: ['127.0.0.1:1', 2] }, doc).join(), /\$\.view\[1\]: expected string/);
  });

  test('nullable through anyOf with null, and oneOf means exactly one', () => {
    assert.deepEqual(validate(nodeShardId, { 'node-shard-id': null }, doc), []);
    assert.deepEqual(validate(nodeShardId, { 'node-shard-id': 's3' }, doc), []);
    assert.notDeepEqual(validate(nodeShardId, { 'node-shard-id': 3 }, doc), []);
    assert.deepEqual(validate(ready503, { ready: false, error: 'joining' }, doc), []);
    assert.deepEqual(validate(ready503, { error: 'The node is overloaded; try again later' }, doc), []);
    assert.match(validate(ready503, { ready: true, error: 'x' }, doc).join(), /matches 0 of oneOf/);
    assert.match(validate({ oneOf: [{ type: 'string' }, { type: ['string', 'null'] }] }, 'both', doc).join(), /matches 2 of oneOf/);
  });

  test('refuses a $ref that does not resolve and a keyword it does not check', () => {
    assert.throws(() => validate({ $ref: '#/components/schemas/Nope' }, {}, doc), /does not resolve/);
    assert.throws(() => validate({ type: 'string', pattern: '^a' }, 'a', doc), /pattern is not checked/);
    assert.deepEqual(keywordProblems({ properties: { a: { allOf: [] } } }), ['#/properties/a: keyword allOf is not checked']);
  });
});

// ---------------------------------------------------------------- a real store

const dispatcher = new Agent({ keepAliveTimeout: 1_000, keepAliveMaxTimeout: 2_000, connect: { timeout: 5_000 } });

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: unknown;
}

/** One request (HEAD and OPTIONS too), with its status, headers and body. */
async function send(method: string, addr: NodeAddress, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await request(`http://${addr}${path}`, {
    method: method as 'GET',
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
    dispatcher,
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  const text = await res.body.text();
  let json: unknown;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.statusCode, headers: res.headers, text, json };
}

/** The router's own "no such route" answers: what no documented operation may get. */
function assertRouted(a: Answer, what: string): void {
  assert.notEqual(a.status, 405, `${what}: 405 ${a.text}`);
  const noRoute = a.status === 404 && typeof (a.json as { error?: unknown } | undefined)?.error === 'string' && (a.json as { error: string }).error.startsWith('No route for');
  assert.ok(!noRoute, `${what}: the router has no such route: ${a.text}`);
}

/** The answer's status is documented for the operation, and its headers and body match what is documented. */
function assertDocumented(operation: Operation, method: string, a: Answer, what: string): void {
  const r = documented(operation, a.status);
  assert.ok(r !== undefined, `${what}: status ${a.status} is not documented (${Object.keys(operation.responses).join(', ')}): ${a.text}`);
  for (const [name, header] of Object.entries(r.headers ?? {})) {
    const value = a.headers[name.toLowerCase()];
    if (value !== undefined) assert.deepEqual(validate(header.schema, value, doc), [], `${what}: header ${name}`);
  }
  if (r.content === undefined || method === 'HEAD') {
    assert.equal(a.text, '', `${what}: documented without a body, but got one`);
    return;
  }
  const type = String(a.headers['content-type'] ?? '');
  const media = Object.keys(r.content).find((documentedType) => type.split(';')[0]!.trim() === documentedType);
  assert.ok(media !== undefined, `${what}: content-type ${type} is not one of ${Object.keys(r.content).join(', ')}`);
  const value = media === 'application/json' ? a.json : a.text;
  assert.ok(value !== undefined, `${what}: the body is not JSON: ${a.text.slice(0, 200)}`);
  assert.deepEqual(validate(r.content[media]!.schema, value, doc), [], `${what}: the body does not match the documented schema: ${a.text.slice(0, 500)}`);
}

describe('on a real sharded store', () => {
  const store = useCluster({ ports, nodeCount: NODE_COUNT, shardCount: 2, extraEnv: { ADMIN_TOKEN: TOKEN } });
  const operations = operationsOf(OPENAPI);
  const byId = new Map(operations.map((o) => [o.operation.operationId, o]));

  /** Sends a sample request for an operation to `addr`, checks it was routed and documented, and returns the answer. */
  async function exercise(operationId: string, addr: NodeAddress, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
    const o = byId.get(operationId);
    assert.ok(o !== undefined, `no operation ${operationId}`);
    const what = `${operationId}: ${o.method} ${path}`;
    const a = await send(o.method, addr, path, body, headers);
    assertRouted(a, what);
    assertDocumented(o.operation, o.method, a, what);
    return a;
  }

  test('the document a node serves is the one in the code', async () => {
    const [a, b] = store.nodes;
    for (const node of [a!, b!]) {
      const served = await exercise('getOpenApi', node, '/openapi.json');
      assert.equal(served.status, 200);
      assert.deepEqual(served.json, JSON.parse(JSON.stringify(OPENAPI)));
    }
  });

  test('every documented operation is routed, and real answers match the documented schema of their status', async () => {
    const nodes = store.nodes;
    const node = nodes[0]!;
    const layout = await send('GET', node, '/shard/ids');
    const shardIds = (layout.json as { 'shard-ids': string[] })['shard-ids'];
    assert.deepEqual(shardIds, ['s0', 's1']);
    const otherNode = nodes[1]!;
    const otherShard = ((await send('GET', otherNode, '/shard/node-shard-id')).json as { 'node-shard-id': string })['node-shard-id'];
    const exercised = new Set<string>();
    const run = async (operationId: string, expected: number, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> => {
      exercised.add(operationId);
      // A node that lacks what the session depends on says 503 for a moment: retried, as a client would.
      const { value } = await pollUntil(
        `${operationId} ${path}`,
        async () => {
          const a = await exercise(operationId, node, path, body, headers);
          if (a.status === 503 && expected !== 503) throw new NotYet(a.text);
          assert.equal(a.status, expected, `${operationId} ${path}: ${a.text}`);
          return a;
        },
        { timeoutMs: 10_000 },
      );
      return value;
    };

    // Key-value: created, replaced, found, deleted, then missing (404) and a PUT without a value (400).
    let meta: unknown = null;
    const key = 'openapi/sample key';
    const path = `/kvs/${encodeURIComponent(key)}`;
    const metaOf = (a: Answer) => (a.json as { 'causal-metadata': unknown })['causal-metadata'];
    meta = metaOf(await run('putKey', 201, path, { value: { nested: [1, 'two', null] }, 'causal-metadata': meta }));
    meta = metaOf(await run('putKey', 200, path, { value: 'again', 'causal-metadata': meta }));
    const found = await run('getKey', 200, path, { 'causal-metadata': meta });
    assert.equal((found.json as { value: unknown }).value, 'again');
    meta = metaOf(found);
    meta = metaOf(await run('deleteKey', 200, path, { 'causal-metadata': meta }));
    assert.deepEqual((await run('getKey', 404, path, { 'causal-metadata': meta })).json, { error: 'Key does not exist' });
    await run('deleteKey', 404, path, { 'causal-metadata': meta });
    await run('putKey', 400, path, { 'causal-metadata': meta });

    // The view, and topology changes that change nothing: without the token (401), then with it.
    assert.deepEqual((await run('getView', 200, '/view')).json, { view: nodes });
    await run('addToView', 401, '/view', { 'socket-address': otherNode });
    await run('addToView', 200, '/view', { 'socket-address': otherNode }, ADMIN);
    await run('removeFromView', 401, '/view', { 'socket-address': NEVER_A_NODE });
    await run('removeFromView', 404, '/view', { 'socket-address': NEVER_A_NODE }, ADMIN);

    // Shards.
    await run('getShardIds', 200, '/shard/ids');
    await run('getNodeShardId', 200, '/shard/node-shard-id');
    for (const id of shardIds) {
      await run('getShardMembers', 200, `/shard/members/${id}`);
      await run('getShardKeyCount', 200, `/shard/key-count/${id}`);
    }
    await run('getShardMembers', 404, '/shard/members/s9');
    await run('getShardKeyCount', 404, '/shard/key-count/s9');
    await run('addShardMember', 401, `/shard/add-member/${otherShard}`, { 'socket-address': otherNode });
    await run('addShardMember', 200, `/shard/add-member/${otherShard}`, { 'socket-address': otherNode }, ADMIN);
    await run('addShardMember', 404, '/shard/add-member/s9', { 'socket-address': otherNode }, ADMIN);
    await run('reshard', 401, '/shard/reshard', { 'shard-count': 3 });
    await run('reshard', 400, '/shard/reshard', { 'shard-count': 3 }, ADMIN);
    const plan = await run('getReshardPlan', 200, '/shard/reshard-plan/2');
    assert.equal((plan.json as { noop: unknown }).noop, true, 'two shards already: the plan moves nothing');
    await run('getReshardPlan', 400, '/shard/reshard-plan/3');

    // Status, metrics, dashboard, this document.
    await run('getStatus', 200, '/status');
    assert.deepEqual((await run('getReady', 200, '/status/ready')).json, { ready: true });
    await run('getStoreStatus', 200, '/status/store');
    assert.match((await run('getMetrics', 200, '/metrics')).text, /^# HELP /m);
    assert.equal((await run('getDashboardRedirect', 301, '/ui')).headers.location, '/ui/');
    assert.equal((await run('headDashboardRedirect', 301, '/ui')).headers.location, '/ui/');
    assert.match((await run('getDashboard', 200, '/ui/')).text, /<html/i);
    await run('headDashboard', 200, '/ui/');
    await run('getOpenApi', 200, '/openapi.json');

    const notExercised = operations.map((o) => o.operation.operationId).filter((id) => !exercised.has(id));
    assert.deepEqual(notExercised, [], 'every documented operation is called');
    // Nothing above changed the topology.
    assert.deepEqual((await send('GET', node, '/view')).json, { view: nodes });
  });

  test('GET /status/ready: 200 {"ready":true} on every ready node, as its /status says', async () => {
    for (const node of store.nodes) {
      const status = await send('GET', node, '/status');
      assert.equal((status.json as { ready: unknown }).ready, true, `${node}: /status`);
      const ready = await send('GET', node, '/status/ready');
      assert.equal(ready.status, 200, `${node}: ${ready.text}`);
      assert.deepEqual(ready.json, { ready: true });
    }
  });

  test('a path the document does not have gets 404 "No route"; a method it does not have on a documented path gets what the table says (404 or 405)', async () => {
    const node = store.nodes[0]!;
    for (const path of ['/nope', '/status/nope', '/kvs', '/shard/nope/s0', '/openapi', '/uix', '/internal']) {
      const a = await send('GET', node, path);
      assert.equal(a.status, 404, `GET ${path}: ${a.text}`);
      assert.deepEqual(a.json, { error: `No route for GET ${path}` });
    }
    // Spelled out for a few, so that the comparison with the table below is not only the table against itself.
    const expected: [string, string, number, string][] = [
      ['POST', '/kvs/k', 405, 'Method POST is not allowed on /kvs'],
      ['PATCH', '/view', 405, 'Method PATCH is not allowed on /view'],
      ['POST', '/ui/', 405, 'Method POST is not allowed on /ui/'],
      ['DELETE', '/status', 404, 'No route for DELETE /status'],
      ['PUT', '/status/ready', 404, 'No route for PUT /status/ready'],
      ['POST', '/openapi.json', 404, 'No route for POST /openapi.json'],
      ['DELETE', '/shard/ids', 404, 'No route for DELETE /shard/ids'],
      ['GET', '/shard/reshard', 404, 'No route for GET /shard/reshard'],
    ];
    for (const [method, path, status, error] of expected) {
      const a = await send(method, node, path);
      assert.equal(a.status, status, `${method} ${path}: ${a.text}`);
      assert.deepEqual(a.json, { error });
    }
    // Every documented path, with each method the document does not give it.
    const concrete = (template: string) => template.replace('{key}', 'k').replace('{id}', 's0').replace('{count}', '2');
    let checked = 0;
    for (const template of Object.keys(OPENAPI.paths)) {
      const path = concrete(template);
      const documentedMethods = new Set(PUBLIC_ROUTES.methodsOn(path));
      assert.ok(documentedMethods.size > 0, `${path}: the table has it`);
      for (const method of ['GET', 'PUT', 'DELETE', 'POST', 'PATCH', 'OPTIONS', 'HEAD']) {
        if (documentedMethods.has(method as 'GET')) continue;
        const a = await send(method, node, path);
        const table = PUBLIC_ROUTES.unrouted(method, path);
        assert.ok(a.status === 404 || a.status === 405, `${method} ${path}: ${a.status} ${a.text}`);
        assert.equal(a.status, table.status, `${method} ${path}: the table says ${table.status}, the node answered ${a.status} ${a.text}`);
        if (method !== 'HEAD') assert.deepEqual(a.json, table.body, `${method} ${path}`);
        checked++;
      }
    }
    assert.ok(checked > 50, `${checked} undocumented methods checked`);
  });
});

// ---------------------------------------------------------------- a node that is not ready

describe('GET /status/ready on a node that is not ready', () => {
  // How 503 is reached: a node whose VIEW names a peer that never answers looks for that peer's
  // shard map for STARTUP_WAIT_MS before it copies its shard and serves; it listens (and answers
  // /status with ready:false) the whole time. With the wait at two minutes, the node is reliably
  // not ready while the test asks.
  const self = address(LONELY_PORT);
  const lonely = new StoreNode(self, {
    SOCKET_ADDRESS: self,
    VIEW: `${self},${NEVER_A_NODE}`,
    STARTUP_WAIT_MS: '120000',
    LISTEN_HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
  });
  after(async () => {
    await lonely.kill();
  });

  test('answers 503 {"ready":false,...} while /status says ready:false, and the answer is documented', async () => {
    lonely.start();
    const { value: status } = await pollUntil(
      `GET /status at ${self}`,
      async () => {
        if (!lonely.alive) throw new assert.AssertionError({ message: `the node exited: ${lonely.crashed}\n${lonely.tail(40)}` });
        try {
          return await send('GET', self, '/status');
        } catch (error) {
          throw new NotYet(String(error));
        }
      },
      { timeoutMs: 30_000 },
    );
    assert.equal(status.status, 200, 'liveness: /status answers 200 whether or not the node is ready');
    assert.equal((status.json as { ready: unknown }).ready, false, `the node waits for ${NEVER_A_NODE}: ${status.text.slice(0, 300)}`);
    const ready = await send('GET', self, '/status/ready');
    assert.equal(ready.status, 503, ready.text);
    assert.equal((ready.json as { ready: unknown }).ready, false);
    assertDocumented(operationsOf(OPENAPI).find((o) => o.operation.operationId === 'getReady')!.operation, 'GET', ready, 'GET /status/ready (not ready)');
  });
});
