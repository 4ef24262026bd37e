// The authenticator between nodes: its text is the documented one (a MAC computed from the
// documented canonical form by hand verifies), signing many bodies in a row never reuses another
// body's hash, and every check still refuses what it refused (a changed body, path or header, a
// replay, a stale time, another secret).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { AUTH_HEADER, hmacKey, hmacSha256, PeerAuth, SKEW_MS } from '../../src/node/peer-auth.ts';

const SECRET = 'unit-test-secret';

/** The MAC input as peer-auth.ts's header comment documents it, built the plain way. */
function documentedMac(secret: string, parts: { method: string; path: string; body: string; headers: Record<string, string> }, time: string, nonce: string): string {
  const headers = Object.keys(parts.headers)
    .filter((name) => name.startsWith('x-kvs-') && name !== AUTH_HEADER)
    .sort()
    .map((name) => `${name}:${parts.headers[name]}`);
  const bodyHash = createHash('sha256').update(parts.body, 'utf8').digest('base64url');
  const text = ['v1', parts.method, parts.path, bodyHash, ...headers, time, nonce].join('\n');
  return createHmac('sha256', Buffer.from(secret, 'utf8')).update(text, 'utf8').digest('base64url');
}

test('the authenticator is HMAC-SHA256 over the documented canonical form', () => {
  const auth = new PeerAuth([SECRET], () => 1_700_000_000_000);
  const headers = { 'x-kvs-from': '10.0.0.1:8090', 'x-kvs-incarnation': 'abc', 'x-kvs-hops': '1', 'x-kvs-deadline': '1700000005000', 'content-type': 'application/json' };
  const parts = { method: 'PUT', path: '/kvs/k', body: '{"value":1}', headers };
  const signed = auth.sign(parts);
  const [version, time, nonce, mac] = signed.split('.') as [string, string, string, string];
  assert.equal(version, 'v1');
  assert.equal(time, '1700000000000');
  assert.equal(mac, documentedMac(SECRET, parts, time, nonce));
  // Without x-kvs-* headers and without a body.
  const bare = { method: 'GET', path: '/internal/ping', body: '', headers: {} };
  const [, time2, nonce2, mac2] = auth.sign(bare).split('.') as [string, string, string, string];
  assert.equal(mac2, documentedMac(SECRET, bare, time2, nonce2));
});

test('the HMAC made of two one-shot hashes is createHmac\'s, for short, block-long and long secrets and any text', () => {
  for (const secret of ['s'.repeat(16), 'k'.repeat(64), 'l'.repeat(65), 'é'.repeat(150)]) {
    for (const text of ['', 'v1\nGET\n/kvs/k', 'ключ 🔑 '.repeat(40)]) {
      const expected = createHmac('sha256', Buffer.from(secret, 'utf8')).update(text, 'utf8').digest('base64url');
      assert.equal(hmacSha256(hmacKey(Buffer.from(secret, 'utf8')), text).toString('base64url'), expected, `${secret.length} chars of secret, text ${JSON.stringify(text.slice(0, 20))}`);
    }
  }
});

test('bodies signed in a row each get their own hash (the same body twice, then another)', () => {
  const now = 1_700_000_000_000;
  const signer = new PeerAuth([SECRET], () => now);
  const checker = new PeerAuth([SECRET], () => now);
  const headers = { 'x-kvs-from': '10.0.0.1:8090' };
  for (const body of ['{"a":1}', '{"a":1}', '{"a":2}', '', '{"a":2}', '{"b":"x"}']) {
    const parts = { method: 'POST', path: '/internal/replicate', body, headers };
    const signed = signer.sign(parts);
    const [, time, nonce, mac] = signed.split('.') as [string, string, string, string];
    assert.equal(mac, documentedMac(SECRET, parts, time, nonce), `body ${JSON.stringify(body)}`);
    assert.deepEqual(checker.verify(signed, parts), { ok: true });
    // The same authenticator over another body does not verify.
    assert.equal(checker.verify(signer.sign(parts), { ...parts, body: `${body} ` }).ok, false);
  }
});

test('verify refuses a changed request, a replay, a stale time and another secret; accepts any secret of its list', () => {
  let now = 1_700_000_000_000;
  const signer = new PeerAuth([SECRET], () => now);
  const checker = new PeerAuth(['newer-secret', SECRET], () => now);
  const headers = { 'x-kvs-from': '10.0.0.1:8090', 'x-kvs-hops': '1' };
  const parts = { method: 'PUT', path: '/kvs/k', body: '{"value":1}', headers };
  const fresh = () => signer.sign(parts);
  assert.equal(checker.verify(fresh(), { ...parts, path: '/kvs/other' }).ok, false);
  assert.equal(checker.verify(fresh(), { ...parts, method: 'GET' }).ok, false);
  assert.equal(checker.verify(fresh(), { ...parts, headers: { ...headers, 'x-kvs-hops': '2' } }).ok, false);
  assert.equal(checker.verify(fresh(), { ...parts, headers: { ...headers, 'x-kvs-deadline': '1' } }).ok, false);
  // Other headers are not covered.
  const once = fresh();
  assert.deepEqual(checker.verify(once, { ...parts, headers: { ...headers, 'content-type': 'text/plain' } }), { ok: true });
  assert.deepEqual(checker.verify(once, parts), { ok: false, reason: 'authenticator already used' });
  const stale = fresh();
  now += SKEW_MS + 1;
  assert.equal(checker.verify(stale, parts).ok, false);
  const other = new PeerAuth(['not-ours'], () => now);
  assert.deepEqual(checker.verify(other.sign(parts), parts), { ok: false, reason: 'authenticator does not verify' });
  assert.deepEqual(checker.verify(undefined, parts), { ok: false, reason: 'no authenticator' });
  assert.deepEqual(checker.verify('v1.x', parts), { ok: false, reason: 'malformed authenticator' });
});
