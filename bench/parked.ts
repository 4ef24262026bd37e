// `npm run bench -- parked`: the cost of requests waiting for causal dependencies. 1,000 reads wait
// at a replica for a write it lacks while N unrelated writes arrive one at a time (each a state
// change). Before: each state change re-ran every waiting request from its raw body (parse the body
// and metadata, decide). Now: requests are parked under what they lack and a state change looks
// only at those it can release. Both are measured here on the same core.
import { NodeCore, type KvDecision, type KvRequest } from '../src/core/node-core.ts';
import { nodeAddress } from '../src/core/address.ts';
import { asEpoch, initialShardMap, shardIdFor } from '../src/core/shard-map.ts';
import type { CausalMetadata, NodeAddress, Version } from '../src/core/types.ts';

const PARKED = Number(process.argv[2] ?? 1000);
const CHANGES = Number(process.argv[3] ?? 1000);
const A = nodeAddress('10.10.0.2:8090');
const B = nodeAddress('10.10.0.3:8090');
const C = nodeAddress('10.10.0.4:8090');
const S0 = shardIdFor(0);
const view = [A, B, C];

/** The core, with the old way of deciding a request (from its body, without parking) for the comparison. */
class BenchCore extends NodeCore {
  kv(method: 'GET' | 'PUT', key: string, body: unknown): KvDecision {
    const parsed = this.parseKv(method, key, body);
    if (!parsed.ok) throw new Error('parse');
    return this.decideKv(parsed.request, 0);
  }
}

function core(self: NodeAddress): BenchCore {
  const c = new BenchCore({ self, pendingMax: 100_000, failuresToRemove: 3, holdDownMs: 3000 }, view, initialShardMap(view, null));
  c.step({ kind: 'ready' }, 0);
  return c;
}

function scenario(): { b: BenchCore; metadata: CausalMetadata; lacking: Version; unrelated: Version[] } {
  const a = core(A);
  const c = core(C);
  const w = a.kv('PUT', 'wanted', { value: 'x' });
  if (w.kind !== 'reply' || !w.replicate) throw new Error('write');
  const unrelated: Version[] = [];
  for (let i = 0; i < CHANGES; i++) {
    const d = c.kv('PUT', `other${i}`, { value: i });
    if (d.kind !== 'reply' || !d.replicate) throw new Error('write');
    unrelated.push(d.replicate.version);
  }
  return { b: core(B), metadata: w.reply.body['causal-metadata'] as CausalMetadata, lacking: w.replicate.version, unrelated };
}

/** The old way costs O(waiting) per change: measured over the first POLLED_CHANGES changes only. */
const POLLED_CHANGES = Math.min(CHANGES, 100);

function polled(): number {
  const { b, metadata } = scenario();
  const unrelated = scenario().unrelated.slice(0, POLLED_CHANGES);
  const bodies = Array.from({ length: PARKED }, () => JSON.parse(JSON.stringify({ 'causal-metadata': metadata })) as unknown);
  const started = performance.now();
  for (const version of unrelated) {
    b.step({ kind: 'replicate', epoch: asEpoch(0), shard: S0, versions: [version] }, 0);
    // The old loop: every waiting request is run again from its body.
    for (const body of bodies) b.kv('GET', 'wanted', body);
  }
  return performance.now() - started;
}

function parked(): number {
  const { b, metadata, unrelated } = scenario();
  for (let i = 0; i < PARKED; i++) {
    const parsed = b.parseKv('GET', 'wanted', { 'causal-metadata': metadata });
    if (!parsed.ok) throw new Error('parse');
    const decision = b.step({ kind: 'kv', request: parsed.request as KvRequest }, 0).out;
    if (decision.kind !== 'parked') throw new Error('not parked');
  }
  const started = performance.now();
  for (const version of unrelated) {
    // The step applies the write and looks at the parked requests it may release (none).
    const step = b.step({ kind: 'replicate', epoch: asEpoch(0), shard: S0, versions: [version] }, 0);
    if ((step.wake?.released.length ?? 0) !== 0) throw new Error('released early');
  }
  return performance.now() - started;
}

const before = polled() / POLLED_CHANGES;
const after = parked() / CHANGES;
const line = (what: string, ms: number) => `${what.padEnd(34)} ${(ms * 1000).toFixed(1).padStart(10)} µs per state change`;
process.stdout.write(`parked: ${PARKED} requests waiting; state changes that release none\n`);
process.stdout.write(`${line('re-run every waiting request', before)}\n${line('parked under what they lack', after)}\n`);
process.stdout.write(`${JSON.stringify({ parked: PARKED, polledUsPerChange: Math.round(before * 1000), parkedUsPerChange: Math.round(after * 10000) / 10 })}\n`);
