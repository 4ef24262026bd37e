// What an operator sees: GET /status/store and `kvs status` list every node of the store (a dead
// one too, as down) and exit non-zero until every node is up; `kvs shards` marks down members;
// `kvs reshard --plan` says what would move without moving it, and the reshard then moves exactly
// that; a running reshard shows its progress in /status/store; a client-side timeout says the
// reshard may still be running.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { resolve } from 'node:path';
import { NotYet, pollUntil } from '../helpers/cluster.ts';
import { Client, call, getKeyCount, readShardLayout, type NodeAddress } from '../helpers/http.ts';
import { portsFor } from '../helpers/ports.ts';
import { useCluster } from '../helpers/store.ts';

const ports = portsFor(import.meta.url);
const NODE_COUNT = 6;
const KEY_COUNT = 300;
const KVS = resolve(import.meta.dirname, '../../src/cli/kvs.ts');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** The `kvs` command, as a user runs it (no session file); `stderr()` reads what it wrote so far. */
function kvsRunning(args: string[], env: Record<string, string> = {}): { done: Promise<Run>; stderr(): string } {
  let stderr = '';
  const done = new Promise<Run>((finish) => {
    const child = execFile(process.execPath, [KVS, ...args, '--no-meta-file'], { env: { ...process.env, ...env }, timeout: 60_000 }, (error, stdout) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
      finish({ code, stdout, stderr });
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
  });
  return { done, stderr: () => stderr };
}

/**
 * A TCP proxy to `target` that relays everything, except what the store answers on a connection
 * that carried a `PUT /shard/reshard`: from then on that connection's answers are dropped.
 */
async function muteReshardAnswers(target: NodeAddress): Promise<{ address: NodeAddress; muted(): number; close(): Promise<void> }> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  let muted = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(port, host);
    sockets.add(client).add(upstream);
    let mute = false;
    client.on('data', (chunk: Buffer) => {
      if (!mute && chunk.toString('latin1').includes('PUT /shard/reshard')) {
        mute = true;
        muted++;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!mute) client.write(chunk);
    });
    for (const [a, b] of [[client, upstream], [upstream, client]] as const) {
      a.on('error', () => b.destroy());
      a.on('close', () => b.destroy());
    }
  });
  await new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening));
  const { port: proxyPort } = server.address() as AddressInfo;
  return {
    address: `127.0.0.1:${proxyPort}` as NodeAddress,
    muted: () => muted,
    close: () =>
      new Promise<void>((closed) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => closed());
      }),
  };
}

function kvs(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return kvsRunning(args, env).done;
}

describe('operators: store status, shards, reshard plan and progress', () => {
  // A reshard waits this long for a node that does not answer its prepare (the test pauses one).
  const store = useCluster({ ports, nodeCount: NODE_COUNT, shardCount: 2, extraEnv: { RESHARD_TIMEOUT_MS: '8000', ADMIN_TOKEN: 'operator-test-token-0123456789' } });
  const admin = { KVS_ADMIN_TOKEN: 'operator-test-token-0123456789' };

  /**
   * Writes the keys in one session. A node that another test stopped may still be catching up
   * (its links held for the hold-down): a write there can get 503 while it lacks what the session
   * depends on, and is tried again, as a client would, within a deadline.
   */
  async function load(): Promise<void> {
    const client = new Client();
    for (let i = 0; i < KEY_COUNT; i++) {
      await pollUntil(`PUT op-${i}`, async () => {
        const r = await client.put(store.nodes[i % NODE_COUNT]!, `op-${i}`, i);
        if (r.status === 503) throw new NotYet(r.text);
        assert.ok(r.status === 201 || r.status === 200, r.text);
      }, { timeoutMs: 15_000 });
    }
  }

  test('kvs status: one row per node, exit 0 when all are up; a killed node is listed as down and the exit is 2; kvs shards marks it', async () => {
    await store.cluster.ensureRunning();
    // The whole store, every node in every view (a node stopped by another test is back only after the hold-down).
    await store.cluster.waitForViews(store.nodes, { timeoutMs: 20_000 });
    const nodes = store.nodes;
    const all = await pollUntil('every node up in kvs status', async () => {
      const run = await kvs(['status', '--nodes', nodes[0]!]);
      if (run.code !== 0) throw new NotYet(run.stdout + run.stderr);
      return run;
    }, { timeoutMs: 20_000 });
    for (const node of nodes) assert.match(all.value.stdout, new RegExp(`^${node.replace(/\./g, '\\.')}\\s+s\\d\\s+up\\s`, 'm'), all.value.stdout);
    assert.match(all.value.stdout, /every node is up and ready/);

    const victim = nodes[NODE_COUNT - 1]!;
    await store.cluster.kill(victim);
    const down = await pollUntil(`kvs status lists ${victim} as down`, async () => {
      const run = await kvs(['status', '--nodes', nodes[0]!, '--json']);
      const parsed = JSON.parse(run.stdout) as { nodes: { address: NodeAddress; state: string; keys: number | null }[] };
      const row = parsed.nodes.find((n) => n.address === victim);
      if (row?.state !== 'down') throw new NotYet(run.stdout);
      return { run, parsed };
    }, { timeoutMs: 15_000 });
    assert.equal(down.value.run.code, 2, 'a node down: kvs status exits 2');
    assert.deepEqual(down.value.parsed.nodes.map((n) => n.address).sort(), [...nodes].sort(), 'the dead node is still listed');
    assert.equal(down.value.parsed.nodes.find((n) => n.address === victim)?.keys, null, 'what only the dead node knows is unknown');
    const table = await kvs(['status', '--nodes', nodes[0]!]);
    assert.equal(table.code, 2);
    assert.match(table.stdout, new RegExp(`^${victim.replace(/\./g, '\\.')}\\s+s\\d\\s+down\\s`, 'm'), table.stdout);
    const shards = JSON.parse((await kvs(['shards', '--nodes', nodes[0]!])).stdout) as { shards: { members: string[]; down: string[] }[] };
    const withVictim = shards.shards.find((s) => s.members.includes(victim));
    assert.deepEqual(withVictim?.down, [victim]);
    assert.ok(shards.shards.filter((s) => s !== withVictim).every((s) => s.down.length === 0));
    await store.cluster.ensureRunning();
  });

  test('kvs reshard --plan moves nothing, and the reshard then moves what it said; progress shows in /status/store while it runs', async () => {
    await store.cluster.ensureRunning();
    // The whole store, every node in every view (a node stopped by another test is back only after the hold-down).
    await store.cluster.waitForViews(store.nodes, { timeoutMs: 20_000 });
    const nodes = store.nodes;
    await load();
    const before = await readShardLayout(nodes[0]!);
    // A reshard that moves something, whichever test ran before.
    const target = before.ids.length === 2 ? 3 : 2;
    const planRun = await kvs(['reshard', String(target), '--plan', '--json', '--nodes', nodes[1]!]);
    assert.equal(planRun.code, 0, planRun.stderr);
    const plan = JSON.parse(planRun.stdout) as { after: { id: string; keys: number }[]; before: { id: string; keys: number }[]; partitionsMoving: number; keysMoving: number };
    assert.deepEqual(await readShardLayout(nodes[0]!), before, 'a plan changes nothing');
    for (const side of plan.before) assert.equal(side.keys, await getKeyCount(nodes[0]!, side.id), `plan: keys of ${side.id} now`);
    assert.ok(plan.partitionsMoving > 0 && plan.keysMoving > 0, planRun.stdout);
    const text = await kvs(['reshard', String(target), '--plan', '--nodes', nodes[1]!]);
    assert.match(text.stdout, /a plan: nothing has moved/);

    // One node does not answer (stopped): the coordinator waits for its prepare, and meanwhile the
    // reshard shows in /status/store with what it will move.
    const paused = nodes[NODE_COUNT - 1]!;
    store.cluster.node(paused).proc!.kill('SIGSTOP');
    try {
      const resharding = kvsRunning(['reshard', String(target), '--nodes', nodes[1]!, '--timeout-ms', '30000'], admin);
      const seen = await pollUntil('the reshard in /status/store', async () => {
        const r = await call('GET', nodes[2]!, '/status/store');
        const reshard = (r.body as { reshard: Record<string, unknown> | null }).reshard;
        if (reshard === null) throw new NotYet('no reshard yet');
        // The keys to move are known once a member of each shard has sent its counts.
        if (reshard.keysTotal === null) throw new NotYet(`keys not counted yet: ${JSON.stringify(reshard)}`);
        return reshard;
      }, { timeoutMs: 6_000, intervalMs: 50 });
      assert.equal(seen.value.phase, 'prepare');
      assert.equal(seen.value.coordinator, nodes[1]);
      assert.equal(seen.value.partitionsTotal, plan.partitionsMoving);
      assert.equal(seen.value.keysTotal, plan.keysMoving);
      assert.equal(seen.value.partitionsMoved, 0);
      // The command shows the progress on stderr while it waits (off a terminal, a line whenever the phase or a count changes).
      const line = new RegExp(`reshard to ${target} shards \\[\\.+\\] prepare: 0/${plan.partitionsMoving} partitions, 0/${plan.keysMoving} keys`);
      await pollUntil('kvs reshard prints its progress', async () => {
        if (!line.test(resharding.stderr())) throw new NotYet(resharding.stderr());
      }, { timeoutMs: 5_000, intervalMs: 50 });
      store.cluster.node(paused).proc!.kill('SIGCONT');
      const done = await resharding.done;
      assert.equal(done.code, 0, done.stderr);
      assert.equal(JSON.parse(done.stdout).result, 'resharded');

    } finally {
      store.cluster.node(paused).proc?.kill('SIGCONT');
    }
    // The keys went where the plan said.
    await pollUntil('key counts as planned', async () => {
      for (const side of plan.after) {
        const count = await getKeyCount(nodes[0]!, side.id);
        if (count !== side.keys) throw new NotYet(`${side.id}: ${count}, planned ${side.keys}`);
      }
    }, { timeoutMs: 20_000 });
    // No reshard shown once it ended (an answer may be reused for STORE_STATUS_FRESH_MS).
    await pollUntil('no reshard in /status/store', async () => {
      const after = await call('GET', nodes[2]!, '/status/store');
      if ((after.body as { reshard: unknown }).reshard !== null) throw new NotYet(after.text);
    }, { timeoutMs: 5_000 });
  });

  test('kvs reshard: a client-side timeout says the reshard may still be running and how to watch it', async () => {
    await store.cluster.ensureRunning();
    // The whole store, every node in every view (a node stopped by another test is back only after the hold-down).
    await store.cluster.waitForViews(store.nodes, { timeoutMs: 20_000 });
    const nodes = store.nodes;
    // A reshard that moves something, whichever test ran before.
    const target = (await readShardLayout(nodes[0]!)).ids.length === 2 ? 3 : 2;
    // The command reaches the store through a proxy that never relays the answer to the reshard: its
    // client-side timeout comes whatever the reshard's speed. (Pausing a node to slow the reshard
    // raced the failure detector: a node found down before the command's request was left out, and
    // the reshard finished within the timeout.)
    const proxy = await muteReshardAnswers(nodes[0]!);
    try {
      const run = await kvs(['reshard', String(target), '--nodes', proxy.address, '--timeout-ms', '500'], admin);
      assert.equal(run.code, 1, run.stdout);
      assert.match(run.stderr, /may still be running/);
      assert.match(run.stderr, /kvs status/);
      assert.ok(proxy.muted() > 0, 'the reshard request went through the proxy');
    } finally {
      await proxy.close();
    }
    // It did go on, and ends: every node agrees on 2 shards.
    await pollUntil(`the reshard to ${target} ends`, async () => {
      for (const node of nodes) {
        const layout = await readShardLayout(node);
        if (layout.ids.length !== target) throw new NotYet(`${node}: ${layout.ids}`);
      }
    }, { timeoutMs: 30_000 });
  });
});
