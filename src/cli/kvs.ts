#!/usr/bin/env node
// The `kvs` command: run a node, run a local cluster, and talk to a store (get, put, delete,
// view, shards, reshard, add-member, status). Client commands print JSON on stdout; errors go to
// stderr with exit code 1.

import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { KvsClient, isKvsError } from '../client/client.ts';
import type { JsonValue } from '../client/client.ts';
import { VERSION } from '../node/version.ts';
import { registerClusterCommand } from './cluster-command.ts';
import { defaultSessionFile, readMetadata, withFileLock, writeMetadata } from './session-file.ts';
import { allUp, planTable, progressLine, statusTable } from './operator.ts';

/** What a command prints as it is, not as JSON (tables for people). */
class Text {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
}

const defaultNodes = '127.0.0.1:8090';
/** How often `kvs reshard` asks for the reshard's progress. */
const RESHARD_POLL_MS = 500;
/** `kvs status`: the exit code when a node of the store is down, on probation or not ready. */
const STATUS_NOT_ALL_UP = 2;
/** How long a command waits for another one using the same session file to finish. */
const SESSION_LOCK_WAIT_MS = 60_000;

const program = new Command()
  .name('kvs')
  .description('A sharded, replicated, causally consistent key-value store')
  .version(VERSION, '-V, --version', 'print the version and exit')
  .showHelpAfterError();

// ---- kvs node ------------------------------------------------------------------------------

// Flag -> environment variable of README's "Configuration"; a flag wins over the variable.
const nodeFlags = [
  { flag: '--address <ip:port>', key: 'address', env: 'SOCKET_ADDRESS', help: "this node's own address" },
  { flag: '--view <a,b,c>', key: 'view', env: 'VIEW', help: 'every node the store starts with, this one included (default: this node alone)' },
  { flag: '--shard-count <n>', key: 'shardCount', env: 'SHARD_COUNT', help: 'shards, for the nodes that start a sharded store', integer: true },
  { flag: '--port <n>', key: 'port', env: 'PORT', help: 'port to listen on (default: the port of --address)', integer: true },
  { flag: '--listen-host <ip>', key: 'listenHost', env: 'LISTEN_HOST', help: 'interface to listen on (default 0.0.0.0)' },
  { flag: '--causal-wait-ms <n>', key: 'causalWaitMs', env: 'CAUSAL_WAIT_MS', help: 'wait for missing dependencies before 503', integer: true },
  { flag: '--hold-down-ms <n>', key: 'holdDownMs', env: 'HOLD_DOWN_MS', help: 'after a link fails, no data crosses it until it answers probes this long (a removed node is re-admitted after the same)', integer: true },
  { flag: '--log-level <level>', key: 'logLevel', env: 'LOG_LEVEL', help: 'trace, debug, info (default), warn, error, fatal or silent' },
  { flag: '--log-format <format>', key: 'logFormat', env: 'LOG_FORMAT', help: 'json (default: one object per line, for machines) or pretty (for people)' },
  { flag: '--data-dir <dir>', key: 'dataDir', env: 'DATA_DIR', help: 'persist what this node acknowledges there (default: in memory)' },
  { flag: '--cluster-secret <list>', key: 'clusterSecret', env: 'CLUSTER_SECRET', help: 'secrets shared by the nodes, comma-separated, each at least 16 characters: requests between nodes are signed with the first and accepted with any (prefer the variable: flags show in ps)' },
  { flag: '--admin-token <token>', key: 'adminToken', env: 'ADMIN_TOKEN', help: "clients' topology changes (PUT and DELETE /view, add-member, reshard) then need Authorization: Bearer <token>; at least 16 characters (prefer the variable: flags show in ps)" },
] as const;

const nodeCommand = program.command('node').description('run one node in this process (flags override the environment)');
for (const { flag, help, ...rest } of nodeFlags) {
  if ('integer' in rest) nodeCommand.option(flag, help, parseNonNegativeInteger);
  else nodeCommand.option(flag, help);
}
nodeCommand.action(async (options: Record<string, string | number | undefined>) => {
  const env: Record<string, string | undefined> = { ...process.env };
  for (const { key, env: name } of nodeFlags) {
    const value = options[key];
    if (value !== undefined) env[name] = String(value);
  }
  if (env.SOCKET_ADDRESS === undefined) throw new Error('node: give --address (or SOCKET_ADDRESS)');
  // Loaded only here, so the client commands neither pay for nor depend on the node's code.
  const { main } = await import('../node/main.ts');
  await main(env);
});

// ---- kvs cluster ---------------------------------------------------------------------------

registerClusterCommand(program, parsePositiveInteger, parseNonNegativeInteger);

// ---- client commands -----------------------------------------------------------------------

type ClientOptions = { nodes: string; metaFile?: string | false; lockWaitMs: number; timeoutMs: number; adminToken?: string; ca?: string };

/**
 * A command that speaks to the store as a client. Every one takes the session options, so a script
 * may pass them to any; only get, put and delete read and write the session (`withSession`).
 */
function clientCommand(name: string, description: string): Command {
  return program
    .command(name)
    .description(description)
    .addOption(new Option('--nodes <a,b>', 'nodes to talk to, in order of preference').env('KVS_NODES').default(defaultNodes))
    .addOption(
      new Option('--meta-file <file>', 'the session file: get, put and delete read and write the causal metadata here, chaining successive commands (default: one file per --nodes list under ~/.kvs/sessions)').env(
        'KVS_META_FILE',
      ),
    )
    .option('--no-meta-file', 'start a fresh session and keep nothing')
    .option('--lock-wait-ms <n>', 'bound on waiting for other commands using the same session file', parsePositiveInteger, SESSION_LOCK_WAIT_MS)
    .option('--timeout-ms <n>', 'bound on each request to each node', parsePositiveInteger, 5_000)
    .addOption(new Option('--ca <file>', "a store with TLS: speak HTTPS, trusting this CA certificate (PEM)").env('KVS_CA'));
}

/** A client command that changes the topology: it may need the store's admin token. */
function adminCommand(name: string, description: string): Command {
  return clientCommand(name, description).addOption(
    new Option('--admin-token <token>', "the store's ADMIN_TOKEN, for nodes that have one (prefer the variable: flags show in ps)").env('KVS_ADMIN_TOKEN'),
  );
}

/** The nodes of --nodes, in order. */
function nodesOf(options: ClientOptions): string[] {
  return options.nodes.split(',').map((node) => node.trim()).filter((node) => node !== '');
}

/** The CA certificate of --ca (KVS_CA), read. */
function caOf(options: ClientOptions): Buffer | undefined {
  return options.ca?.trim() ? readFileSync(options.ca.trim()) : undefined;
}

/** The session file of a command (null: --no-meta-file). */
function sessionFileOf(options: ClientOptions): string | null {
  if (options.metaFile === false) return null;
  return options.metaFile ?? defaultSessionFile(nodesOf(options));
}

/** Runs a command that needs no session (no causal metadata sent, none kept). Prints JSON, or a Text as it is. */
function withClient(options: ClientOptions, run: (client: KvsClient) => Promise<unknown>): Promise<void> {
  return runClient(options, null, run);
}

// Runs a key-value command under the session file's lock, in the session restored from it, and
// saves the session afterwards (even after an error: an earlier request of the command may have
// moved it forward).
async function withSession(options: ClientOptions, run: (client: KvsClient) => Promise<unknown>): Promise<void> {
  const file = sessionFileOf(options);
  if (file === null) return runClient(options, null, run);
  await withFileLock(file, options.lockWaitMs, () => runClient(options, file, run));
}

async function runClient(options: ClientOptions, file: string | null, run: (client: KvsClient) => Promise<unknown>): Promise<void> {
  const nodes = nodesOf(options);
  const metadata = file === null ? null : await readMetadata(file);
  const adminToken = options.adminToken?.trim() || undefined;
  const ca = caOf(options);
  const client = new KvsClient({ nodes, timeoutMs: options.timeoutMs, metadata, ...(adminToken !== undefined ? { adminToken } : {}), ...(ca !== undefined ? { tls: { ca } } : {}) });
  try {
    const out = await run(client);
    console.log(out instanceof Text ? out.text : JSON.stringify(out, null, 2));
  } catch (err) {
    if (isKvsError(err, 'causal_unavailable') && file !== null) {
      err.message += `\n(if the store was restarted since, ${file} is stale: delete it or pass --no-meta-file)`;
    }
    if (isKvsError(err, 'unauthorized')) {
      err.message += `\n(${adminToken === undefined ? 'the store has an admin token: give --admin-token or KVS_ADMIN_TOKEN' : 'the admin token given is not the store\'s'})`;
    }
    throw err;
  } finally {
    await client.close();
    if (file !== null && client.metadata !== metadata) await writeMetadata(file, client.metadata);
  }
}

clientCommand('get', 'read a key')
  .argument('<key>')
  .action((key: string, options: ClientOptions) => withSession(options, (client) => client.get(key)));

clientCommand('put', 'write a key (VALUE is parsed as JSON when it parses, else taken as a string)')
  .argument('<key>')
  .argument('<value>')
  .action((key: string, value: string, options: ClientOptions) => withSession(options, (client) => client.put(key, parseValue(value))));

clientCommand('delete', 'delete a key')
  .argument('<key>')
  .action((key: string, options: ClientOptions) => withSession(options, (client) => client.delete(key)));

clientCommand('view', 'list the nodes in the view').action((options: ClientOptions) =>
  withClient(options, async (client) => ({ view: await client.view() })),
);

clientCommand('shards', 'list the shards with their members, key counts and the members that are down').action((options: ClientOptions) =>
  withClient(options, async (client) => {
    const store = await client.storeStatus();
    const down = new Set(store.nodes.filter((n) => n.state === 'down').map((n) => n.address));
    return {
      shards: store.shards.map((shard) => ({
        id: shard.id,
        members: shard.members,
        keyCount: shard.keys,
        down: shard.members.filter((member) => down.has(member)),
      })),
    };
  }),
);

adminCommand('reshard', 'reassign every node of the view to COUNT shards, showing its progress on stderr')
  .argument('<count>', 'number of shards', parsePositiveInteger)
  .option('--plan', 'print what would move (partitions and keys per shard, before and after) and move nothing')
  .option('--json', 'with --plan: the plan as JSON')
  .action((count: number, options: ClientOptions & { plan?: boolean; json?: boolean }) =>
    withClient(options, async (client) => {
      if (options.plan) {
        const plan = await client.reshardPlan(count);
        return options.json ? plan : new Text(planTable(plan));
      }
      const watcher = watchReshard(options);
      try {
        await client.reshard(count);
      } catch (err) {
        if (isKvsError(err, 'timeout')) {
          err.message +=
            '\n(the reshard was asked for and may still be running: watch it with `kvs status`, which shows its progress, or GET /status/store; a second reshard is refused while it runs)';
        }
        throw err;
      } finally {
        await watcher.stop();
      }
      return { result: 'resharded', shardIds: await client.shardIds() };
    }),
  );

/**
 * While a reshard runs: its progress from GET /status/store, on stderr (a bar redrawn in place on
 * a terminal, otherwise a line whenever the phase or a count changes). A separate client, so the session's metadata is untouched.
 */
function watchReshard(options: ClientOptions): { stop(): Promise<void> } {
  const nodes = nodesOf(options);
  const ca = caOf(options);
  const watcher = new KvsClient({ nodes, timeoutMs: Math.min(options.timeoutMs, 2_000), metadata: null, ...(ca !== undefined ? { tls: { ca } } : {}) });
  const tty = process.stderr.isTTY === true;
  let last = '';
  let drawn = false;
  const poll = async () => {
    const progress = await watcher.storeStatus().then((store) => store.reshard, () => null);
    if (progress === null) return;
    if (tty) {
      process.stderr.write(`\r${progressLine(progress)}`);
      drawn = true;
    } else {
      // Off a terminal: a line when something but the clock moved.
      const state = `${progress.phase} ${progress.partitionsMoved} ${progress.keysMoved} ${progress.keysTotal}`;
      if (state !== last) process.stderr.write(`${progressLine(progress)}\n`);
      last = state;
    }
  };
  let polling = Promise.resolve();
  const timer = setInterval(() => {
    polling = polling.then(poll);
  }, RESHARD_POLL_MS);
  return {
    async stop() {
      clearInterval(timer);
      await polling;
      if (drawn) process.stderr.write('\n');
      await watcher.close();
    },
  };
}

adminCommand('add-member', 'add node ADDR (already in the view) to shard SHARD')
  .argument('<shard>')
  .argument('<addr>')
  .action((shard: string, address: string, options: ClientOptions) =>
    withClient(options, async (client) => {
      await client.addMember(shard, address);
      return { result: 'node added to shard', shard, members: await client.shardMembers(shard) };
    }),
  );

clientCommand('status', 'a table of every node of the store (found through the view and the shard map, so a dead node is listed); exits 0 only when every node is up and ready')
  .option('--json', 'GET /status/store as JSON, for machines')
  .action((options: ClientOptions & { json?: boolean }) =>
    withClient(options, async (client) => {
      const store = await client.storeStatus();
      if (!allUp(store)) process.exitCode = STATUS_NOT_ALL_UP;
      return options.json ? store : new Text(statusTable(store));
    }),
  );

// ---- helpers -------------------------------------------------------------------------------

function parseValue(text: string): JsonValue {
  try {
    return JSON.parse(text) as JsonValue;
  } catch {
    return text;
  }
}

function parseNonNegativeInteger(text: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value)) throw new InvalidArgumentError('not a non-negative integer');
  return value;
}

function parsePositiveInteger(text: string): number {
  const value = parseNonNegativeInteger(text);
  if (value === 0) throw new InvalidArgumentError('must be at least 1');
  return value;
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  const message = isKvsError(err) ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err);
  console.error(`kvs: ${message}`);
  process.exit(1);
}

