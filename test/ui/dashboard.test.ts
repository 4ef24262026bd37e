// The dashboard (GET /ui/) in a real browser, on a real store of 4 nodes and 2 shards: headless
// Chromium (playwright-core, the system's /usr/bin/chromium) opens it at one node; the page must name
// every node and shard, show the key counts /shard/key-count answers, and show a killed node down
// within 10 s while the others stay up. It must fetch nothing from another origin, and its HTML must
// name nothing outside itself. Skipped, saying why, when /usr/bin/chromium is not installed.
//
// UPDATE_SCREENSHOTS=1 also writes docs/dashboard.png (all up) and docs/dashboard-node-down.png
// (one node killed), at 1280x800, after some load so the charts have something to show.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { NotYet, forEachLimited, pollUntil, retryWhile503 } from '../helpers/cluster.ts';
import { Client, get, getKeyCount, getMembers, getShardIds, put, type NodeAddress } from '../helpers/http.ts';
import { portsFor } from '../helpers/ports.ts';
import { step, useCluster } from '../helpers/store.ts';
import { loadDashboard } from '../../src/node/dashboard.ts';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
const VIEWPORT = { width: 1280, height: 800 };
const UPDATE_SCREENSHOTS = process.env.UPDATE_SCREENSHOTS === '1';
const DOCS = fileURLToPath(new URL('../../docs/', import.meta.url));
const KEY_COUNT = 40;
/** The promise: a killed node is shown down within this long. */
const DOWN_WITHIN_MS = 10_000;
/** Keys the tombstone test deletes (of the KEY_COUNT written). */
const DELETED = 8;
/** How far the oldest tombstone's age on the page may be from /status's (the page shows an answer up to a poll old). */
const AGE_SLACK_S = 5;

const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install chromium): the dashboard's browser test cannot run`;
if (skip !== false) console.log(`# SKIPPED test/ui/dashboard.test.ts: ${skip}`);

/** A node's tombstone cell: its text, and the figures it was drawn from (null: not there). */
interface ShownTombstones {
  text: string;
  held: string | null;
  ageSeconds: string | null;
  blocked: string | null;
  stale: string | null;
  flags: string[];
}

/** What the page shows, read from its DOM. */
interface Shown {
  connection: string;
  answeredBy: string;
  nodes: { address: string; state: string; keys: string; tombstones: ShownTombstones }[];
  shards: { id: string; keys: string; members: { address: string; state: string }[] }[];
}

function readPage(page: Page): Promise<Shown> {
  return page.evaluate(() => ({
    connection: document.getElementById('conn')?.textContent ?? '',
    answeredBy: document.getElementById('answered-by')?.textContent ?? '',
    nodes: [...document.querySelectorAll('#nodes tr[data-address]')].map((tr) => ({
      address: tr.querySelector('td')?.textContent ?? '',
      state: tr.querySelector('.badge')?.textContent ?? '',
      keys: tr.querySelector('.node-keys')?.textContent ?? '',
      tombstones: ((td) => ({
        text: td?.textContent ?? '',
        held: td?.getAttribute('data-held') ?? null,
        ageSeconds: td?.getAttribute('data-oldest-age-seconds') ?? null,
        blocked: td?.getAttribute('data-blocked') ?? null,
        stale: td?.getAttribute('data-stale') ?? null,
        flags: [...(td?.querySelectorAll('.flag') ?? [])].map((f) => `${f.textContent}: ${f.getAttribute('title')}`),
      }))(tr.querySelector('.node-tombstones')),
    })),
    shards: [...document.querySelectorAll('#shards [data-shard]')].map((card) => ({
      id: card.querySelector('.shard-id')?.textContent ?? '',
      keys: card.querySelector('.shard-key-count')?.textContent ?? '',
      members: [...card.querySelectorAll('.member')].map((m) => ({
        address: m.querySelector('.member-address')?.textContent ?? '',
        state: m.querySelector('.badge')?.textContent ?? '',
      })),
    })),
  }));
}

/** Every node's state as the page shows it, in the node table and in the shard map (they must agree). */
function statesShown(shown: Shown): Map<string, string> {
  const states = new Map<string, string>();
  for (const n of shown.nodes) states.set(n.address, n.state);
  for (const s of shown.shards) {
    for (const m of s.members) {
      if (states.has(m.address) && states.get(m.address) !== m.state) throw new NotYet(`${m.address} is ${states.get(m.address)} in the table but ${m.state} in shard ${s.id}`);
    }
  }
  return states;
}

describe('the dashboard at GET /ui/', { skip }, () => {
  const store = useCluster({ ports: portsFor(import.meta.url), nodeCount: 4, shardCount: 2 });
  let nodes: NodeAddress[] = [];
  let browser: Browser | undefined;
  let page: Page;
  /** Every URL the page requested, and what its console and errors said. */
  const requested: string[] = [];
  const complaints: string[] = [];

  before(async () => {
    nodes = store.nodes;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    const context = await browser.newContext({ viewport: VIEWPORT });
    page = await context.newPage();
    page.on('request', (request) => requested.push(request.url()));
    page.on('console', (message) => {
      if (message.type() === 'error' || message.type() === 'warning') complaints.push(`console ${message.type()}: ${message.text()}`);
    });
    page.on('pageerror', (error) => complaints.push(`page error: ${error.message}`));
  });
  after(async () => {
    await browser?.close();
  });

  /** The node the page is opened at; it is never the one killed. */
  const served = (): NodeAddress => nodes[0]!;
  /** The node killed by the down test (not the one whose page it is: that page would go stale). */
  const victim = (): NodeAddress => nodes[nodes.length - 1]!;

  const keysWritten = step(async () => {
    const client = new Client();
    for (let i = 0; i < KEY_COUNT; i++) {
      const at = nodes[i % nodes.length]!;
      const r = await retryWhile503(`PUT dash-${i} at ${at}`, () => client.put(at, `dash-${i}`, i));
      assert.equal(r.status, 201, `PUT dash-${i} at ${at}: ${r.text}`);
    }
  });

  const pageOpen = step(async () => {
    await keysWritten();
    const response = await page.goto(`http://${served()}/ui/`);
    assert.equal(response?.status(), 200);
  });

  /** Reads and writes (of the keys already written) at every node for `ms`: for the screenshots' charts and backlogs only. */
  async function load(ms: number): Promise<void> {
    const until = Date.now() + ms;
    await forEachLimited([0, 1, 2, 3], 4, async (w) => {
      for (let i = w; Date.now() < until; i++) {
        const live = store.cluster.liveAddresses();
        const at = live[i % live.length]!;
        const key = `dash-${i % KEY_COUNT}`;
        await (i % 3 === 0 ? put(at, key, i % KEY_COUNT, null) : get(at, key, null)).catch(() => undefined);
        await new Promise((resolve) => setTimeout(resolve, 15 + 10 * w));
      }
    });
  }

  async function screenshot(name: string): Promise<void> {
    mkdirSync(DOCS, { recursive: true });
    await page.screenshot({ path: `${DOCS}${name}` });
  }

  test('every node serves one self-contained HTML page with a strict Content-Security-Policy', async () => {
    for (const node of nodes) {
      const response = await fetch(`http://${node}/ui/`);
      const html = await response.text();
      assert.equal(response.status, 200, `GET /ui/ at ${node}`);
      assert.equal(response.headers.get('content-type'), 'text/html; charset=utf-8');
      const csp = response.headers.get('content-security-policy') ?? '';
      for (const directive of ["default-src 'none'", "connect-src 'self'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'"]) {
        assert.ok(csp.includes(directive), `CSP has ${directive}: ${csp}`);
      }
      assert.match(csp, /script-src 'sha256-[A-Za-z0-9+/=]+'(;|$)/, `only the page's own script may run: ${csp}`);
      assert.doesNotMatch(csp, /unsafe-eval|\*|https?:|data:/, csp);
      assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
      // Nothing outside the page: no src, href or srcset attribute, no stylesheet link, no CSS import
      // or url(), no address of another site (the SVG namespace is a name, not a request).
      assert.doesNotMatch(html, /\s(?:src|href|srcset|xlink:href|action|formaction|poster|data)\s*=/i, 'an attribute that loads something');
      assert.doesNotMatch(html, /<link\b|@import|url\(/i, 'a stylesheet or resource reference');
      assert.deepEqual(html.match(/(?:https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}[^\s'"]*/gi) ?? [], ['http://www.w3.org/2000/svg']);
      const bare = await fetch(`http://${node}/ui`, { redirect: 'manual' });
      assert.equal(bare.status, 301, `GET /ui at ${node}`);
      assert.equal(bare.headers.get('location'), '/ui/');
    }
  });

  test('names every node and every shard, with the key counts of /shard/key-count', async () => {
    await pageOpen();
    const shardIds = await getShardIds(served());
    assert.equal(shardIds.length, 2);
    const { elapsedMs } = await pollUntil(
      'the page to list every node up and every shard with its /shard/key-count',
      async () => {
        const shown = await readPage(page);
        if (shown.connection !== 'live') throw new NotYet(`connection: ${shown.connection}`);
        assert.equal(shown.answeredBy, served());
        const states = statesShown(shown);
        for (const node of nodes) {
          if (states.get(node) !== 'up') throw new NotYet(`${node}: ${states.get(node) ?? 'not shown'}`);
        }
        const shownIds = shown.shards.map((s) => s.id).sort();
        if (shownIds.join() !== [...shardIds].sort().join()) throw new NotYet(`shards shown: ${shownIds.join()}`);
        for (const id of shardIds) {
          const count = await getKeyCount(served(), id);
          const card = shown.shards.find((s) => s.id === id)!;
          if (card.keys !== String(count)) throw new NotYet(`shard ${id}: page shows ${card.keys} keys, /shard/key-count ${count}`);
          for (const member of card.members) {
            const row = shown.nodes.find((n) => n.address === member.address);
            if (row?.keys !== String(count)) throw new NotYet(`${member.address} of ${id}: page shows ${row?.keys} keys, /shard/key-count ${count}`);
          }
        }
        const total = shardIds.length === 0 ? 0 : (await Promise.all(shardIds.map((id) => getKeyCount(served(), id)))).reduce((a, b) => a + b, 0);
        if (total !== KEY_COUNT) throw new NotYet(`the shards hold ${total} keys of the ${KEY_COUNT} written`);
      },
      { timeoutMs: 15_000, intervalMs: 200 },
    );
    console.log(`# the page showed every node, shard and key count ${Math.round(elapsedMs)} ms after the check began`);
    if (UPDATE_SCREENSHOTS) {
      await load(20_000);
      await screenshot('dashboard.png');
    }
  });

  test(`shows a killed node down within ${DOWN_WITHIN_MS / 1000} s, the others up`, async () => {
    await pageOpen();
    await store.cluster.ensureRunning();
    const killed = victim();
    assert.notEqual(killed, served());
    const others = nodes.filter((n) => n !== killed);
    // Everyone up first, so the change below is the kill's.
    await pollUntil(
      'every node up on the page before the kill',
      async () => {
        const states = statesShown(await readPage(page));
        const notUp = nodes.filter((n) => states.get(n) !== 'up');
        if (notUp.length > 0) throw new NotYet(`not up: ${notUp.join(', ')}`);
      },
      { timeoutMs: 15_000, intervalMs: 200 },
    );
    const loading = UPDATE_SCREENSHOTS ? load(12_000) : Promise.resolve();
    if (UPDATE_SCREENSHOTS) await new Promise((resolve) => setTimeout(resolve, 4_000));
    await store.cluster.kill(killed);
    const { elapsedMs } = await pollUntil(
      `the page to show ${killed} down (killed) and ${others.join(', ')} up`,
      async () => {
        const shown = await readPage(page);
        if (shown.connection !== 'live') throw new NotYet(`connection: ${shown.connection}`);
        const states = statesShown(shown);
        if (states.get(killed) !== 'down') throw new NotYet(`${killed}: ${states.get(killed) ?? 'not shown'}`);
        const notUp = others.filter((n) => states.get(n) !== 'up');
        if (notUp.length > 0) throw new NotYet(`not up: ${notUp.map((n) => `${n} ${states.get(n)}`).join(', ')}`);
        const row = shown.nodes.find((n) => n.address === killed)!;
        assert.equal(row.keys, '-', 'a down node has no key count');
      },
      { timeoutMs: DOWN_WITHIN_MS, intervalMs: 100 },
    );
    console.log(`# the page showed ${killed} down ${Math.round(elapsedMs)} ms after the kill`);
    await loading;
    if (UPDATE_SCREENSHOTS) await screenshot('dashboard-node-down.png');
  });

  test("shows the tombstones each node holds and the oldest one's age, as its /status says", async () => {
    await pageOpen();
    // The victim stays down (killed by the test above, or here when that one did not run): its shard
    // peer cannot collect that shard's tombstones, so they stay there while the page is read.
    const killed = victim();
    if (store.cluster.node(killed).alive) await store.cluster.kill(killed);
    const shardIds = await getShardIds(served());
    const members = new Map(await Promise.all(shardIds.map(async (id) => [id, await getMembers(served(), id)] as const)));
    const killedShard = shardIds.find((id) => members.get(id)!.includes(killed))!;
    const survivors = members.get(killedShard)!.filter((n) => n !== killed);
    const client = new Client();
    const deletedIn = new Map<string, number>();
    for (let i = 0; i < DELETED; i++) {
      const r = await retryWhile503(`DELETE dash-${i} at ${served()}`, () => client.del(served(), `dash-${i}`));
      assert.equal(r.status, 200, `DELETE dash-${i} at ${served()}: ${r.text}`);
      const shard = String(r.body['shard-id']);
      deletedIn.set(shard, (deletedIn.get(shard) ?? 0) + 1);
    }
    const inKilledShard = deletedIn.get(killedShard) ?? 0;
    assert.ok(inKilledShard > 0, `none of the ${DELETED} keys deleted is of ${killedShard}: ${[...deletedIn].join('; ')}`);

    interface Tombstones {
      held: number;
      oldestAgeMs: number | null;
      blockedBy: string[];
      stale: unknown;
    }
    const statusOf = async (node: NodeAddress): Promise<Tombstones> => {
      const response = await fetch(`http://${node}/status`);
      assert.equal(response.status, 200, `GET /status at ${node}`);
      return ((await response.json()) as { tombstones: Tombstones }).tombstones;
    };
    const live = nodes.filter((n) => n !== killed);
    const { value: shownHeld, elapsedMs } = await pollUntil(
      `the page to show every node's tombstones as its /status says, ${survivors.join(', ')} holding the ${inKilledShard} of ${killedShard}`,
      async () => {
        const shown = await readPage(page);
        if (shown.connection !== 'live') throw new NotYet(`connection: ${shown.connection}`);
        const down = shown.nodes.find((n) => n.address === killed)?.tombstones;
        if (down?.text !== '-' || down.held !== null) throw new NotYet(`${killed} (down): ${JSON.stringify(down)}`);
        const held = new Map<NodeAddress, number>();
        for (const node of live) {
          const t = await statusOf(node);
          const cell = shown.nodes.find((n) => n.address === node)?.tombstones;
          if (cell === undefined) throw new NotYet(`${node}: no row`);
          if (cell.held !== String(t.held)) throw new NotYet(`${node}: the page shows ${cell.held} held, /status ${t.held}`);
          if (!cell.text.startsWith(t.held.toLocaleString('en-US'))) throw new NotYet(`${node}: the cell reads ${JSON.stringify(cell.text)}, /status holds ${t.held}`);
          if ((cell.ageSeconds === '') !== (t.oldestAgeMs === null)) throw new NotYet(`${node}: oldest ${cell.ageSeconds} s on the page, ${t.oldestAgeMs} ms at /status`);
          if (t.oldestAgeMs !== null && Math.abs(Number(cell.ageSeconds) - t.oldestAgeMs / 1000) > AGE_SLACK_S) {
            throw new NotYet(`${node}: oldest ${cell.ageSeconds} s on the page, ${t.oldestAgeMs} ms at /status`);
          }
          if (t.held > 0 && t.oldestAgeMs !== null && !cell.text.includes('oldest')) throw new NotYet(`${node}: no age in ${JSON.stringify(cell.text)}`);
          if (cell.blocked !== String(t.blockedBy.length)) throw new NotYet(`${node}: blocked by ${cell.blocked} on the page, ${t.blockedBy.join(', ')} at /status`);
          if (cell.stale !== String(t.stale !== null)) throw new NotYet(`${node}: stale ${cell.stale} on the page, ${JSON.stringify(t.stale)} at /status`);
          held.set(node, t.held);
        }
        for (const node of survivors) {
          if ((held.get(node) ?? 0) < inKilledShard) throw new NotYet(`${node}: ${held.get(node)} tombstones held, ${inKilledShard} deleted in ${killedShard}`);
        }
        return held;
      },
      { timeoutMs: 15_000, intervalMs: 200 },
    );
    console.log(`# the page showed the tombstones held (${[...shownHeld].map(([n, h]) => `${n}: ${h}`).join(', ')}) ${Math.round(elapsedMs)} ms after the check began`);
  });

  test('the page asked only its own origin, and broke no rule of its policy', async () => {
    await pageOpen();
    const origin = `http://${served()}`;
    assert.ok(requested.length > 1, `the page polled: ${requested.join(', ')}`);
    const foreign = requested.filter((url) => new URL(url).origin !== origin);
    assert.deepEqual(foreign, [], 'requests to another origin');
    const paths = new Set(requested.map((url) => new URL(url).pathname));
    assert.ok(paths.has('/status/store'), `it polled /status/store: ${[...paths].join(', ')}`);
    // A killed node makes no browser error (the page's own node answers for it); a CSP violation
    // or a script error would show here.
    assert.deepEqual(complaints.filter((c) => !/favicon/.test(c)), []);
  });
});

// The page alone, in the same browser, with /status/store answered by the test (no store, no
// ports): what arrives from the network is shown as text, never markup; a reshard shows its bars;
// an answer that fails makes the page say "stale".
describe('the dashboard page against answers of our own', { skip }, () => {
  const ORIGIN = 'http://dashboard.test';
  const HOSTILE = '<img src=x onerror="window.__pwned=1">';
  let browser: Browser | undefined;
  let page: Page;
  let answer: { status: number; body: unknown } = { status: 503, body: { error: 'not yet' } };
  const complaints: string[] = [];

  before(async () => {
    const { html, headers } = loadDashboard();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    page = await browser.newPage({ viewport: VIEWPORT });
    page.on('pageerror', (error) => complaints.push(`page error: ${error.message}`));
    page.on('dialog', (dialog) => {
      complaints.push(`dialog: ${dialog.message()}`);
      dialog.dismiss().catch(() => undefined);
    });
    await page.route('**/*', async (route) => {
      const url = new URL(route.request().url());
      if (url.origin !== ORIGIN) return route.abort();
      if (url.pathname === '/ui/') return route.fulfill({ status: 200, headers: { ...headers, 'content-type': 'text/html; charset=utf-8' }, body: html });
      if (url.pathname === '/status/store') return route.fulfill({ status: answer.status, contentType: 'application/json', body: JSON.stringify(answer.body) });
      return route.fulfill({ status: 404, contentType: 'application/json', body: '{"error":"no route"}' });
    });
  });
  after(async () => {
    await browser?.close();
  });

  const hostileStatus = (requests: number) => ({
    answeredBy: HOSTILE,
    epoch: 3,
    mode: 'sharded',
    shards: [{ id: `s0${HOSTILE}`, members: [HOSTILE, '127.0.0.1:1'], keys: 5 }],
    nodes: [
      { address: HOSTILE, shard: `s0${HOSTILE}`, state: 'up', keys: 5, replicationBacklog: { versions: 1, bytes: 2048 }, hintBacklog: { versions: 0, bytes: 0 }, secondsSinceInSync: 2, requests: { total: requests, errors: 0, latencyMsSum: requests * 2 }, uptimeSeconds: requests,
        tombstones: { held: 1234, oldestAgeSeconds: 90, oldestAgeAtLeast: true, blockedBy: [HOSTILE], collectingWithout: [], stale: { forSeconds: 5, peer: HOSTILE, handedOff: false } } },
      { address: '127.0.0.1:1', shard: `s0${HOSTILE}`, state: `<b>${HOSTILE}</b>`, keys: null, replicationBacklog: null, hintBacklog: null, secondsSinceInSync: null, requests: null, uptimeSeconds: null, tombstones: null },
    ],
    reshard: { epoch: 4, phase: HOSTILE, coordinator: HOSTILE, partitionsMoved: 128, partitionsTotal: 512, keysMoved: 3, keysTotal: 4, seconds: 1.5 },
  });

  test('shows every string from the network as text, and the reshard in progress', async () => {
    let requests = 100;
    answer = { status: 200, body: hostileStatus(requests) };
    await page.goto(`${ORIGIN}/ui/`);
    await pollUntil(
      'the hostile answer shown as text',
      async () => {
        answer = { status: 200, body: hostileStatus((requests += 50)) };
        const shown = await readPage(page);
        if (shown.connection !== 'live' || shown.nodes.length !== 2) throw new NotYet(`connection ${shown.connection}, ${shown.nodes.length} rows`);
        assert.equal(shown.answeredBy, HOSTILE);
        assert.deepEqual(shown.nodes.map((n) => n.address), [HOSTILE, '127.0.0.1:1']);
        assert.equal(shown.shards[0]?.id, `s0${HOSTILE}`);
        assert.equal(shown.nodes[1]?.state, `<b>${HOSTILE}</b>`);
        // Tombstones: held and the oldest's age ("at least"), the stale replica and the blocked
        // collection flagged, the members named as text; none for a node that did not answer.
        const tombstones = shown.nodes[0]!.tombstones;
        assert.deepEqual([tombstones.held, tombstones.ageSeconds, tombstones.blocked, tombstones.stale], ['1234', '90', '1', 'true']);
        assert.ok(tombstones.text.startsWith('1,234oldest \u2265 1 min 30 s'), tombstones.text);
        assert.equal(tombstones.flags.length, 2, tombstones.flags.join('; '));
        assert.match(tombstones.flags[0]!, /^replica stale: stale for 5\.0 s, shown by /);
        assert.ok(tombstones.flags[0]!.includes(HOSTILE), tombstones.flags[0]);
        assert.equal(tombstones.flags[1], `collection blocked (1): waiting for members not heard from (within the grace, or without a majority): ${HOSTILE}`);
        assert.deepEqual([shown.nodes[1]!.tombstones.text, shown.nodes[1]!.tombstones.held], ['-', null]);
        const reshard = await page.locator('#reshard-section').innerText();
        if (!reshard.includes('25%')) throw new NotYet(`reshard section: ${reshard}`);
        assert.ok(reshard.includes(HOSTILE) && reshard.includes('3 of 4 (75%)'), reshard);
        // Two polls of growing counters: a throughput of its own.
        const value = await page.locator('tr[data-address] .chart .value').first().innerText();
        if (!/\/s$/.test(value)) throw new NotYet(`throughput: ${value}`);
      },
      { timeoutMs: 10_000, intervalMs: 200 },
    );
    const injected = await page.evaluate(() => ({ images: document.querySelectorAll('img, [onerror]').length, pwned: '__pwned' in window }));
    assert.deepEqual(injected, { images: 0, pwned: false });
    assert.deepEqual(complaints, []);
  });

  test('says "stale" when /status/store stops answering', async () => {
    answer = { status: 200, body: hostileStatus(1) };
    await page.goto(`${ORIGIN}/ui/`);
    await pollUntil('the page live', async () => {
      if ((await readPage(page)).connection !== 'live') throw new NotYet('not live');
    }, { timeoutMs: 10_000 });
    answer = { status: 500, body: { error: 'broken' } };
    await pollUntil('the page stale', async () => {
      const connection = (await readPage(page)).connection;
      if (!connection.startsWith('stale')) throw new NotYet(connection);
    }, { timeoutMs: 10_000 });
    assert.match(await page.locator('#error').innerText(), /HTTP 500/);
  });
});
