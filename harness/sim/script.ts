// Scripted scenarios over the simulator, with golden transcripts, in the manner of etcd-raft's
// datadriven testdata. A scenario file is a list of blocks:
//
//     # comments say what the next step shows
//     directive arg key=value ...
//     ----
//     what the directive printed
//     <blank line>
//
// The interpreter runs every directive against one simulated World (real KvsNode runtimes on a
// seeded clock, network and disk) and prints what it did or found; the printed text is the
// transcript that a test compares with the text after `----` (REWRITE=1 writes it back instead).
// An output that holds blank lines is written between two `----` lines (`----\n----\n...\n----\n----`).
// Node addresses print as names: n1 is 10.10.0.2:8090, n2 10.10.0.3:8090, and so on. Nothing timing
// dependent is printed (no uptimes, no elapsed times): the same file gives the same bytes every run.
//
// Directives (D is a duration: 500ms, 2s, 1.5s; N a node name; C a client name; R a request id):
//   store nodes=3 [shards=K] [seed=S] [latency=MIN-MAX] [hold-window=MS] [ENV_NAME=VALUE ...]
//                                  create the store (must come first; shards=0, the default: no
//                                  SHARD_COUNT, replicated) and wait until every node is ready and
//                                  lists every other; prints the shard map. Defaults: seed 1, 3
//                                  nodes, latency 0.2-2 ms, no loss nor duplicates, a cut holds a
//                                  message up to 10 s (hold-window); ENV_NAME=VALUE goes to every
//                                  node's environment (CAUSAL_WAIT_MS=1000, HOLD_DOWN_MS=5000, ...)
//   put N KEY VALUE [client=C] [id=R] [timeout=D]
//   get N KEY [client=C] [id=R] [timeout=D]
//   delete N KEY [client=C] [id=R] [timeout=D]
//                                  a client request; with client=C it carries C's causal metadata and
//                                  C keeps the metadata of the answer; without, the metadata is null.
//                                  VALUE is JSON when it parses as JSON (1, "x y", {"a":1}), else a string.
//                                  Without id=R, time runs until the answer, which is printed; with
//                                  id=R the request is only sent: its answer prints when it comes
//                                  (at the end of the directive during which it came) and at `await R`
//   request METHOD N PATH [BODY_JSON] [client=C] [id=R] [timeout=D]
//                                  any other HTTP request (client=C sets its causal metadata)
//   await R [max=D]                run until request R is answered; print the answer
//   pending                        the requests sent with id= that are not answered yet
//   step D                         run simulated time D further
//   wait converged|ready N...|in-view N...|out-of-view N... [max=D]
//                                  run until the condition holds (converged: every node up, ready,
//                                  with the same view and map, every shard's replicas equal)
//   cut A B | cut A -> B           cut a link both ways | one way
//   partition A B | C D            cut every link between the two groups
//   isolate N                      cut N from every other node (clients still reach it)
//   heal | heal A B | heal A -> B  heal every link | one link; what the cut held within the
//                                  network's hold window is delivered (as TCP retransmits)
//   hold A -> B [count=K|all] [match=TEXT]
//                                  capture the next K messages from A to B whose description
//                                  ("PUT /kvs/k", "POST /internal/replicate", "reply 200 to ...")
//                                  contains TEXT; the sender hears nothing until deliver or drop
//   unhold [A -> B]                disarm the traps (every one, or one link's)
//   held                           every captured message (#1, #2, ...) and its state
//   deliver ID|all|match=TEXT      send held captured messages on; a request's answer from its target
//                                  is printed (its sender may have given up long ago; a node-to-node
//                                  answer by its status only)
//   drop ID|all|match=TEXT         lose held captured messages
//   crash N | restart N            kill a node's process | start it again on its disk
//   join N                         start a new node (the next address) with VIEW = every node and
//                                  itself, no SHARD_COUNT
//   add-member N SHARD [via=M]     PUT /shard/add-member/SHARD
//   reshard K [via=M] [timeout=D]  PUT /shard/reshard
//   view N | view-add N [via=M] | view-delete N [via=M]   GET, PUT, DELETE /view (via n1 by default)
//   shards [via=M]                 every shard's members and key count, through the HTTP API
//   node-shard N...                GET /shard/node-shard-id at each node
//   status [N...] [fields=a,b]     fields of each node's /status: ready epoch shard view held
//                                  mirrored keys tombstones collected pending queued reshard holds releases,
//                                  and of its tombstones: blocked (members collection waits for),
//                                  without (members it goes on without, past the grace), kept
//                                  (tombstones kept for them), full (the graveyard has no room: it waits), stale
//   replicas [N...]                what each replica stores: live keys and tombstones
//   placement                      for every key live anywhere, the shards (with the epoch of the
//                                  holders' map) and the nodes holding it

import { nodeAddress } from '../../src/core/address.ts';
import { membersOf, shardIds } from '../../src/core/shard-map.ts';
import type { NodeAddress } from '../../src/core/types.ts';
import { World, type ScriptReply, type WorldSettings } from './world.ts';

// ------------------------------------------------------------------ the file format

export interface Block {
  /** Comment and blank lines before the directive, kept as they are on a rewrite. */
  before: string[];
  /** The directive's line(s). */
  input: string[];
  /** The text after `----`. */
  expected: string;
  /** 1-based line of the directive in the file. */
  line: number;
}

export interface ScenarioFile {
  blocks: Block[];
  /** Comment and blank lines after the last block. */
  trailer: string[];
}

const SEPARATOR = '----';

export function parseScenario(text: string): ScenarioFile {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const blocks: Block[] = [];
  let pending: string[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i] as string;
    if (line.trim() === '' || line.startsWith('#')) {
      pending.push(line);
      i++;
      continue;
    }
    const start = i + 1;
    const input: string[] = [];
    while (i < lines.length && lines[i] !== SEPARATOR) {
      const l = lines[i] as string;
      if (l.trim() === '') throw new Error(`line ${start}: the directive has no ${SEPARATOR} line after it`);
      if (!l.startsWith('#')) input.push(l);
      i++;
    }
    if (i >= lines.length) throw new Error(`line ${start}: the directive has no ${SEPARATOR} line after it`);
    i++;
    const expected: string[] = [];
    if (lines[i] === SEPARATOR) {
      // The long form: the output may hold blank lines; it ends at two separator lines.
      i++;
      while (i < lines.length && !(lines[i] === SEPARATOR && lines[i + 1] === SEPARATOR)) expected.push(lines[i++] as string);
      if (i >= lines.length) throw new Error(`line ${start}: the output has no closing ${SEPARATOR} ${SEPARATOR}`);
      i += 2;
      if (i < lines.length && (lines[i] as string).trim() === '') i++;
    } else {
      while (i < lines.length && (lines[i] as string).trim() !== '') expected.push(lines[i++] as string);
      if (i < lines.length) i++; // the blank line that ends the output
    }
    blocks.push({ before: pending, input, expected: expected.join('\n'), line: start });
    pending = [];
  }
  return { blocks, trailer: pending };
}

/** The file with each block's output replaced by `outputs[i]`. `formatScenario(parseScenario(t), expected)` gives `t` back. */
export function formatScenario(file: ScenarioFile, outputs: readonly string[]): string {
  const chunks = file.blocks.map((block, i) => {
    const output = outputs[i] ?? '';
    const body = output.split('\n').some((l) => l.trim() === '') && output !== '' ? [SEPARATOR, output, SEPARATOR, SEPARATOR] : output === '' ? [] : [output];
    return [...block.before, ...block.input, SEPARATOR, ...body].join('\n');
  });
  const tail = file.trailer.length > 0 ? `\n\n${file.trailer.join('\n')}` : '';
  return `${chunks.join('\n\n')}${tail}\n`;
}

// ------------------------------------------------------------------ arguments

interface Args {
  name: string;
  positional: string[];
  named: Map<string, string>;
  /** For error messages. */
  where: string;
}

/** Splits on spaces, except within double quotes and brackets (so JSON values stay whole). */
function tokenize(text: string): string[] {
  const tokens: string[] = [];
  let current = '';
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (quoted) {
      current += c;
      if (c === '\\') current += text[++i] ?? '';
      else if (c === '"') quoted = false;
      continue;
    }
    if (c === '"') quoted = true;
    else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
    if (/\s/.test(c) && depth === 0) {
      if (current !== '') tokens.push(current);
      current = '';
      continue;
    }
    current += c;
  }
  if (quoted || depth !== 0) throw new Error(`unbalanced quotes or brackets in: ${text}`);
  if (current !== '') tokens.push(current);
  return tokens;
}

function parseArgs(block: Block, file: string): Args {
  const tokens = tokenize(block.input.join(' '));
  const [name, ...rest] = tokens;
  const args: Args = { name: name ?? '', positional: [], named: new Map(), where: `${file}:${block.line}` };
  for (const token of rest) {
    const m = /^([A-Za-z_][\w-]*)=(.*)$/s.exec(token);
    // key="a b" is the string a b.
    if (m) args.named.set(m[1] as string, (m[2] as string).startsWith('"') ? String(JSON.parse(m[2] as string)) : (m[2] as string));
    else args.positional.push(token);
  }
  return args;
}

class ScriptError extends Error {}

function durationMs(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s)$/.exec(text);
  if (!m) throw new ScriptError(`not a duration (500ms, 2s): ${text}`);
  return Number(m[1]) * (m[2] === 's' ? 1_000 : 1);
}

/** n1 is the first node's address, 10.10.0.2:8090; n2 the second's... as World numbers them. */
function addressOf(name: string): NodeAddress {
  const m = /^n([1-9][0-9]*)$/.exec(name);
  if (!m) throw new ScriptError(`not a node name (n1, n2, ...): ${name}`);
  return nodeAddress(`10.10.0.${Number(m[1]) + 1}:8090`);
}

/** Every node address in `text` as its name. */
function named(text: string): string {
  return text.replace(/10\.10\.0\.(\d+):8090/g, (_, x: string) => `n${Number(x) - 1}`);
}

const show = (value: unknown): string => named(JSON.stringify(value) ?? 'undefined');

/** `201 result="created" shard-id="s0"`: status and every field but the causal metadata (opaque to clients). */
function formatReply(reply: ScriptReply): string {
  const fields = Object.entries(reply.body)
    .filter(([k]) => k !== 'causal-metadata')
    .map(([k, v]) => `${k}=${show(v)}`);
  return [String(reply.status), ...fields].join(' ');
}

function parseValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

// ------------------------------------------------------------------ the interpreter

interface AsyncRequest {
  id: string;
  what: string;
  reply?: ScriptReply;
  failure?: string;
  /** Printed at the end of the directive during which it was answered (or by `await`). */
  reported: boolean;
}

const CLIENT_TIMEOUT_MS = 10_000;
const WAIT_MAX_MS = 30_000;
const STATUS_FIELDS = [
  'ready',
  'epoch',
  'shard',
  'view',
  'held',
  'mirrored',
  'keys',
  'tombstones',
  'collected',
  'blocked',
  'without',
  'kept',
  'full',
  'stale',
  'pending',
  'queued',
  'reshard',
  'holds',
  'releases',
] as const;
const STATUS_DEFAULT = ['shard', 'view', 'held', 'keys', 'tombstones'];

class Interpreter {
  readonly #world: World;
  readonly #file: string;
  /** Causal metadata each named client carries. */
  readonly #clients = new Map<string, unknown>();
  readonly #requests = new Map<string, AsyncRequest>();
  /** Requests answered, in the order they were, not printed yet. */
  #answered: AsyncRequest[] = [];

  constructor(world: World, file: string) {
    this.#world = world;
    this.#file = file;
  }

  async run(args: Args): Promise<string> {
    let lines: string[];
    try {
      lines = await this.#directive(args);
    } catch (error) {
      if (error instanceof ScriptError && !error.message.startsWith(args.where)) throw new ScriptError(`${args.where}: ${error.message}`);
      throw error;
    }
    // Answers to requests sent earlier that came meanwhile.
    for (const request of this.#answered) {
      if (!request.reported) lines.push(this.#answerLine(request));
      request.reported = true;
    }
    this.#answered = [];
    return named(lines.join('\n'));
  }

  // ---------------------------------------------------------------- time

  async #runFor(ms: number): Promise<void> {
    await this.#world.advance(ms);
  }

  /** Runs time in small steps until `done` or `maxMs` passed; true when `done`. */
  async #runUntil(done: () => boolean, maxMs: number, stepMs = 5): Promise<boolean> {
    const deadline = this.#world.scheduler.now() + maxMs;
    while (!done()) {
      if (this.#world.scheduler.now() >= deadline) return false;
      await this.#world.scheduler.runUntil(Math.min(deadline, this.#world.scheduler.now() + stepMs));
    }
    return true;
  }

  // ---------------------------------------------------------------- requests

  #node(name: string | undefined, args: Args, role = 'node'): NodeAddress {
    if (name === undefined) throw new ScriptError(`${args.where}: ${args.name} needs a ${role}`);
    return addressOf(name);
  }

  /** Sends a request; waits for it and returns its printed answer, or (with id=) registers it. */
  async #request(args: Args, method: 'GET' | 'PUT' | 'DELETE', node: NodeAddress, path: string, body: Record<string, unknown> | undefined): Promise<string[]> {
    const client = args.named.get('client');
    const from = client ?? 'client';
    if (body !== undefined && client !== undefined) body['causal-metadata'] = this.#clients.get(client) ?? null;
    else if (body !== undefined && !('causal-metadata' in body) && path.startsWith('/kvs/')) body['causal-metadata'] = null;
    const timeoutMs = args.named.has('timeout') ? durationMs(args.named.get('timeout') as string) : CLIENT_TIMEOUT_MS;
    const entry: AsyncRequest = { id: args.named.get('id') ?? '', what: `${method} ${path}`, reported: false };
    let done = false;
    this.#world.send(from, node, method, path, body, timeoutMs).then(
      (reply) => {
        done = true;
        entry.reply = reply;
        const metadata = reply.body['causal-metadata'];
        if (client !== undefined && metadata !== undefined && metadata !== null) this.#clients.set(client, metadata);
        if (entry.id !== '') this.#answered.push(entry);
      },
      (error: unknown) => {
        done = true;
        entry.failure = `no answer: ${error instanceof Error ? error.message : String(error)}`;
        if (entry.id !== '') this.#answered.push(entry);
      },
    );
    if (entry.id !== '') {
      if (this.#requests.has(entry.id)) throw new ScriptError(`${args.where}: request id ${entry.id} is taken`);
      this.#requests.set(entry.id, entry);
      return [`${entry.id} sent`];
    }
    if (!(await this.#runUntil(() => done, timeoutMs + 1_000))) throw new Error(`${args.where}: the request was neither answered nor timed out`);
    return [entry.reply !== undefined ? formatReply(entry.reply) : (entry.failure as string)];
  }

  #answerLine(request: AsyncRequest): string {
    return `${request.id} -> ${request.reply !== undefined ? formatReply(request.reply) : request.failure}`;
  }

  async #await(args: Args): Promise<string[]> {
    const id = args.positional[0];
    const request = id === undefined ? undefined : this.#requests.get(id);
    if (request === undefined) throw new ScriptError(`${args.where}: no request ${id ?? '(none named)'}`);
    const maxMs = args.named.has('max') ? durationMs(args.named.get('max') as string) : CLIENT_TIMEOUT_MS + 1_000;
    const answered = await this.#runUntil(() => request.reply !== undefined || request.failure !== undefined, maxMs);
    if (!answered) return [`${id} still waiting`];
    request.reported = true;
    this.#requests.delete(request.id);
    return [this.#answerLine(request)];
  }

  /** Requests sent with id= that are not answered yet. */
  #pending(): string[] {
    const lines = [...this.#requests.values()].filter((r) => r.reply === undefined && r.failure === undefined).map((r) => `${r.id} ${r.what}: waiting`);
    return lines.length === 0 ? ['none'] : lines;
  }

  /** The node an admin request goes to: via=M, else n1. */
  #via(args: Args): NodeAddress {
    return addressOf(args.named.get('via') ?? 'n1');
  }

  // ---------------------------------------------------------------- the network

  /** Splits `A -> B` (one way) or `A B` (both ways) into links. */
  #links(args: Args): [NodeAddress, NodeAddress][] {
    const p = args.positional;
    if (p.length === 3 && p[1] === '->') return [[addressOf(p[0] as string), addressOf(p[2] as string)]];
    if (p.length === 2) {
      const [a, b] = [addressOf(p[0] as string), addressOf(p[1] as string)];
      return [
        [a, b],
        [b, a],
      ];
    }
    throw new ScriptError(`${args.where}: ${args.name} takes A B (both ways) or A -> B (one way)`);
  }

  #cuts(): string[] {
    const cuts = this.#world.network.cuts().map((link) => link.replace('>', '->'));
    return [`cuts: ${cuts.length === 0 ? 'none' : cuts.join(' ')}`];
  }

  #traps(): string {
    const traps = this.#world.network.traps().map((t) => `${t.from}->${t.to} count=${t.count === Infinity ? 'all' : t.count}${t.match === '' ? '' : ` match=${JSON.stringify(t.match)}`}`);
    return `traps: ${traps.length === 0 ? 'none' : traps.join(', ')}`;
  }

  /** The captured messages `deliver` or `drop` names: an id (#1 or 1), all, or match=TEXT (every held one whose description contains TEXT). */
  #capturedIds(args: Args): number[] {
    const which = args.positional[0];
    const held = this.#world.network.captured().filter((m) => m.state === 'held');
    const match = args.named.get('match');
    if (match !== undefined) return held.filter((m) => m.what.includes(match)).map((m) => m.id);
    if (which === 'all') return held.map((m) => m.id);
    const id = Number(which?.replace(/^#/, ''));
    if (!Number.isInteger(id)) throw new ScriptError(`${args.where}: ${args.name} takes a message id (#1), all, or match=TEXT`);
    return [id];
  }

  // ---------------------------------------------------------------- inspection

  #upNodes(args: Args): NodeAddress[] {
    const given = args.positional.map((name) => addressOf(name));
    return given.length > 0 ? given : this.#world.allNodes().filter((n) => this.#world.isUp(n));
  }

  #status(args: Args): string[] {
    const fields = args.named.has('fields') ? (args.named.get('fields') as string).split(',') : STATUS_DEFAULT;
    for (const f of fields) if (!(STATUS_FIELDS as readonly string[]).includes(f)) throw new ScriptError(`${args.where}: no status field ${f}; known: ${STATUS_FIELDS.join(' ')}`);
    return this.#upNodes(args).map((node) => {
      const kvs = this.#world.nodes().get(node);
      if (kvs === undefined) return `${node} down`;
      const s = kvs.status() as Record<string, unknown> & {
        view: string[];
        links: { held: { peer: string; mirrored?: boolean }[]; holds: number; releases: number };
        replication: { queued: number; hints: number };
        repair: { tombstonesCollected: number };
        tombstones: { blockedBy: string[]; collectingWithout: string[]; kept: number; graveyardFull: boolean; stale: { handedOff: boolean } | null };
        keys: number;
        versions: number;
      };
      const value: Record<string, unknown> = {
        ready: s.ready,
        epoch: s.epoch,
        shard: s.shard,
        view: [...s.view].sort(),
        held: s.links.held.filter((h) => !h.mirrored).map((h) => h.peer),
        mirrored: s.links.held.filter((h) => h.mirrored).map((h) => h.peer),
        keys: s.keys,
        tombstones: s.versions - s.keys,
        collected: s.repair.tombstonesCollected,
        blocked: [...s.tombstones.blockedBy].sort(),
        without: [...s.tombstones.collectingWithout].sort(),
        kept: s.tombstones.kept,
        full: s.tombstones.graveyardFull ? 'yes' : 'no',
        stale: s.tombstones.stale === null ? 'no' : s.tombstones.stale.handedOff ? 'handed-off' : 'yes',
        pending: s.pendingEarlyWrites,
        queued: s.replication.queued + s.replication.hints,
        reshard: s.reshardInProgress,
        holds: s.links.holds,
        releases: s.links.releases,
      };
      const text = fields.map((f) => {
        const v = value[f];
        return `${f}=${Array.isArray(v) ? `[${v.join(' ')}]` : String(v)}`;
      });
      return `${node} ${text.join(' ')}`;
    });
  }

  #replicas(args: Args): string[] {
    return this.#upNodes(args).map((node) => {
      const replica = this.#world.nodes().get(node)?.core.replica;
      if (replica === undefined) return `${node} down`;
      if (replica === null) return `${node} no replica`;
      const versions = [...replica.allVersions()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      const text = versions.map((v) => (v.deleted ? `${v.key}=<tombstone>` : `${v.key}=${show(v.value)}`));
      return `${node} ${replica.shard}: ${text.length === 0 ? '(empty)' : text.join(' ')}`;
    });
  }

  #placement(): string[] {
    const where = new Map<string, Map<string, NodeAddress[]>>();
    for (const [node, kvs] of this.#world.nodes()) {
      const replica = kvs.core.replica;
      if (!replica) continue;
      for (const v of replica.allVersions()) {
        if (v.deleted) continue;
        const byShard = where.get(v.key) ?? new Map<string, NodeAddress[]>();
        where.set(v.key, byShard);
        const shard = `${replica.shard} epoch ${kvs.core.map.epoch}`;
        byShard.set(shard, [...(byShard.get(shard) ?? []), node]);
      }
    }
    const keys = [...where.keys()].sort();
    if (keys.length === 0) return ['no live keys'];
    return keys.map((key) => {
      const shards = [...(where.get(key) as Map<string, NodeAddress[]>)].sort(([a], [b]) => (a < b ? -1 : 1));
      return `${key}: ${shards.map(([shard, nodes]) => `${shard} (${[...nodes].sort().join(' ')})`).join(', ')}`;
    });
  }

  async #shards(args: Args): Promise<string[]> {
    const via = this.#via(args);
    const ask = async (path: string): Promise<ScriptReply> => {
      const [reply] = await this.#world.settle([this.#world.send('admin', via, 'GET', path, undefined)]);
      return reply as ScriptReply;
    };
    const ids = await ask('/shard/ids');
    if (ids.status !== 200) return [formatReply(ids)];
    const lines: string[] = [];
    for (const id of ids.body['shard-ids'] as string[]) {
      const members = await ask(`/shard/members/${encodeURIComponent(id)}`);
      const count = await ask(`/shard/key-count/${encodeURIComponent(id)}`);
      const list = members.status === 200 ? (members.body['shard-members'] as string[]).join(' ') : formatReply(members);
      const keys = count.status === 200 ? String(count.body['shard-key-count']) : formatReply(count);
      lines.push(`${id}: ${list} (keys ${keys})`);
    }
    return lines;
  }

  /** Why `condition` does not hold yet ('' when it does). */
  #unmet(condition: string, nodes: NodeAddress[]): string {
    const world = this.#world;
    switch (condition) {
      case 'converged':
        return world.quiescence();
      case 'ready':
        for (const node of nodes) if (!world.nodes().get(node)?.core.ready) return `${node} is not ready`;
        return '';
      case 'in-view':
      case 'out-of-view':
        for (const [at, kvs] of world.nodes()) {
          if (nodes.includes(at)) continue;
          for (const node of nodes) {
            if (kvs.core.view().includes(node) !== (condition === 'in-view')) return `${at} ${condition === 'in-view' ? 'lacks' : 'lists'} ${node}`;
          }
        }
        return '';
      default:
        throw new ScriptError(`unknown condition ${condition}: converged, ready, in-view, out-of-view`);
    }
  }

  // ---------------------------------------------------------------- the directives

  async #directive(args: Args): Promise<string[]> {
    const world = this.#world;
    const p = args.positional;
    switch (args.name) {
      case 'put':
        return this.#request(args, 'PUT', this.#node(p[0], args), kvPath(p[1], args), { value: parseValue(required(p[2], args, 'value')) });
      case 'get':
        return this.#request(args, 'GET', this.#node(p[0], args), kvPath(p[1], args), {});
      case 'delete':
        return this.#request(args, 'DELETE', this.#node(p[0], args), kvPath(p[1], args), {});
      case 'request': {
        const method = required(p[0], args, 'method');
        if (method !== 'GET' && method !== 'PUT' && method !== 'DELETE') throw new ScriptError(`${args.where}: method GET, PUT or DELETE`);
        const body = p[3] === undefined ? undefined : (JSON.parse(p[3]) as Record<string, unknown>);
        return this.#request(args, method, this.#node(p[1], args), required(p[2], args, 'path'), body);
      }
      case 'await':
        return this.#await(args);
      case 'pending':
        return this.#pending();
      case 'step':
        await this.#runFor(durationMs(required(p[0], args, 'duration')));
        return [];
      case 'wait': {
        const condition = required(p[0], args, 'condition');
        const nodes = p.slice(1).map((n) => addressOf(n));
        const maxMs = args.named.has('max') ? durationMs(args.named.get('max') as string) : WAIT_MAX_MS;
        let reason = this.#unmet(condition, nodes);
        const deadline = world.scheduler.now() + maxMs;
        while (reason !== '' && world.scheduler.now() < deadline) {
          await this.#runFor(100);
          reason = this.#unmet(condition, nodes);
        }
        const what = [condition, ...p.slice(1)].join(' ');
        return [reason === '' ? what : `not ${what} after ${maxMs / 1000} s: ${reason}`];
      }
      case 'cut':
        for (const [a, b] of this.#links(args)) world.network.cut(a, b);
        return this.#cuts();
      case 'partition': {
        const bar = p.indexOf('|');
        if (bar <= 0 || bar === p.length - 1) throw new ScriptError(`${args.where}: partition A B | C D`);
        world.network.partition(p.slice(0, bar).map(addressOf), p.slice(bar + 1).map(addressOf));
        return this.#cuts();
      }
      case 'isolate': {
        const node = this.#node(p[0], args);
        world.network.partition([node], world.allNodes().filter((n) => n !== node));
        return this.#cuts();
      }
      case 'heal':
        if (p.length === 0) world.network.heal();
        else for (const [a, b] of this.#links(args)) world.network.uncut(a, b);
        return this.#cuts();
      case 'hold': {
        const links = this.#links(args);
        if (links.length !== 1) throw new ScriptError(`${args.where}: hold A -> B`);
        const [from, to] = links[0] as [NodeAddress, NodeAddress];
        const count = args.named.get('count') ?? '1';
        world.network.hold(from, to, count === 'all' ? Infinity : Number(count), args.named.get('match') ?? '');
        return [this.#traps()];
      }
      case 'unhold':
        if (p.length === 0) world.network.unhold();
        else for (const [a, b] of this.#links(args).slice(0, 1)) world.network.unhold(a, b);
        return [this.#traps()];
      case 'held': {
        const lines = world.network.captured().map((m) => `#${m.id} ${m.from}->${m.to} ${m.what}: ${m.state}`);
        return lines.length === 0 ? ['none'] : lines;
      }
      case 'deliver': {
        const messages = this.#capturedIds(args).map((id) => world.network.deliverCaptured(id));
        const requests = messages.filter((m) => !m.what.startsWith('reply'));
        await this.#runUntil(() => requests.every((m) => m.reply !== undefined), 2_000);
        if (messages.length === 0) return ['nothing held'];
        return messages.map((m) => {
          let answer = '';
          if (m.reply !== undefined) {
            // A client route's answer in full; a node-to-node one by its status (and error), not its payload.
            const body = (m.reply.body ?? {}) as Record<string, unknown>;
            const internal = m.what.includes(' /internal/');
            answer = `, answered ${formatReply({ status: m.reply.status, body: internal ? (typeof body.error === 'string' ? { error: body.error } : {}) : body })}`;
          } else if (!m.what.startsWith('reply')) answer = ', not answered within 2 s';
          return `#${m.id} ${m.from}->${m.to} ${m.what}: delivered${answer}`;
        });
      }
      case 'drop': {
        const ids = this.#capturedIds(args);
        if (ids.length === 0) return ['nothing held'];
        return ids.map((id) => {
          const m = world.network.dropCaptured(id);
          return `#${m.id} ${m.from}->${m.to} ${m.what}: dropped`;
        });
      }
      case 'crash': {
        const node = this.#node(p[0], args);
        world.crash(node);
        return [`${node} down`];
      }
      case 'restart': {
        const node = this.#node(p[0], args);
        world.restart(node);
        return [`${node} started`];
      }
      case 'join': {
        const want = this.#node(p[0], args);
        const next = addressOf(`n${world.allNodes().length + 1}`);
        if (want !== next) throw new ScriptError(`${args.where}: the next node to join is ${named(next)}`);
        world.join();
        return [`${want} started with VIEW ${world.allNodes().join(',')}`];
      }
      case 'add-member': {
        const node = this.#node(p[0], args);
        const shard = required(p[1], args, 'shard');
        return this.#request(args, 'PUT', this.#via(args), `/shard/add-member/${encodeURIComponent(shard)}`, { 'socket-address': node });
      }
      case 'reshard':
        return this.#request(args, 'PUT', this.#via(args), '/shard/reshard', { 'shard-count': Number(required(p[0], args, 'shard count')) });
      case 'view':
        return this.#request(args, 'GET', this.#node(p[0], args), '/view', undefined);
      case 'view-add':
        return this.#request(args, 'PUT', this.#via(args), '/view', { 'socket-address': this.#node(p[0], args) });
      case 'view-delete':
        return this.#request(args, 'DELETE', this.#via(args), '/view', { 'socket-address': this.#node(p[0], args) });
      case 'shards':
        return this.#shards(args);
      case 'node-shard': {
        const lines: string[] = [];
        for (const name of p) lines.push(`${name} ${(await this.#request(args, 'GET', addressOf(name), '/shard/node-shard-id', undefined)).join(' ')}`);
        return lines;
      }
      case 'status':
        return this.#status(args);
      case 'replicas':
        return this.#replicas(args);
      case 'placement':
        return this.#placement();
      case 'store':
        throw new ScriptError(`${args.where}: store comes once, first`);
      default:
        throw new ScriptError(`${args.where}: unknown directive ${args.name}`);
    }
  }
}

function required(value: string | undefined, args: Args, what: string): string {
  if (value === undefined) throw new ScriptError(`${args.where}: ${args.name} needs a ${what}`);
  return value;
}

function kvPath(key: string | undefined, args: Args): string {
  return `/kvs/${encodeURIComponent(required(key, args, 'key'))}`;
}

// ------------------------------------------------------------------ the store directive and the run

const STORE_OPTIONS = new Set(['nodes', 'shards', 'seed', 'latency', 'hold-window']);

function storeSettings(args: Args): { seed: number; settings: Partial<WorldSettings> } {
  for (const key of args.named.keys()) {
    if (!STORE_OPTIONS.has(key) && !/^[A-Z][A-Z0-9_]*$/.test(key)) throw new ScriptError(`${args.where}: unknown store option ${key}`);
  }
  const nodes = Number(args.named.get('nodes') ?? 3);
  const shards = Number(args.named.get('shards') ?? 0);
  const seed = Number(args.named.get('seed') ?? 1);
  const [min, max] = (args.named.get('latency') ?? '0.2-2').split('-').map(Number) as [number, number];
  const env: Record<string, string> = { CLUSTER_SECRET: 'sim-script-secret-0123456789' };
  for (const [key, value] of args.named) if (/^[A-Z][A-Z0-9_]*$/.test(key)) env[key] = value;
  return {
    seed,
    settings: {
      nodes,
      shards,
      clients: 0,
      faults: [],
      network: { latencyMs: [min, max], lossRate: 0, duplicateRate: 0, holdMsMax: Number(args.named.get('hold-window') ?? 10_000), connectTimeoutMs: 500 },
      nodeEnv: env,
      fsyncMs: [0.05, 0.5],
    },
  };
}

/** Boots: runs until every node is ready and lists every other; prints the shard map. */
async function boot(world: World): Promise<string> {
  const nodes = world.allNodes();
  const deadline = world.scheduler.now() + WAIT_MAX_MS;
  const up = (): boolean =>
    nodes.every((node) => {
      const core = world.nodes().get(node)?.core;
      return core !== undefined && core.ready && nodes.every((n) => core.view().includes(n));
    });
  while (!up()) {
    if (world.scheduler.now() >= deadline) throw new Error('the store did not start within 30 simulated seconds');
    await world.advance(50);
  }
  const map = world.nodes().get(nodes[0] as NodeAddress)?.core.map;
  if (!map) throw new Error('no map');
  const lines = [`${map.mode} epoch ${map.epoch}`, ...shardIds(map).map((id) => `${id}: ${(membersOf(map, id) ?? []).join(' ')}`)];
  return named(lines.join('\n'));
}

export interface ScenarioRun {
  file: ScenarioFile;
  /** What each block printed. */
  outputs: string[];
  /** The file with the outputs in place (what REWRITE=1 writes). */
  text: string;
}

export interface ScenarioOptions {
  /** JSON log lines of every node (level debug, with simulated time), to this function. */
  log?: (line: string) => void;
}

/** Runs a scenario's text; `name` is for messages. Throws on a malformed script or errors inside nodes. */
export async function runScenario(text: string, name = 'scenario', options: ScenarioOptions = {}): Promise<ScenarioRun> {
  const file = parseScenario(text);
  const [first, ...rest] = file.blocks;
  if (first === undefined) throw new Error(`${name}: no directives`);
  const storeArgs = parseArgs(first, name);
  if (storeArgs.name !== 'store') throw new Error(`${name}:${first.line}: the first directive must be store`);
  const { seed, settings } = storeSettings(storeArgs);
  const world = new World({ seed, settings, ...(options.log ? { log: options.log } : {}) });
  const outputs: string[] = [];
  await world.script(async () => {
    outputs.push(await boot(world));
    const interpreter = new Interpreter(world, name);
    for (const block of rest) outputs.push(await interpreter.run(parseArgs(block, name)));
  });
  return { file, outputs, text: formatScenario(file, outputs) };
}
