// A fast, stable 32-bit hash of strings, the same on every node and platform.

const encoder = new TextEncoder();

/** FNV-1a over the UTF-8 bytes, then murmur3's finalizer so nearby keys spread over all bits. */
export function hash32(text: string): number {
  const bytes = encoder.encode(text);
  let h = 0x811c9dc5;
  for (const byte of bytes) {
    h ^= byte;
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
