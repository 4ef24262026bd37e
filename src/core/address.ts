import type { NodeAddress } from './types.ts';

const ADDRESS_PATTERN = /^([^\s:]+):(\d{1,5})$/;

/** True for `host:port` with a port in 1..65535. */
export function isNodeAddress(value: unknown): value is NodeAddress {
  if (typeof value !== 'string') return false;
  const match = ADDRESS_PATTERN.exec(value);
  if (!match) return false;
  const port = Number(match[2]);
  return port >= 1 && port <= 65535;
}

/** Order addresses as a person reads them: IPv4 octet by octet, then port; others by text. */
export function compareAddresses(a: NodeAddress, b: NodeAddress): number {
  const ka = addressKey(a);
  const kb = addressKey(b);
  for (let i = 0; i < Math.min(ka.length, kb.length); i++) {
    const x = ka[i] as number | string;
    const y = kb[i] as number | string;
    if (x === y) continue;
    if (typeof x === 'number' && typeof y === 'number') return x - y;
    return String(x) < String(y) ? -1 : 1;
  }
  return ka.length - kb.length;
}

function addressKey(address: NodeAddress): (number | string)[] {
  const colon = address.lastIndexOf(':');
  const host = colon >= 0 ? address.slice(0, colon) : address;
  const port = colon >= 0 ? Number(address.slice(colon + 1)) : 0;
  const octets = host.split('.');
  if (octets.length === 4 && octets.every((o) => /^\d{1,3}$/.test(o))) {
    return [...octets.map(Number), port];
  }
  return [host, port];
}

export function sortAddresses(addresses: Iterable<NodeAddress>): NodeAddress[] {
  return [...new Set(addresses)].sort(compareAddresses);
}
