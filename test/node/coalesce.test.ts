// coalesce: concurrent askers share one read; a fresh answer is reused; a stale one is read again;
// a failed read is not kept.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { coalesce } from '../../src/node/coalesce.ts';

test('askers share one read while it runs, reuse it while fresh, and read again once it is stale', async () => {
  let clock = 0;
  let reads = 0;
  let release = (): void => undefined;
  const read = () =>
    new Promise<number>((resolve) => {
      reads++;
      const n = reads;
      release = () => resolve(n);
    });
  const ask = coalesce(read, 500, () => clock);
  const first = [ask(), ask(), ask()];
  assert.equal(reads, 1, 'one read for three concurrent askers');
  release();
  assert.deepEqual(await Promise.all(first), [1, 1, 1]);
  clock = 499;
  assert.equal(await ask(), 1, 'fresh: reused');
  assert.equal(reads, 1);
  clock = 500;
  const again = ask();
  assert.equal(reads, 2, 'stale: read again');
  release();
  assert.equal(await again, 2);
});

test('a failed read is shared by those who asked during it, and not kept', async () => {
  let reads = 0;
  const ask = coalesce(
    async () => {
      reads++;
      if (reads === 1) throw new Error('down');
      return reads;
    },
    500,
    () => 0,
  );
  await assert.rejects(Promise.all([ask(), ask()]), /down/);
  assert.equal(reads, 1);
  assert.equal(await ask(), 2, 'the next ask reads again');
});
