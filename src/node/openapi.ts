// GET /openapi.json: an OpenAPI 3.1 description of the public API, one operation per entry of the
// route table (PUBLIC_ROUTES in public-routes.ts; test/integration/openapi.test.ts checks that the
// two agree both ways, and that real answers match these schemas). Routes under /internal/ are
// between nodes and are not described. Schemas use only: type, properties, required,
// additionalProperties, items, enum, const, oneOf, anyOf, $ref, minimum (and descriptions).

import { KEY_LENGTH_MAX, MESSAGES } from '../core/api-messages.ts';
import { METRICS_CONTENT_TYPE } from './metrics.ts';

type SchemaType = 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean' | 'null';

export interface Schema {
  type?: SchemaType | SchemaType[];
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean | Schema;
  items?: Schema;
  enum?: (string | number | boolean | null)[];
  const?: string | number | boolean | null;
  oneOf?: Schema[];
  anyOf?: Schema[];
  $ref?: string;
  minimum?: number;
  description?: string;
}

interface Ref {
  $ref: string;
}

interface MediaType {
  schema: Schema;
}

interface Header {
  description: string;
  schema: Schema;
}

export interface Response {
  description: string;
  headers?: Record<string, Header>;
  content?: Record<string, MediaType>;
}

interface Parameter {
  name: string;
  in: 'path';
  required: true;
  description: string;
  schema: Schema;
}

export interface Operation {
  operationId: string;
  summary: string;
  description?: string;
  tags: string[];
  requestBody?: { required: boolean; description?: string; content: Record<string, MediaType> };
  responses: Record<string, Response | Ref>;
  security?: Record<string, string[]>[];
}

export type OperationMethod = 'get' | 'put' | 'delete' | 'head';

export type PathItem = { parameters?: Parameter[] } & Partial<Record<OperationMethod, Operation>>;

export interface OpenApiDocument {
  openapi: '3.1.0';
  info: { title: string; version: string; description: string };
  tags: { name: string; description: string }[];
  paths: Record<string, PathItem>;
  components: {
    schemas: Record<string, Schema>;
    responses: Record<string, Response>;
    securitySchemes: Record<string, { type: 'http'; scheme: 'bearer'; description: string }>;
  };
}

// ---------------------------------------------------------------- helpers

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const response = (name: string): Ref => ({ $ref: `#/components/responses/${name}` });
const integer = (description?: string): Schema => ({ type: 'integer', minimum: 0, ...(description === undefined ? {} : { description }) });
const orNull = (schema: Schema): Schema => ({ anyOf: [schema, { type: 'null' }] });
const arrayOf = (items: Schema, description?: string): Schema => ({ type: 'array', items, ...(description === undefined ? {} : { description }) });

/** An object whose properties are all required; `open`: other properties may appear (a diagnostic document that grows). */
function object(properties: Record<string, Schema>, options: { open?: boolean; optional?: string[]; description?: string } = {}): Schema {
  const optional = new Set(options.optional ?? []);
  return {
    type: 'object',
    ...(options.description === undefined ? {} : { description: options.description }),
    properties,
    required: Object.keys(properties).filter((name) => !optional.has(name)),
    additionalProperties: options.open === true,
  };
}

/** `{"result": text}`. */
const result = (text: string): Schema => object({ result: { const: text } });

/** A JSON answer. */
const json = (description: string, schema: Schema): Response => ({ description, content: { 'application/json': { schema } } });

/** A JSON error answer (`{"error": "..."}`), described for its operation. */
const error = (description: string): Response => json(description, ref('Error'));

/** A JSON request body. */
const body = (schema: Schema, required: boolean, description?: string): Operation['requestBody'] => ({
  required,
  ...(description === undefined ? {} : { description }),
  content: { 'application/json': { schema } },
});

/** What the HTTP layer may answer to any request, before a route sees it. */
const TRANSPORT: Record<string, Ref> = { '400': response('BadRequest'), '413': response('BodyTooLarge'), '503': response('Overloaded') };

/** The topology changes: the admin token when the store has ADMIN_TOKEN, nothing when it does not. */
const ADMIN: Pick<Operation, 'security'> = { security: [{ adminToken: [] }, {}] };
const UNAUTHORIZED: Record<string, Ref> = { '401': response('Unauthorized') };

const pathParameter = (name: string, description: string, schema: Schema = { type: 'string' }): Parameter => ({ name, in: 'path', required: true, description, schema });
const SHARD_ID_PARAMETER = pathParameter('id', 'A shard id (`s0`, `s1`, ...), percent-encoded. An id the store has no shard of gets 404.');

// ---------------------------------------------------------------- schemas

const SCHEMAS: Record<string, Schema> = {
  Error: object({ error: { type: 'string', description: 'What went wrong, for a person to read.' } }, { description: 'Every error answer.' }),
  CausalMetadata: {
    description:
      'Opaque: what the store needs to keep a client causally consistent. Send back whatever the last answer from any node held (null on a first request); never look inside it. Valid across shards and reshards.',
  },
  Value: { description: 'Any JSON value (string, number, boolean, null, array, object), nested at most 64 levels, stored and returned exactly.' },
  SocketAddress: { type: 'string', description: "A node's host:port (an IPv4 address or a host name), as in SOCKET_ADDRESS and VIEW." },
  ShardId: { type: 'string', description: 'A shard id: `s0`, `s1`, ...' },
  Clock: { type: 'object', additionalProperties: integer(), description: 'Writes applied, by the node that coordinated them.' },
  KvPutRequest: {
    type: 'object',
    properties: { value: ref('Value'), 'causal-metadata': ref('CausalMetadata') },
    required: ['value'],
  },
  KvRequest: { type: 'object', properties: { 'causal-metadata': ref('CausalMetadata') }, description: 'A missing body is `{}`; a missing causal-metadata is null.' },
  KvFound: object({ result: { const: MESSAGES.found }, value: ref('Value'), 'causal-metadata': ref('CausalMetadata'), 'shard-id': ref('ShardId') }),
  KvCreated: object({ result: { const: MESSAGES.created }, 'causal-metadata': ref('CausalMetadata'), 'shard-id': ref('ShardId') }),
  KvReplaced: object({ result: { const: MESSAGES.replaced }, 'causal-metadata': ref('CausalMetadata'), 'shard-id': ref('ShardId') }),
  KvDeleted: object({ result: { const: MESSAGES.deleted }, 'causal-metadata': ref('CausalMetadata'), 'shard-id': ref('ShardId') }),
  NodeRequest: { type: 'object', properties: { 'socket-address': ref('SocketAddress') }, required: ['socket-address'] },
  View: object({ view: arrayOf(ref('SocketAddress'), 'Sorted by address: IPv4 octet by octet, then port.') }),
  ShardSide: object({ id: ref('ShardId'), members: arrayOf(ref('SocketAddress')), keys: orNull(integer('Live keys; null when no member answered with its counts.')) }),
  ReshardPlan: object({
    epoch: integer('The epoch the reshard would make.'),
    shardCount: integer(),
    before: arrayOf(ref('ShardSide')),
    after: arrayOf(ref('ShardSide')),
    partitionsMoving: integer('Partitions whose data would go to a node that does not hold it now.'),
    keysMoving: orNull(integer('Live keys in those partitions; null when a shard did not answer.')),
    moving: arrayOf(object({ shard: ref('ShardId'), partitions: integer(), keys: orNull(integer()) }), 'Per current shard: what it would hand over.'),
    noop: { type: 'boolean', description: 'True when the store already has this shard count with every node of the view in a shard: a reshard would change nothing.' },
  }),
  ReshardProgress: object({
    epoch: integer(),
    shardCount: integer(),
    phase: { enum: ['prepare', 'send', 'commit'] },
    coordinator: ref('SocketAddress'),
    partitionsMoved: integer(),
    partitionsTotal: integer(),
    keysMoved: orNull(integer()),
    keysTotal: orNull(integer()),
    seconds: { type: 'number', minimum: 0 },
  }),
  Backlog: object({ versions: integer(), bytes: integer() }),
  RequestCounts: object({ total: integer(), errors: integer('Answered 5xx.'), latencyMsSum: { type: 'number', minimum: 0 } }),
  NodeStatus: object(
    {
      address: ref('SocketAddress'),
      ready: { type: 'boolean', description: 'Serving: joined the store and copied its shard (GET /status/ready answers this as 200 or 503).' },
      version: { type: 'string', description: "The store's version this node runs." },
      pid: integer("The node's process id on its machine."),
      epoch: integer('The shard map in force.'),
      mode: { enum: ['replicated', 'sharded'] },
      shard: orNull(ref('ShardId')),
      view: arrayOf(ref('SocketAddress')),
      onProbation: arrayOf(ref('SocketAddress'), 'Nodes found down and probed until they answer again.'),
      incarnation: { type: 'string', description: "This process's start, told apart from a restart." },
      links: { type: 'object', description: 'Links held down after a failure, and counts of holds, releases and refused requests.' },
      keys: integer('Live keys held here.'),
      versions: integer(),
      applied: ref('Clock'),
      durableApplied: orNull(ref('Clock')),
      pendingEarlyWrites: integer(),
      replication: object({ queued: integer(), queuedBytes: integer(), hints: integer(), hintBytes: integer() }, { open: true }),
      repair: { type: 'object', description: 'Anti-entropy and sync counters.' },
      tombstones: object(
        {
          held: integer('Tombstones the replica holds.'),
          oldestAgeMs: orNull({ type: 'number', minimum: 0, description: 'How long ago this node applied the oldest tombstone (to within TOMBSTONE_GRACE_MS / 32).' }),
          oldestAgeAtLeast: { type: 'boolean', description: 'The oldest was applied before this node started keeping time for it (or came with a reshard): it may be older.' },
          graceMs: integer('TOMBSTONE_GRACE_MS.'),
          blockedBy: arrayOf(ref('SocketAddress'), 'Members not heard from that collection waits for: unheard of for less than the grace, or this node does not hear from a majority of the shard.'),
          collectingWithout: arrayOf(ref('SocketAddress'), 'Members not heard from for longer than the grace: tombstones are collected without them, and they copy their shard afresh when back.'),
          collectedUpTo: ref('Clock'),
          kept: integer('Tombstones collected without a member, kept (on disk too) until it is back: a version they deleted that it brings back loses to them.'),
          keptMax: integer('GRAVEYARD_MAX: collected tombstones remembered at most, kept ones included.'),
          graveyardFull: { type: 'boolean', description: 'Collection would go on without the members in blockedBy, but what it would collect does not fit in the room left for kept tombstones: it waits for them.' },
          stale: orNull(object({ forMs: { type: 'number', minimum: 0 }, peer: ref('SocketAddress'), handedOff: { type: 'boolean' } }, { description: 'Missed tombstones collected without it: copied afresh once handed off.' })),
        },
        { description: 'Tombstones and their collection (see README, "Deletes and the tombstone grace").' },
      ),
      droppedMembers: arrayOf(object({ shard: ref('ShardId'), node: ref('SocketAddress') }), 'Members that never joined, dropped in this epoch (MEMBER_JOIN_GRACE_MS).'),
      reshardInProgress: orNull(integer('The epoch of a reshard this node takes part in.')),
      reshard: orNull(ref('ReshardProgress')),
      requests: ref('RequestCounts'),
      lateTransfers: integer(),
      uptimeMs: { type: 'number', minimum: 0 },
      backgroundFailures: { type: 'object', additionalProperties: integer() },
      memory: object({ rssBytes: integer() }),
      eventLoop: object({ delayP99Ms: { type: 'number', minimum: 0 }, delayMaxMs: { type: 'number', minimum: 0 } }),
      peerNames: object(
        { names: integer('Host names of known nodes resolved.'), failing: arrayOf({ type: 'string' }, 'Names whose last lookup failed.'), lookupFailures: integer() },
        { description: 'Only without CLUSTER_SECRET: the background resolution of host names for the source check.' },
      ),
    },
    { open: true, optional: ['peerNames'], description: 'What this node is, holds and has done since it started (fields may be added).' },
  ),
  NodeRow: object({
    address: ref('SocketAddress'),
    shard: orNull(ref('ShardId')),
    state: { enum: ['up', 'probation', 'down', 'not ready'] },
    keys: orNull(integer()),
    replicationBacklog: orNull(ref('Backlog')),
    hintBacklog: orNull(ref('Backlog')),
    secondsSinceInSync: orNull({ type: 'number', minimum: 0 }),
    requests: orNull(ref('RequestCounts')),
    uptimeSeconds: orNull({ type: 'number', minimum: 0 }),
    tombstones: orNull(
      object(
        {
          held: integer('Tombstones the replica holds.'),
          oldestAgeSeconds: orNull({ type: 'number', minimum: 0, description: 'How long ago the node applied the oldest (null: it holds none).' }),
          oldestAgeAtLeast: { type: 'boolean', description: 'The oldest may be older (applied before the node kept time for it).' },
          blockedBy: arrayOf(ref('SocketAddress'), 'Members collection waits for (within the grace): collection is blocked while this is not empty.'),
          collectingWithout: arrayOf(ref('SocketAddress'), 'Members collection goes on without (past the grace).'),
          stale: orNull(
            object(
              { forSeconds: { type: 'number', minimum: 0 }, peer: orNull(ref('SocketAddress')), handedOff: { type: 'boolean' } },
              { description: 'The replica is stale: it missed tombstones collected without it, and is copied afresh.' },
            ),
          ),
        },
        { description: "From the `tombstones` of the node's /status; null when it does not answer (or its /status has none)." },
      ),
    ),
  }),
  StoreStatus: object({
    answeredBy: ref('SocketAddress'),
    epoch: integer(),
    mode: { enum: ['replicated', 'sharded'] },
    shards: arrayOf(object({ id: ref('ShardId'), members: arrayOf(ref('SocketAddress')), keys: orNull(integer()) })),
    nodes: arrayOf(ref('NodeRow'), "Every node of the store (the view, nodes on probation, every shard's members), a dead one too."),
    reshard: orNull({ type: 'object', description: 'A reshard this node coordinates, or one any node reports coordinating (as ReshardProgress).' }),
  }),
};

// ---------------------------------------------------------------- operations

const KEY = pathParameter('key', `The key, percent-encoded (any Unicode, \`/\` too); at most ${KEY_LENGTH_MAX} characters once decoded, not empty.`);
const KV_UNAVAILABLE = error(
  `Not served now, try again: this replica lacks writes the causal metadata depends on (\`${MESSAGES.causalUnavailable}\`), a reshard is committing, no member of the key's shard is reachable, a forwarded write may or may not have been applied, or the node is overloaded.`,
);
const KV_BAD_REQUEST = error(
  `\`${MESSAGES.noValue}\` (PUT), \`${MESSAGES.keyTooLong}\`, an empty key or one that is not valid URL encoding, a body that is not a JSON object (or not JSON at all), a value nested too deep, causal metadata this store did not issue.`,
);

function kv(method: 'GET' | 'PUT' | 'DELETE'): Operation {
  const common = { tags: ['kvs'], responses: { ...TRANSPORT, '400': KV_BAD_REQUEST, '503': KV_UNAVAILABLE } };
  if (method === 'PUT') {
    return {
      operationId: 'putKey',
      summary: 'Create or replace a key',
      description: "Acknowledged at once and replicated to every replica of the key's shard. A node outside the shard forwards the request and relays the answer.",
      ...common,
      requestBody: body(ref('KvPutRequest'), true),
      responses: { ...common.responses, '200': json('Replaced: the key existed.', ref('KvReplaced')), '201': json('Created: the key was absent.', ref('KvCreated')) },
    };
  }
  const missing = error(`\`${MESSAGES.keyMissing}\`: never written, or deleted.`);
  if (method === 'GET') {
    return {
      operationId: 'getKey',
      summary: 'Read a key',
      ...common,
      requestBody: body(ref('KvRequest'), false),
      responses: { ...common.responses, '200': json('Found.', ref('KvFound')), '404': missing },
    };
  }
  return {
    operationId: 'deleteKey',
    summary: 'Delete a key',
    ...common,
    requestBody: body(ref('KvRequest'), false),
    responses: { ...common.responses, '200': json('Deleted.', ref('KvDeleted')), '404': missing },
  };
}

const get = (operationId: string, summary: string, tag: string, responses: Record<string, Response | Ref>, description?: string): Operation => ({
  operationId,
  summary,
  ...(description === undefined ? {} : { description }),
  tags: [tag],
  responses: { ...TRANSPORT, ...responses },
});

const SHARD_MISSING = error('`Shard <id> does not exist`.');
const SHARD_ID_BAD = error('The shard id is not valid URL encoding (or the body is malformed).');

const DASHBOARD_REDIRECT: Record<string, Response | Ref> = {
  '301': {
    description: 'The dashboard is at /ui/.',
    headers: { Location: { description: '`/ui/`', schema: { const: '/ui/' } } },
    content: { 'application/json': { schema: object({ location: { const: '/ui/' } }) } },
  },
};
const DASHBOARD_PAGE: Record<string, Response | Ref> = {
  '200': { description: 'The dashboard: one self-contained page that polls GET /status/store.', content: { 'text/html': { schema: { type: 'string' } } } },
};
/** HEAD: the headers of GET, without the body. */
const headOf = (responses: Record<string, Response | Ref>): Record<string, Response | Ref> =>
  Object.fromEntries(
    Object.entries(responses).map(([status, r]) => [status, '$ref' in r ? r : { description: r.description, ...(r.headers === undefined ? {} : { headers: r.headers }) }]),
  );

const PATHS: Record<string, PathItem> = {
  '/kvs/{key}': { parameters: [KEY], get: kv('GET'), put: kv('PUT'), delete: kv('DELETE') },
  '/view': {
    get: get('getView', 'The view: the nodes believed up', 'view', { '200': json('The view.', ref('View')) }),
    put: {
      operationId: 'addToView',
      summary: 'Add a node to the view',
      tags: ['view'],
      ...ADMIN,
      requestBody: body(ref('NodeRequest'), true),
      responses: { ...TRANSPORT, ...UNAUTHORIZED, '200': json('Already in the view.', result(MESSAGES.alreadyPresent)), '201': json('Added.', result(MESSAGES.added)) },
    },
    delete: {
      operationId: 'removeFromView',
      summary: 'Remove a node from the view',
      tags: ['view'],
      ...ADMIN,
      requestBody: body(ref('NodeRequest'), true),
      responses: { ...TRANSPORT, ...UNAUTHORIZED, '200': json('Removed.', result(MESSAGES.deleted)), '404': error(`\`${MESSAGES.noSuchReplica}\`.`) },
    },
  },
  '/shard/ids': { get: get('getShardIds', 'Every shard id', 'shard', { '200': json('The shard ids.', object({ 'shard-ids': arrayOf(ref('ShardId')) })) }) },
  '/shard/node-shard-id': {
    get: get('getNodeShardId', "This node's shard", 'shard', { '200': json('Its shard id; null for a node in no shard.', object({ 'node-shard-id': orNull(ref('ShardId')) })) }),
  },
  '/shard/members/{id}': {
    parameters: [SHARD_ID_PARAMETER],
    get: get('getShardMembers', "A shard's members", 'shard', {
      '200': json('Its members, sorted by address (a member that is down stays listed).', object({ 'shard-members': arrayOf(ref('SocketAddress')) })),
      '400': SHARD_ID_BAD,
      '404': SHARD_MISSING,
    }),
  },
  '/shard/key-count/{id}': {
    parameters: [SHARD_ID_PARAMETER],
    get: get('getShardKeyCount', "A shard's live keys (tombstones excluded)", 'shard', {
      '200': json('The count, from a member of the shard.', object({ 'shard-key-count': integer() })),
      '400': SHARD_ID_BAD,
      '404': SHARD_MISSING,
      '503': error('No member of the shard is reachable, or the node is overloaded.'),
    }),
  },
  '/shard/add-member/{id}': {
    parameters: [SHARD_ID_PARAMETER],
    put: {
      operationId: 'addShardMember',
      summary: 'Add a node of the view to a shard',
      description: 'Any node takes it; every node learns the membership, and the added node copies the shard.',
      tags: ['shard'],
      ...ADMIN,
      requestBody: body(ref('NodeRequest'), true),
      responses: {
        ...TRANSPORT,
        ...UNAUTHORIZED,
        '200': json('Added (or already a member).', result(MESSAGES.nodeAddedToShard)),
        '400': SHARD_ID_BAD,
        '404': error('`Shard <id> does not exist` or `Node is not in the view`.'),
        '409': error('`Node is already a member of shard <id>`: of another shard.'),
      },
    },
  },
  '/shard/reshard': {
    put: {
      operationId: 'reshard',
      summary: 'Reshard the whole store to a number of shards',
      description: 'Every node of the view is assigned again; every key lives in exactly one shard afterwards.',
      tags: ['shard'],
      ...ADMIN,
      requestBody: body({ type: 'object', properties: { 'shard-count': { type: 'integer', minimum: 1 } }, required: ['shard-count'] }, true),
      responses: {
        ...TRANSPORT,
        ...UNAUTHORIZED,
        '200': json('Resharded (or already so: nothing moved).', result(MESSAGES.resharded)),
        '400': error(`\`${MESSAGES.notEnoughNodes}\` (fewer than 2 nodes per shard would result), or \`shard-count must be a positive integer\`.`),
        '503': error('Another reshard is in progress, a node could not hand over its keys in time, or the node is overloaded.'),
      },
    },
  },
  '/shard/reshard-plan/{count}': {
    parameters: [pathParameter('count', 'The shard count to preview: a positive integer.')],
    get: get(
      'getReshardPlan',
      'What a reshard to this many shards would move, without moving anything',
      'shard',
      { '200': json('The plan.', ref('ReshardPlan')), '400': error(`\`${MESSAGES.notEnoughNodes}\`, or a count that is not a positive integer.`) },
      'A preview: no admin token is asked for.',
    ),
  },
  '/status': {
    get: get('getStatus', 'This node: liveness and diagnostics', 'status', { '200': json('Always, while the node answers (liveness).', ref('NodeStatus')) }),
  },
  '/status/ready': {
    get: get(
      'getReady',
      'Readiness, for load balancers and probes',
      'status',
      {
        '200': json('Ready: the `ready` of GET /status is true.', object({ ready: { const: true } })),
        '503': json(
          'Not ready yet (joining the store, copying its shard), or overloaded (then an Error).',
          { oneOf: [object({ ready: { const: false }, error: { type: 'string' } }), ref('Error')] },
        ),
      },
      'A Kubernetes readinessProbe or a load balancer health check. Liveness is GET /status.',
    ),
  },
  '/status/store': {
    get: get('getStoreStatus', 'The whole store as this node sees it', 'status', { '200': json('Every node (a down one too) and every shard.', ref('StoreStatus')) }),
  },
  '/metrics': {
    get: get('getMetrics', "This node's metrics", 'status', {
      '200': { description: `Prometheus text format (\`${METRICS_CONTENT_TYPE}\`).`, content: { 'text/plain': { schema: { type: 'string' } } } },
    }),
  },
  '/ui': {
    get: get('getDashboardRedirect', 'Redirect to the dashboard', 'dashboard', DASHBOARD_REDIRECT),
    head: get('headDashboardRedirect', 'Redirect to the dashboard (headers only)', 'dashboard', headOf(DASHBOARD_REDIRECT)),
  },
  '/ui/': {
    get: get('getDashboard', 'The live dashboard (HTML)', 'dashboard', DASHBOARD_PAGE),
    head: get('headDashboard', 'The live dashboard (headers only)', 'dashboard', headOf(DASHBOARD_PAGE)),
  },
  '/openapi.json': {
    get: get('getOpenApi', 'This description', 'meta', {
      '200': json('An OpenAPI 3.1 document: load it in any OpenAPI viewer.', { type: 'object', properties: { openapi: { const: '3.1.0' } }, required: ['openapi', 'info', 'paths'] }),
    }),
  },
};

export const OPENAPI: OpenApiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'kvs',
    version: '1.0.0',
    description:
      'A sharded, replicated, causally consistent key-value store. Any node answers any request. Every body is JSON (GET and DELETE carry one too: the causal metadata); every error is a JSON object with an `error` string.',
  },
  tags: [
    { name: 'kvs', description: 'Keys and values, causally consistent across the store.' },
    { name: 'view', description: 'The set of nodes believed up.' },
    { name: 'shard', description: 'Shards, their members, resharding.' },
    { name: 'status', description: 'Liveness, readiness, diagnostics, metrics.' },
    { name: 'dashboard', description: 'The live dashboard.' },
    { name: 'meta', description: 'This description.' },
  ],
  paths: PATHS,
  components: {
    schemas: SCHEMAS,
    responses: {
      BadRequest: error('A malformed request: a body that is not valid JSON or UTF-8, nests too deep, holds a number beyond a double; a malformed x-kvs-* header.'),
      BodyTooLarge: error('The body is larger than MAX_BODY_BYTES.'),
      Overloaded: {
        ...error('`The node is overloaded; try again later`: too many client requests or bytes in flight.'),
        headers: { 'Retry-After': { description: 'Seconds to wait (every 503 carries it).', schema: { type: 'string' } } },
      },
      Unauthorized: error('The store has ADMIN_TOKEN and the request lacks it: `<METHOD> <route> needs the admin token: send the header Authorization: Bearer <ADMIN_TOKEN>`. Nothing changes.'),
    },
    securitySchemes: {
      adminToken: {
        type: 'http',
        scheme: 'bearer',
        description: 'ADMIN_TOKEN: asked for by the topology changes only when the store is started with it (without it they are open, as the contract has them).',
      },
    },
  },
};
