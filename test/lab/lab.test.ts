// The lab itself: nodes in their own namespaces, each fault does what it says on the network (TCP
// probes from inside the namespaces, not the store's opinion), and cleanup leaves nothing behind,
// also when the process that owns a lab is interrupted or killed.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lab } from '../../harness/lab/lab.ts';
import { LOCK_DIR, interfacesOf, namespacesOf, pidAlive, runSync, sweepDeadLabs } from '../../harness/lab/sys.ts';
import { NotYet, pollUntil } from '../helpers/cluster.ts';
import { skipReason, useLab } from './helpers.ts';

const REPO_ROOT = join(import.meta.dirname, '..', '..');

describe('lab: nodes and faults', { skip: skipReason }, () => {
  const lab = useLab({ nodeCount: 3 });

  test('each node runs in its own namespace at 10.10.<n>.x:8090 and reaches the others; this process reaches all', async () => {
    const [a, b, c] = lab().addresses() as [string, string, string];
    const slot = lab().slot;
    assert.deepEqual(lab().addresses(), [2, 3, 4].map((i) => `10.10.${slot}.${i}:8090`));
    for (const address of [a, b, c]) {
      const pid = lab().pidOf(address);
      assert.ok(pid !== undefined);
      assert.equal(runSync('ip', ['netns', 'identify', String(pid)])?.trim(), lab().namespaceOf(address));
      const status = await lab().status(address);
      assert.equal(status?.address, address);
    }
    await pollUntil(
      'every node lists all three',
      async () => {
        for (const address of [a, b, c]) {
          const view = (await lab().http('GET', address, '/view')).body?.view;
          if (JSON.stringify(view) !== JSON.stringify([a, b, c])) throw new NotYet(`${address}: ${JSON.stringify(view)}`);
        }
      },
      { timeoutMs: 10_000 },
    );
    assert.equal((await lab().probe(a, b)).result, 'connected');
    assert.equal((await lab().probe(c, a)).result, 'connected');
  });

  test('partition into groups: no traffic across, traffic within; this process reaches everyone; heal', async () => {
    const [a, b, c] = lab().addresses() as [string, string, string];
    await lab().partition([[a], [b, c]]);
    assert.equal((await lab().probe(a, b)).result, 'timeout');
    assert.equal((await lab().probe(b, a)).result, 'timeout');
    assert.equal((await lab().probe(c, a)).result, 'timeout');
    assert.equal((await lab().probe(b, c)).result, 'connected');
    for (const address of [a, b, c]) assert.equal((await lab().http('GET', address, '/status', undefined, 2_000)).status, 200);
    await lab().heal();
    assert.equal((await lab().probe(a, b)).result, 'connected');
    assert.equal((await lab().probe(c, a)).result, 'connected');
  });

  test('one-way partition: packets mode drops a->b only; connections mode lets b ask a and get answers', async () => {
    const [a, b, c] = lab().addresses() as [string, string, string];
    await lab().partitionOneWay([a], [b], 'packets');
    // a's SYN is dropped; b's SYN reaches a but a's SYN-ACK is dropped: TCP fails both ways.
    assert.equal((await lab().probe(a, b)).result, 'timeout');
    assert.equal((await lab().probe(b, a)).result, 'timeout');
    assert.equal((await lab().probe(a, c)).result, 'connected');
    await lab().heal();
    await lab().partitionOneWay([a], [b], 'connections');
    assert.equal((await lab().probe(a, b, { request: true })).result, 'timeout');
    assert.equal((await lab().probe(b, a, { request: true })).result, 'answered');
    assert.equal(lab().canReach(a, b), false);
    assert.equal(lab().canReach(b, a), true);
    await lab().heal();
    assert.equal((await lab().probe(a, b, { request: true })).result, 'answered');
  });

  /**
   * `from` connects to `to` again, within a deadline: a link brought back up may lose the first SYN
   * while the neighbour entry is resolved again, and the kernel resends it only after a second.
   */
  const reaches = async (from: string, to: string) => {
    await pollUntil(
      `${from} to connect to ${to}`,
      async () => {
        const probe = await lab().probe(from, to);
        if (probe.result !== 'connected') throw new NotYet(probe.result);
      },
      { timeoutMs: 10_000 },
    );
  };

  test('disconnect: cut off from peers both ways (this process still reaches it); with link: from this process too', async () => {
    const [a, b, c] = lab().addresses() as [string, string, string];
    await lab().disconnect(c);
    assert.equal((await lab().probe(c, a)).result, 'timeout');
    assert.equal((await lab().probe(b, c)).result, 'timeout');
    assert.equal((await lab().probe(a, b)).result, 'connected');
    assert.equal((await lab().http('GET', c, '/status', undefined, 2_000)).status, 200);
    await lab().reconnect(c);
    await reaches(b, c);

    await lab().disconnect(c, { link: true });
    await assert.rejects(lab().http('GET', c, '/status', undefined, 1_000));
    assert.equal((await lab().probe(a, c)).result, 'timeout');
    await lab().reconnect(c);
    assert.equal((await lab().http('GET', c, '/status', undefined, 5_000)).status, 200);
    await reaches(a, c);
  });

  test('latency: a relay adds the delay to each direction at once, honours partitions, and goes away', async () => {
    const [a, b] = lab().addresses() as [string, string, string];
    const before = await lab().probe(a, b, { request: true });
    assert.equal(before.result, 'answered');
    await lab().addLatency(a, b, 150);
    const slow = await lab().probe(a, b, { request: true, timeoutMs: 3_000 });
    assert.equal(slow.result, 'answered');
    assert.ok(slow.ms >= 290, `request through 150 ms each way took ${slow.ms} ms`);
    const back = await lab().probe(b, a, { request: true, timeoutMs: 3_000 });
    assert.ok(back.ms >= 290, `symmetric: b -> a took ${back.ms} ms`);
    // The relay is in this process, so iptables in the namespaces cannot see through it: it holds data itself.
    await lab().partition([[a], [b]]);
    assert.equal((await lab().probe(b, a, { request: true })).result, 'timeout');
    assert.equal((await lab().probe(a, b, { request: true })).result, 'timeout');
    await lab().heal();
    const after = await lab().probe(a, b, { request: true });
    assert.equal(after.result, 'answered');
    assert.ok(after.ms < 150, `without latency: ${after.ms} ms`);
    // The store still works across a slow link.
    await lab().addLatency(a, b, 100);
    const put = await lab().http('PUT', a, '/kvs/slow', { value: 1, 'causal-metadata': null });
    assert.equal(put.status, 201, put.text);
    await pollUntil(
      'b has the write a replicated through the slow link',
      async () => {
        const r = await lab().http('GET', b, '/kvs/slow', { 'causal-metadata': null });
        if (r.status !== 200) throw new NotYet(`${r.status} ${r.text}`);
      },
      { timeoutMs: 10_000 },
    );
    await lab().heal();
  });

  test('kill, stop and restart at the same address; only unrequested exits count as crashes', async () => {
    const [a, b] = lab().addresses() as [string, string, string];
    await lab().kill(b);
    assert.equal(lab().isRunning(b), false);
    assert.equal((await lab().probe(a, b)).result, 'refused');
    await lab().restart(b);
    assert.equal((await lab().status(b))?.ready, true);
    await lab().stop(b);
    assert.match(readFileSync(lab().logPath(b), 'utf8'), /"msg":"stopping"/);
    lab().start(b);
    await lab().waitReady([b]);
    lab().assertNoCrash();
    assert.match(lab().logTail(b, 400), /lab: starting 10\.10\.\d+\.3:8090/);
  });
});

function namesOf(prefix: string): string[] {
  return [...namespacesOf(prefix), ...interfacesOf(prefix)];
}

describe('lab: cleanup', { skip: skipReason }, () => {
  test('close() removes every name the lab created and releases its slot', async () => {
    const lab = await Lab.create({ nodeCount: 2 });
    const pids = lab.addresses().map((a) => lab.pidOf(a)!);
    assert.equal(namesOf(lab.prefix).length, 5, namesOf(lab.prefix).join(' ')); // 2 namespaces, 2 veths, bridge
    await lab.close({ removeLogs: true });
    assert.deepEqual(namesOf(lab.prefix), []);
    assert.equal(existsSync(join(LOCK_DIR, `${lab.slot}.lock`)), false);
    for (const pid of pids) assert.equal(pidAlive(pid), false);
    assert.equal(existsSync(lab.logDir), false);
  });

  // A child process creates a lab and reports its names, then is interrupted or killed.
  async function labInChild(): Promise<{ child: ReturnType<typeof spawn>; prefix: string; slot: number; nodePid: number }> {
    const script =
      `import { Lab } from ${JSON.stringify(join(REPO_ROOT, 'harness/lab/lab.ts'))};` +
      `const lab = await Lab.create({ nodeCount: 1 });` +
      `console.log(JSON.stringify({ prefix: lab.prefix, slot: lab.slot, nodePid: lab.pidOf(lab.addresses()[0]) }));` +
      `setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('\n')) resolve(out.split('\n')[0]!);
      });
      child.once('exit', (code) => reject(new Error(`child exited with ${code} before creating its lab`)));
      setTimeout(() => reject(new Error('child did not create its lab in 30 s')), 30_000).unref();
    });
    return { child, ...(JSON.parse(line) as { prefix: string; slot: number; nodePid: number }) };
  }

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    test(`a process interrupted by ${signal} removes its lab on the way out`, async () => {
      const { child, prefix, slot, nodePid } = await labInChild();
      assert.ok(namesOf(prefix).length > 0);
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill(signal);
      await exited;
      assert.deepEqual(namesOf(prefix), []);
      assert.equal(existsSync(join(LOCK_DIR, `${slot}.lock`)), false);
      assert.equal(pidAlive(nodePid), false);
    });
  }

  test('a lab whose process was SIGKILLed is swept by the next one, and nothing else is', async () => {
    const { child, prefix, slot, nodePid } = await labInChild();
    // Names close to ours that the sweep must leave alone: another slot's namespace, a link that
    // is not one of our patterns.
    const foreignNs = `${prefix}0-foreign`;
    const foreignLink = `${prefix}x${process.pid % 1000}`;
    runSync('ip', ['netns', 'add', foreignNs]);
    runSync('ip', ['link', 'add', foreignLink, 'type', 'bridge']);
    try {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
      assert.ok(namesOf(prefix).length > 0, 'SIGKILL leaves the names behind');
      assert.ok(pidAlive(nodePid), 'and the node running');
      assert.ok(sweepDeadLabs().includes(slot));
      assert.deepEqual(namesOf(prefix), []);
      assert.equal(pidAlive(nodePid), false);
      assert.equal(existsSync(join(LOCK_DIR, `${slot}.lock`)), false);
      assert.match(runSync('ip', ['netns', 'list']) ?? '', new RegExp(`^${foreignNs}\\b`, 'm'));
      assert.notEqual(runSync('ip', ['link', 'show', foreignLink]), undefined);
    } finally {
      runSync('ip', ['netns', 'del', foreignNs]);
      runSync('ip', ['link', 'del', foreignLink]);
    }
  });
});
