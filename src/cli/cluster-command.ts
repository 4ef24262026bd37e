// `kvs cluster`: a local store of several node processes, run until Ctrl-C, with a small control
// prompt on stdin (restart, stop, kill, start a node; list them) and SIGUSR2 for a rolling restart.

import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { styleText } from 'node:util';
import { Option, type Command } from 'commander';
import type { NodeAddress } from '../client/client.ts';
import { portsInUse, startLocalCluster, type LocalCluster } from './local-cluster.ts';

/** Where `kvs cluster` keeps the secret it generated, in its data folder. */
const SECRET_FILE = 'cluster-secret';
/** `kvs cluster` gives up when the nodes are not all ready by then; also the bound on one restart. */
const CLUSTER_READY_TIMEOUT_MS = 30_000;

type ClusterOptions = {
  nodes: number;
  shards: number;
  host: string;
  basePort: number;
  dataDir: string | false;
  clusterSecret?: string;
  adminToken?: string;
  logFormat: string;
};

/** The secret a previous run generated in `dataRoot`, or a new one (written there, readable by the owner only). */
function generatedSecret(dataRoot: string | null): string {
  if (dataRoot !== null) {
    const file = join(dataRoot, SECRET_FILE);
    try {
      const kept = readFileSync(file, 'utf8').trim();
      if (kept.length >= 16) return kept;
    } catch {
      // None yet.
    }
    const secret = randomBytes(32).toString('hex');
    mkdirSync(dataRoot, { recursive: true });
    writeFileSync(file, `${secret}\n`, { mode: 0o600 });
    return secret;
  }
  return randomBytes(32).toString('hex');
}

export const CONTROL_HELP = [
  'kvs cluster commands (type one and Enter; N is a node number 1.., a port or an address):',
  '  nodes        list the nodes, running or not, with their process ids',
  '  restart N    stop node N (SIGTERM) and start it again, as a rolling upgrade would',
  '  stop N       stop node N (SIGTERM); it stays down until `start N`',
  '  kill N       kill node N (SIGKILL), as a crash would',
  '  start N      start node N again',
  '  help         this list',
  'SIGUSR2 (kill -USR2 <pid of kvs cluster>) restarts every node, one after another. Ctrl-C stops them all.',
].join('\n');

export function registerClusterCommand(program: Command, parsePositiveInteger: (text: string) => number, parseNonNegativeInteger: (text: string) => number): void {
  program
    .command('cluster')
    .description('run a local store of several node processes until Ctrl-C; type `help` for the control commands (restart a node, ...)')
    .option('--nodes <n>', 'number of nodes', parsePositiveInteger, 6)
    .option('--shards <n>', 'number of shards (0: one replicated shard, no SHARD_COUNT)', parseNonNegativeInteger, 2)
    .option('--host <ip>', 'address the nodes listen on and announce', '127.0.0.1')
    .option('--base-port <n>', 'port of the first node; the others follow', parsePositiveInteger, 8090)
    .option('--data-dir <dir>', 'where the nodes keep their data (one folder each)', 'data')
    .option('--no-data-dir', 'keep everything in memory')
    .addOption(new Option('--log-format <format>', "the nodes' log lines: json (for machines) or pretty (for people)").choices(['json', 'pretty']).default('json').env('LOG_FORMAT'))
    .addOption(new Option('--cluster-secret <list>', "the nodes' CLUSTER_SECRET (default: a random one for this run)").env('CLUSTER_SECRET'))
    .addOption(new Option('--admin-token <token>', "the nodes' ADMIN_TOKEN: clients' topology changes then need it (default: none)").env('ADMIN_TOKEN'))
    .action(runCluster);
}

async function runCluster(options: ClusterOptions): Promise<void> {
  // Before anything starts: a taken port would make its node exit, or let another store answer
  // in its place.
  const ports = Array.from({ length: options.nodes }, (_, i) => options.basePort + i);
  const taken = await portsInUse(options.host, ports);
  if (taken.length > 0) {
    throw new Error(
      `port${taken.length === 1 ? '' : 's'} ${taken.join(', ')} on ${options.host} ${taken.length === 1 ? 'is' : 'are'} already in use ` +
        `(another store running?); stop it, or choose other ports with --base-port`,
    );
  }
  // The nodes always share a secret: one given, or a random one (printed nowhere) kept in the
  // data folder, so a restarted cluster takes the metadata its clients hold.
  const givenSecret = options.clusterSecret?.trim() ?? '';
  const clusterSecret = givenSecret !== '' ? givenSecret : generatedSecret(options.dataDir === false ? null : options.dataDir);
  const adminToken = options.adminToken?.trim() ?? '';
  const nodeEnv: Record<string, string> = { CLUSTER_SECRET: clusterSecret, LOG_FORMAT: options.logFormat, ...(adminToken !== '' ? { ADMIN_TOKEN: adminToken } : {}) };
  if (givenSecret === '') {
    const where = options.dataDir === false ? 'for this run' : `kept in ${join(options.dataDir, SECRET_FILE)}`;
    console.log(`kvs cluster: the nodes run with a generated cluster secret, ${where} (give --cluster-secret or CLUSTER_SECRET to choose one)`);
  }
  const colors = ['cyan', 'magenta', 'yellow', 'green', 'blue', 'red'] as const;
  const colorOf = (address: NodeAddress) => colors[(Number(address.split(':').at(-1)) - options.basePort) % colors.length]!;
  const cluster = startLocalCluster({
    nodeCount: options.nodes,
    shardCount: options.shards,
    host: options.host,
    basePort: options.basePort,
    env: nodeEnv,
    ...(options.dataDir === false ? {} : { dataRoot: options.dataDir }),
    onLogLine: (address, line) => console.log(`${styleText(colorOf(address), address)} | ${line}`),
    onUnexpectedExit: (address, description) => {
      console.error(styleText('red', `kvs cluster: node ${address} ${description} (\`start ${address}\` starts it again)`));
      // The children are what keeps this process alive; without any, say so rather than end quietly with 0.
      if (cluster.running().length === 0) {
        console.error('kvs cluster: every node has exited');
        process.exit(1);
      }
    },
  });

  let signals = 0;
  const onSignal = () => {
    signals += 1;
    if (signals > 1) {
      cluster.kill();
      process.exit(1);
    }
    console.error('kvs cluster: stopping every node (Ctrl-C again to kill them)');
    void cluster.stop().then(() => process.exit(0));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // The terminal went away: nobody is left to Ctrl-C the nodes.
  process.on('SIGHUP', onSignal);

  try {
    await cluster.waitReady(CLUSTER_READY_TIMEOUT_MS);
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  const first = cluster.addresses[0]!;
  console.log(
    [
      '',
      `kvs cluster: ${options.nodes} nodes ready, ${options.shards === 0 ? 'replicated (one shard)' : `${options.shards} shard${options.shards === 1 ? '' : 's'}`}:`,
      ...cluster.addresses.map((address) => `  ${address}`),
      'try:',
      `  curl -X PUT -H 'content-type: application/json' -d '{"value": "hello", "causal-metadata": null}' http://${first}/kvs/greeting`,
      `  npx kvs get greeting --nodes ${first}`,
      ...(adminToken !== '' ? ['Topology changes (PUT and DELETE /view, add-member, reshard) need the admin token: kvs reshard and kvs add-member take --admin-token or KVS_ADMIN_TOKEN.'] : []),
      'Type `help` for the control commands (restart a node, ...). Ctrl-C stops the cluster.',
      '',
    ].join('\n'),
  );
  const control = new ClusterControl(cluster, options.basePort);
  process.on('SIGUSR2', () => control.submit('restart-all'));
  createInterface({ input: process.stdin, crlfDelay: Infinity }).on('line', (line) => control.submit(line));
  // The children keep this process alive; the signal handlers end it.
}

/** The control commands, carried out one at a time in the order they came. */
export class ClusterControl {
  private readonly cluster: LocalCluster;
  private readonly basePort: number;
  private queue: Promise<void> = Promise.resolve();

  constructor(cluster: LocalCluster, basePort: number) {
    this.cluster = cluster;
    this.basePort = basePort;
  }

  submit(line: string): void {
    this.queue = this.queue.then(() => this.run(line.trim())).catch((err: unknown) => {
      console.error(`kvs cluster: ${err instanceof Error ? err.message : String(err)}`);
    });
  }

  private async run(line: string): Promise<void> {
    if (line === '') return;
    const [verb, target] = line.split(/\s+/);
    const cluster = this.cluster;
    if (verb === 'help') return void console.log(CONTROL_HELP);
    if (verb === 'nodes') {
      const running = new Set(cluster.running());
      return void console.log(cluster.addresses.map((address, i) => `  ${i + 1}  ${address}  ${running.has(address) ? 'running' : 'stopped'}`).join('\n'));
    }
    if (verb === 'restart-all') {
      console.log('kvs cluster: restarting every node, one after another');
      for (const address of cluster.addresses) await this.restart(address);
      return void console.log('kvs cluster: every node restarted');
    }
    if (verb !== 'restart' && verb !== 'stop' && verb !== 'kill' && verb !== 'start') {
      throw new Error(`unknown command ${JSON.stringify(line)}; type help`);
    }
    const address = this.addressOf(target);
    if (verb === 'restart') return this.restart(address);
    if (verb === 'start') {
      await cluster.startNode(address, CLUSTER_READY_TIMEOUT_MS);
      return void console.log(`kvs cluster: node ${address} started, ready`);
    }
    if (verb === 'stop') await cluster.stopNode(address);
    else await cluster.killNode(address);
    console.log(`kvs cluster: node ${address} ${verb === 'stop' ? 'stopped' : 'killed'} (\`start ${address}\` starts it again)`);
  }

  private async restart(address: NodeAddress): Promise<void> {
    await this.cluster.stopNode(address);
    await this.cluster.startNode(address, CLUSTER_READY_TIMEOUT_MS);
    console.log(`kvs cluster: node ${address} restarted, ready`);
  }

  /** A node by number (1..), port or address. */
  private addressOf(target: string | undefined): NodeAddress {
    const addresses = this.cluster.addresses;
    if (target === undefined) throw new Error('which node? give its number (1..), port or address');
    if (addresses.includes(target)) return target;
    if (/^\d+$/.test(target)) {
      const n = Number(target);
      if (n >= 1 && n <= addresses.length) return addresses[n - 1]!;
      const byPort = addresses[n - this.basePort];
      if (byPort !== undefined) return byPort;
    }
    throw new Error(`no node ${target}: give a number 1..${addresses.length}, a port or an address (${addresses.join(', ')})`);
  }
}
