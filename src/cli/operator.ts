// What `kvs status`, `kvs shards` and `kvs reshard` print for a person: tables and a progress bar
// built from GET /status/store and GET /shard/reshard-plan/N.

import type { ReshardPlan, ReshardProgress, StoreStatus } from '../client/client.ts';

/** A table with a header row, columns padded to their widest cell (numbers right-aligned). */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const numeric = header.map((_, i) => rows.length > 0 && rows.every((r) => /^[-0-9.,]+( [a-zA-Z]+)?$|^-$/.test(r[i] ?? '')));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

const dash = (value: string | null) => value ?? '-';

/** One row per node of the store (a dead one too), and a line per shard. */
export function statusTable(store: StoreStatus): string {
  const rows = store.nodes.map((n) => [
    n.address,
    dash(n.shard),
    n.state,
    dash(n.keys === null ? null : String(n.keys)),
    dash(n.replicationBacklog === null ? null : `${n.replicationBacklog.versions} / ${bytes(n.replicationBacklog.bytes)}`),
    dash(n.hintBacklog === null ? null : `${n.hintBacklog.versions} / ${bytes(n.hintBacklog.bytes)}`),
    dash(n.secondsSinceInSync === null ? null : `${n.secondsSinceInSync.toFixed(1)} s`),
    dash(n.tombstones === null || n.tombstones === undefined ? null : `${n.tombstones.held}${n.tombstones.stale === null ? '' : ' stale'}`),
  ]);
  const lines = [
    `epoch ${store.epoch}, ${store.mode}, ${store.shards.length} shard${store.shards.length === 1 ? '' : 's'} (as ${store.answeredBy} sees it)`,
    table(['NODE', 'SHARD', 'STATE', 'KEYS', 'REPLICATION BACKLOG', 'HINTS', 'IN SYNC', 'TOMBSTONES'], rows),
    ...tombstoneLines(store.nodes),
  ];
  if (store.reshard !== null) lines.push(progressLine(store.reshard));
  const notUp = store.nodes.filter((n) => n.state !== 'up');
  lines.push(notUp.length === 0 ? 'every node is up and ready' : `${notUp.length} of ${store.nodes.length} nodes not up and ready: ${notUp.map((n) => `${n.address} (${n.state})`).join(', ')}`);
  return lines.join('\n');
}

/**
 * What holds tombstones back or goes on without a member, said once per set of members with the
 * nodes that report it, and each stale replica.
 */
function tombstoneLines(nodes: StoreStatus['nodes']): string[] {
  const waits = new Map<string, string[]>();
  const without = new Map<string, string[]>();
  const lines: string[] = [];
  for (const node of nodes) {
    const t = node.tombstones;
    if (t === null || t === undefined) continue;
    if (t.blockedBy.length > 0) waits.set(t.blockedBy.join(', '), [...(waits.get(t.blockedBy.join(', ')) ?? []), node.address]);
    if (t.collectingWithout.length > 0) without.set(t.collectingWithout.join(', '), [...(without.get(t.collectingWithout.join(', ')) ?? []), node.address]);
    if (t.stale !== null) {
      const next = t.stale.handedOff ? 'its writes are handed off; it copies its shard afresh' : 'it hands its writes to the live members first';
      lines.push(`${node.address}: replica stale for ${t.stale.forSeconds.toFixed(0)} s (it missed tombstones collected without it; ${next})`);
    }
  }
  for (const [members, at] of waits) lines.unshift(`tombstone collection waits for ${members} (at ${at.join(', ')})`);
  for (const [members, at] of without) lines.unshift(`tombstones are collected without ${members}, not heard from for longer than the grace (at ${at.join(', ')})`);
  return lines;
}

/** Whether every node of the store is up and ready (`kvs status` exits 0 only then). */
export function allUp(store: StoreStatus): boolean {
  return store.nodes.every((n) => n.state === 'up');
}

/** The shards before and after a reshard, and what would move. */
export function planTable(plan: ReshardPlan): string {
  const side = (shards: ReshardPlan['before']) => shards.map((s) => [s.id, dash(s.keys === null ? null : String(s.keys)), s.members.join(',')]);
  const moving =
    plan.noop || plan.partitionsMoving === 0
      ? 'nothing moves'
      : `${plan.partitionsMoving} of 1024 partitions move, ${plan.keysMoving === null ? 'an unknown number of' : plan.keysMoving} keys` +
        ` (${plan.moving.map((m) => `${m.shard}: ${m.partitions} partitions, ${m.keys ?? '?'} keys`).join('; ')})`;
  return [
    `reshard to ${plan.shardCount} shards (epoch ${plan.epoch}), a plan: nothing has moved`,
    'before:',
    table(['SHARD', 'KEYS', 'MEMBERS'], side(plan.before)),
    'after:',
    table(['SHARD', 'KEYS', 'MEMBERS'], side(plan.after)),
    moving,
  ].join('\n');
}

/** `[#####.....] send: 512/1024 partitions, 3000/6000 keys, 2.1 s` */
export function progressLine(progress: ReshardProgress, width = 30): string {
  const { partitionsMoved, partitionsTotal, keysMoved, keysTotal } = progress;
  const fraction = partitionsTotal === 0 ? (progress.phase === 'commit' ? 1 : 0) : partitionsMoved / partitionsTotal;
  const filled = Math.round(fraction * width);
  const keys = keysTotal === null ? '' : `, ${keysMoved ?? '?'}/${keysTotal} keys`;
  return `reshard to ${progress.shardCount} shards [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${progress.phase}: ${partitionsMoved}/${partitionsTotal} partitions${keys}, ${progress.seconds.toFixed(1)} s`;
}
