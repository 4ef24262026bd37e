// What a stored value may be. Values are any JSON, stored and returned exactly; two kinds of JSON
// cannot be: numbers beyond a double's range (JSON.parse turns 1e400 into Infinity, which prints
// as null) and nesting so deep that serialising it (replication, sync, anti-entropy, the disk)
// overflows the stack. Both are refused where they enter, so no stored value can make a later
// step throw.

/** Deepest nesting of arrays and objects in a stored value (a scalar is 0, `[]` is 1). */
export const VALUE_DEPTH_MAX = 64;

export const VALUE_TOO_DEEP = `Value nests arrays or objects deeper than ${VALUE_DEPTH_MAX} levels`;
export const VALUE_NOT_FINITE = 'Value holds a number outside the range of a double (such as 1e400)';

export type JsonFault = 'depth' | 'number';

/**
 * Why `value` (as JSON.parse returns it) is not acceptable with nesting up to `depthMax`, or null.
 * Iterative, so a value of any depth is checked without recursion; it stops at the first fault.
 */
export function bodyFault(value: unknown, depthMax: number): JsonFault | null {
  const stack: { value: unknown; depth: number }[] = [{ value, depth: 0 }];
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    const current = item.value;
    if (typeof current === 'number') {
      if (!Number.isFinite(current)) return 'number';
      continue;
    }
    if (typeof current !== 'object' || current === null) continue;
    const depth = item.depth + 1;
    if (depth > depthMax) return 'depth';
    const children = Array.isArray(current) ? current : Object.values(current);
    for (const child of children) {
      if (typeof child === 'object' ? child !== null : typeof child === 'number') stack.push({ value: child, depth });
    }
  }
  return null;
}

/** Why a value cannot be stored, as the client's error message, or null. */
export function valueFault(value: unknown): string | null {
  const fault = bodyFault(value, VALUE_DEPTH_MAX);
  if (fault === 'depth') return VALUE_TOO_DEEP;
  if (fault === 'number') return VALUE_NOT_FINITE;
  return null;
}

/**
 * Approximate bytes a version takes in memory and on the wire: its JSON length, counting strings
 * without their escapes. Walks the value without serialising it (a 1 MB string costs nothing).
 */
export function versionBytes(version: unknown): number {
  let bytes = 0;
  const stack: unknown[] = [version];
  for (let current = stack.pop(); stack.length > 0 || current !== undefined; current = stack.pop()) {
    if (typeof current === 'string') bytes += current.length + 2;
    else if (typeof current === 'number') bytes += 8;
    else if (typeof current === 'boolean' || current === null) bytes += 5;
    else if (Array.isArray(current)) {
      bytes += 2 + current.length;
      for (const item of current) stack.push(item);
    } else if (typeof current === 'object') {
      bytes += 2;
      for (const [key, item] of Object.entries(current)) {
        bytes += key.length + 4;
        stack.push(item);
      }
    }
  }
  return bytes;
}
