// A node cut off during a reshard keeps taking writes of its shard (availability); when it is back
// it learns the new map, drops its old replica, and must hand what it held to the new owners, so
// no acknowledged write is lost.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { call, get, put } from '../helpers/http.ts';
import { skipReason, useLab } from './helpers.ts';

async function poll<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  while (performance.now() < deadline) {
    last = await check().catch((error: unknown) => error);
    if (last !== undefined && !(last instanceof Error)) return last as T;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms (last: ${String(last)})`);
}

describe('a reshard missed by a cut-off node: 6 nodes, 2 shards', { skip: skipReason }, () => {
  const lab = useLab({ nodeCount: 6, shardCount: 2 });

  test('writes it acknowledged while cut off reach the new owners', async () => {
    const nodes = lab().addresses();
    const [x, coordinator] = [nodes[5]!, nodes[0]!];
    await lab().disconnect(x);
    await poll('the others drop the cut-off node from their views', 10_000, async () => {
      for (const n of nodes.slice(0, 5)) {
        const view = (await call('GET', n, '/view')).body.view as string[];
        if (view.includes(x)) return undefined;
      }
      return true;
    });
    // Keys of x's own shard, written at x while it is cut off.
    const written = new Map<string, string>();
    for (let i = 0; written.size < 5 && i < 200; i++) {
      const r = await put(x, `cut-off-${i}`, `value-${i}`, null);
      if (r.status === 201) written.set(`cut-off-${i}`, `value-${i}`);
    }
    assert.equal(written.size, 5, 'x acknowledged writes of its own shard while cut off');
    const r = await call('PUT', coordinator, '/shard/reshard', { 'shard-count': 2 });
    assert.equal(r.status, 200, r.text);
    const epoch = (await call('GET', coordinator, '/status')).body.epoch as number;
    await lab().reconnect(x);
    await poll('x adopts the new epoch', 30_000, async () => ((await call('GET', x, '/status')).body.epoch === epoch ? true : undefined));
    for (const [key, value] of written) {
      await poll(`${key} readable from the new owners`, 15_000, async () => {
        const reply = await get(coordinator, key, null);
        return reply.status === 200 && reply.body.value === value ? true : undefined;
      });
    }
  });
});
