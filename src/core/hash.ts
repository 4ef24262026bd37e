// A fast, stable 32-bit hash of strings, the same on every node and platform.

/**
 * FNV-1a over the UTF-8 bytes, then murmur3's finalizer so nearby keys spread over all bits. The
 * bytes are those of TextEncoder (a lone surrogate is U+FFFD), made on the fly without a buffer.
 */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    let code = text.charCodeAt(i);
    if (code < 0x80) {
      h = Math.imul(h ^ code, 0x01000193);
      continue;
    }
    if (code < 0x800) {
      h = Math.imul(h ^ (0xc0 | (code >> 6)), 0x01000193);
      h = Math.imul(h ^ (0x80 | (code & 0x3f)), 0x01000193);
      continue;
    }
    if (code >= 0xd800 && code <= 0xdfff) {
      const next = i + 1 < text.length ? text.charCodeAt(i + 1) : 0;
      if (code <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        code = 0x10000 + ((code - 0xd800) << 10) + (next - 0xdc00);
        i++;
        h = Math.imul(h ^ (0xf0 | (code >> 18)), 0x01000193);
        h = Math.imul(h ^ (0x80 | ((code >> 12) & 0x3f)), 0x01000193);
        h = Math.imul(h ^ (0x80 | ((code >> 6) & 0x3f)), 0x01000193);
        h = Math.imul(h ^ (0x80 | (code & 0x3f)), 0x01000193);
        continue;
      }
      code = 0xfffd;
    }
    h = Math.imul(h ^ (0xe0 | (code >> 12)), 0x01000193);
    h = Math.imul(h ^ (0x80 | ((code >> 6) & 0x3f)), 0x01000193);
    h = Math.imul(h ^ (0x80 | (code & 0x3f)), 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
