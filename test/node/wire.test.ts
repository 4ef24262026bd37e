// The decoders of messages between nodes: each takes a well-formed message and refuses, as a 400,
// one whose fields have the wrong shape, before anything reads it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nodeAddress } from '../../src/core/address.ts';
import { PARTITION_COUNT } from '../../src/core/shard-map.ts';
import { BadRequest } from '../../src/node/replies.ts';
import { decodeDigestRequest, decodeRepair, decodeReplicate, decodeReshardCommit, decodeReshardSend, decodeSyncRequest } from '../../src/node/wire.ts';

const A = nodeAddress('10.10.0.2:8090');
const version = { key: 'k', deleted: false, value: 1, dot: { node: A, counter: 1 }, stamp: { epoch: 0, lamport: 1, node: A }, deps: {} };

test('messages that name a shard take only a shard id of the store (s0, s1, ...)', () => {
  const decoders: [string, (shard: unknown) => unknown][] = [
    ['replicate', (shard) => decodeReplicate({ epoch: 0, shard, versions: [version] })],
    ['digest', (shard) => decodeDigestRequest({ epoch: 0, shard, digests: new Array<number>(PARTITION_COUNT).fill(0) })],
    ['repair', (shard) => decodeRepair({ epoch: 0, shard, versions: [version] })],
    ['sync', (shard) => decodeSyncRequest({ epoch: 0, shard, since: {}, full: false })],
  ];
  for (const [name, decode] of decoders) {
    assert.equal((decode('s1') as { shard: string }).shard, 's1', name);
    for (const shard of ['', 'S1', 's01', 'shard0', '__proto__', 's1 ', 1, null, undefined]) {
      assert.throws(() => decode(shard), BadRequest, `${name} with shard ${JSON.stringify(shard)}`);
    }
  }
});

test('an epoch is a non-negative safe integer', () => {
  assert.equal(decodeReshardCommit({ epoch: 3 }).epoch, 3);
  for (const epoch of [-1, 1.5, '3', Number.MAX_SAFE_INTEGER + 1, null]) {
    assert.throws(() => decodeReshardCommit({ epoch }), BadRequest, JSON.stringify(epoch));
  }
});

test("a reshard's phase 2 takes holdings keyed by node address, each a well-formed claim; none sent means none", () => {
  const holding = { shard: 's0', applied: { [A]: 4 }, base: { '1': { s1: { [A]: 2 } } } };
  const decoded = decodeReshardSend({ epoch: 2, targets: [A], holdings: { [A]: holding } });
  assert.deepEqual([...decoded.holdings], [[A, holding]]);
  assert.equal(decodeReshardSend({ epoch: 2, targets: [A] }).holdings.size, 0);
  const bad: unknown[] = [
    [],
    { [A]: null },
    { [A]: { ...holding, shard: '__proto__' } },
    { [A]: { ...holding, applied: { [A]: -1 } } },
    { [A]: { ...holding, applied: { constructor: 1 } } },
    { [A]: { ...holding, base: { x: {} } } },
    JSON.parse(`{"__proto__": ${JSON.stringify(holding)}}`),
    { 'not an address': holding },
  ];
  for (const holdings of bad) {
    assert.throws(() => decodeReshardSend({ epoch: 2, targets: [A], holdings }), BadRequest, JSON.stringify(holdings));
  }
});
