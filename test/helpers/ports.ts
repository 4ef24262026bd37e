// The fixed loopback ports of the test files that start nodes, in one table so that no two files
// share a port: two test files run at once (--test-concurrency=2), and a node of one file answering
// another file's requests would be a baffling failure. A file takes its range with
// `portsFor(import.meta.url)`; a range that overlaps another fails at load, naming both.

import { address } from './cluster.ts';
import type { NodeAddress } from './http.ts';

/** First port and number of ports, per test file (its path under test/). */
const RANGES: Record<string, readonly [first: number, count: number]> = {
  'integration/view.test.ts': [9100, 100],
  'integration/kvs.test.ts': [9200, 100],
  'integration/shard.test.ts': [9300, 100],
  'integration/membership.test.ts': [9400, 100],
  // 9500-9599: bench/run.ts (--base-port default).
  'integration/causal.test.ts': [9600, 100],
  // 9700-9749: bench/flood.ts (--base-port default).
  'integration/flood.test.ts': [9750, 50],
  'integration/durability.test.ts': [9800, 50],
  'integration/repair.test.ts': [9850, 20],
  'integration/tls.test.ts': [9870, 9],
  // 9879: test/node/tls.test.ts names it in a SOCKET_ADDRESS of a node that must refuse to start.
  'node/tls.test.ts': [9879, 1],
  // bench/repair.ts defaults to 9900 too: a bench, never run with the tests (take the lock if you do).
  'integration/bounds.test.ts': [9900, 20],
  'integration/admin.test.ts': [9920, 40],
  'integration/auth.test.ts': [9960, 30],
  'integration/deploy.test.ts': [9990, 10],
  'integration/operator.test.ts': [10100, 20],
  'integration/openapi.test.ts': [10120, 10],
  'package/pack.test.ts': [10130, 10],
  'integration/cli.test.ts': [10140, 30],
  'integration/dns-names.test.ts': [10170, 10],
  // 10180-10199: kept free for trying things by hand.
  'deploy/dockerfile.test.ts': [10200, 5],
  'integration/scale-out.test.ts': [10210, 10],
  // test/fuzz/fuzz.test.ts: two stores at 19100 and 19110.
  'fuzz/fuzz.test.ts': [19100, 100],
  'integration/hostile.test.ts': [19200, 100],
  'integration/metrics.test.ts': [19450, 10],
  // 19300-19399: test/fuzz/run.ts (--base-port default).
  'ui/dashboard.test.ts': [19400, 10],
};

/** Consecutive loopback ports a test file (or one store of it) may use. */
export class PortRange {
  readonly owner: string;
  readonly first: number;
  readonly count: number;

  constructor(owner: string, first: number, count: number) {
    this.owner = owner;
    this.first = first;
    this.count = count;
  }

  /** The i-th port of the range; fails when the range has no such port. */
  port(i: number): number {
    if (!Number.isInteger(i) || i < 0 || i >= this.count) {
      throw new RangeError(`${this.owner} has ports ${this.first}-${this.first + this.count - 1}: no port #${i}`);
    }
    return this.first + i;
  }

  /** 127.0.0.1:<the i-th port>. */
  address(i: number): NodeAddress {
    return address(this.port(i));
  }

  /** Ports i .. i+count-1 of this range, as a range of their own (one of several stores of a file). */
  slice(i: number, count: number): PortRange {
    this.port(i);
    this.port(i + count - 1);
    return new PortRange(`${this.owner} [${i}..${i + count - 1}]`, this.first + i, count);
  }
}

/** The range of the test file at `fileUrl` (pass `import.meta.url`). */
export function portsFor(fileUrl: string): PortRange {
  const path = new URL(fileUrl).pathname;
  const at = path.lastIndexOf('/test/');
  const name = at < 0 ? path : path.slice(at + '/test/'.length);
  const range = RANGES[name];
  if (range === undefined) throw new Error(`${name} has no port range: add one to RANGES in test/helpers/ports.ts`);
  return new PortRange(name, range[0], range[1]);
}

function assertNoOverlap(): void {
  const sorted = Object.entries(RANGES).sort(([, a], [, b]) => a[0] - b[0]);
  for (let i = 1; i < sorted.length; i++) {
    const [prevName, [prevFirst, prevCount]] = sorted[i - 1]!;
    const [name, [first]] = sorted[i]!;
    if (first < prevFirst + prevCount) throw new Error(`port ranges overlap: ${prevName} (${prevFirst}+${prevCount}) and ${name} (from ${first})`);
  }
}
assertNoOverlap();
