// hash32 hashes the UTF-8 bytes TextEncoder gives (a lone surrogate as U+FFFD) without making
// them: checked against FNV-1a over TextEncoder's bytes, on chosen and on seeded random strings.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hash32 } from '../../src/core/hash.ts';

function reference(text: string): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) h = Math.imul(h ^ byte, 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

test('hash32 is FNV-1a (with murmur3\'s finalizer) over TextEncoder\'s UTF-8', () => {
  const chosen = ['', 'a', 'key-0', '\u007f', '\u0080', '\u07ff', '\u0800', 'é', 'ж', '中文', '\uffff', '😀', 'a😀b', '\ud800', '\udc00', 'x\udbff', '\udc00\ud800', '\ud83d\ude00\ud83d'];
  for (const text of chosen) assert.equal(hash32(text), reference(text), JSON.stringify(text));
  // Seeded: the same strings every run.
  let seed = 12345;
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
  const edges = [0x41, 0x7f, 0x80, 0x7ff, 0x800, 0xd7ff, 0xd800, 0xdbff, 0xdc00, 0xdfff, 0xe000, 0xfffd, 0xffff];
  for (let n = 0; n < 20_000; n++) {
    let text = '';
    for (let i = next() % 10; i > 0; i--) text += String.fromCharCode(next() % 2 === 0 ? (edges[next() % edges.length] as number) : next() % 0x10000);
    assert.equal(hash32(text), reference(text), JSON.stringify(text));
  }
});
