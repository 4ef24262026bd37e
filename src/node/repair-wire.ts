// The compact form of versions an anti-entropy push carries (POST /internal/repair, `packed`):
// what a version costs on the wire, beyond its key and value, is a few numbers. Node addresses are
// named once per request, in a table, and referred to by index; the field names go; an empty or
// default field is left out. `unpackVersions` builds the versions back for wire.ts, which checks
// them as it checks any version (isVersion).
//
//   { n: [address, ...], v: [[key, lamport, stampNode, extra, value], ...] }
//
// A tombstone has no value (four items). `extra` is 0 or an object of what the version has besides:
// `e` the stamp's epoch, `c` the dot's counter (its node is the stamp's), `d` [node, counter] a dot
// of another node, `p` deps as { shard: [node, counter, node, counter, ...] }, `past` and `o`
// (origin) as they are. No `c`/`d`: no dot (a base version).

import type { Version } from '../core/types.ts';
import { isShardId } from '../core/shard-map.ts';
import { isNodeAddress } from '../core/address.ts';

export interface PackedVersions {
  /** Node addresses, each once. */
  n: string[];
  /** One tuple per version. */
  v: unknown[][];
}

interface Extra {
  e?: number;
  c?: number;
  d?: [number, number];
  p?: Record<string, number[]>;
  past?: unknown;
  o?: unknown;
}

/** Packs versions one by one, naming each node address once. */
class Packer {
  readonly nodes: string[] = [];
  private readonly index = new Map<string, number>();

  private ref(node: string): number {
    let i = this.index.get(node);
    if (i === undefined) {
      i = this.nodes.length;
      this.nodes.push(node);
      this.index.set(node, i);
    }
    return i;
  }

  tuple(version: Version): unknown[] {
    const { stamp, dot } = version;
    const stampNode = this.ref(stamp.node);
    const extra: Extra = {};
    let any = false;
    if (stamp.epoch !== undefined) {
      extra.e = stamp.epoch;
      any = true;
    }
    if (dot !== null) {
      if (dot.node === stamp.node) extra.c = dot.counter;
      else extra.d = [this.ref(dot.node), dot.counter];
      any = true;
    }
    const shards = Object.keys(version.deps);
    if (shards.length > 0) {
      const deps: Record<string, number[]> = {};
      for (const shard of shards) {
        const flat: number[] = [];
        for (const [node, counter] of Object.entries(version.deps[shard] ?? {})) flat.push(this.ref(node), counter);
        deps[shard] = flat;
      }
      extra.p = deps;
      any = true;
    }
    if (version.past !== undefined) {
      extra.past = version.past;
      any = true;
    }
    if (version.origin !== undefined) {
      extra.o = version.origin;
      any = true;
    }
    const tuple: unknown[] = [version.key, stamp.lamport, stampNode, any ? extra : 0];
    if (!version.deleted) tuple.push(version.value);
    return tuple;
  }
}

export function packVersions(versions: readonly Version[]): PackedVersions {
  const packer = new Packer();
  const tuples = versions.map((version) => packer.tuple(version));
  return { n: packer.nodes, v: tuples };
}

/**
 * Request bodies carrying `versions` packed, in order, each `fields` (epoch, shard, ...) and
 * `packed`, as JSON text of about `charsMax` characters at most (at least one version each): the
 * text is built from each version's own, so a body is measured as it goes, not estimated.
 */
export function* packedBodies(
  versions: readonly Version[],
  fields: Record<string, unknown>,
  charsMax: number,
): Generator<{ text: string; versions: readonly Version[] }> {
  const head = JSON.stringify(fields).slice(0, -1);
  let packer = new Packer();
  let tuples: string[] = [];
  let chars = 0;
  let from = 0;
  const body = (to: number) => ({
    text: `${head}${head.length > 1 ? ',' : ''}"packed":{"n":${JSON.stringify(packer.nodes)},"v":[${tuples.join(',')}]}}`,
    versions: versions.slice(from, to),
  });
  for (let i = 0; i < versions.length; i++) {
    const version = versions[i] as Version;
    let tuple = JSON.stringify(packer.tuple(version));
    if (tuples.length > 0 && chars + tuple.length + 1 > charsMax) {
      yield body(i);
      packer = new Packer();
      tuples = [];
      chars = 0;
      from = i;
      tuple = JSON.stringify(packer.tuple(version));
    }
    tuples.push(tuple);
    chars += tuple.length + 1;
  }
  if (tuples.length > 0) yield body(versions.length);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The versions of a packed push, as plain objects shaped as versions (for isVersion to check), or
 * null when the packing itself is malformed (an index out of the table, a tuple of another shape, a
 * table entry that is not an address, a shard that is not a shard id).
 */
export function unpackVersions(packed: unknown): unknown[] | null {
  if (!isObject(packed) || !Array.isArray(packed.n) || !Array.isArray(packed.v)) return null;
  const nodes = packed.n as unknown[];
  if (!nodes.every(isNodeAddress)) return null;
  const node = (i: unknown): string | null => (Number.isInteger(i) && (i as number) >= 0 && (i as number) < nodes.length ? (nodes[i as number] as string) : null);
  const out: unknown[] = [];
  for (const tuple of packed.v as unknown[]) {
    if (!Array.isArray(tuple) || (tuple.length !== 4 && tuple.length !== 5)) return null;
    const [key, lamport, stampIndex, extra] = tuple as unknown[];
    const stampNode = node(stampIndex);
    if (stampNode === null || (extra !== 0 && !isObject(extra))) return null;
    const x: Extra = extra === 0 ? {} : (extra as Extra);
    const stamp = x.e === undefined ? { lamport, node: stampNode } : { epoch: x.e, lamport, node: stampNode };
    let dot: { node: string; counter: unknown } | null = null;
    if (x.c !== undefined) dot = { node: stampNode, counter: x.c };
    else if (x.d !== undefined) {
      if (!Array.isArray(x.d) || x.d.length !== 2) return null;
      const dotNode = node(x.d[0]);
      if (dotNode === null) return null;
      dot = { node: dotNode, counter: x.d[1] };
    }
    const deps: Record<string, Record<string, unknown>> = {};
    if (x.p !== undefined) {
      if (!isObject(x.p)) return null;
      for (const [shard, flat] of Object.entries(x.p)) {
        // Checked before it becomes a key: no shard id is a prototype name.
        if (!isShardId(shard) || !Array.isArray(flat) || flat.length % 2 !== 0) return null;
        const clock: Record<string, unknown> = {};
        for (let i = 0; i < flat.length; i += 2) {
          const at = node(flat[i]);
          if (at === null) return null;
          clock[at] = flat[i + 1];
        }
        deps[shard] = clock;
      }
    }
    out.push(versionOf(key, tuple.length === 4, dot, stamp, deps, x.past, x.o, tuple[4]));
  }
  return out;
}

/**
 * A version made whole in one object literal, its fields in the order a version always has them
 * (versions.ts, newVersion): fields added after a literal would cost memory in every stored version.
 */
function versionOf(key: unknown, deleted: boolean, dot: unknown, stamp: unknown, deps: unknown, past: unknown, origin: unknown, value: unknown): unknown {
  if (past === undefined && origin === undefined) return deleted ? { key, deleted, dot, stamp, deps } : { key, deleted, dot, stamp, deps, value };
  if (origin === undefined) return deleted ? { key, deleted, dot, stamp, deps, past } : { key, deleted, dot, stamp, deps, past, value };
  if (past === undefined) return deleted ? { key, deleted, dot, stamp, deps, origin } : { key, deleted, dot, stamp, deps, origin, value };
  return deleted ? { key, deleted, dot, stamp, deps, past, origin } : { key, deleted, dot, stamp, deps, past, origin, value };
}
