import { assert } from './assert.ts';
import type { NodeAddress } from './types.ts';

const ADDRESS_PATTERN = /^([^\s:]+):(\d{1,5})$/;
/** A host name: dot-separated labels of letters, digits and inner hyphens, at most 253 characters. */
const HOST_NAME_PATTERN = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/**
 * True for `host:port` with a port in 1..65535, where the host is an IPv4 address (four octets of
 * 0..255) or a well-formed host name (which need not resolve yet).
 */
export function isNodeAddress(value: unknown): value is NodeAddress {
  return addressFault(value) === null;
}

/**
 * `text` as a NodeAddress, for an address made from trusted data (a constant, a test, a harness):
 * asserts the shape, so a malformed one is a bug. Input from a deployer, a client or a peer goes
 * through `isNodeAddress` / `addressFault` instead, and is refused with a reason.
 */
export function nodeAddress(text: string): NodeAddress {
  assert(isNodeAddress(text), () => `${JSON.stringify(text)} is not host:port`);
  return text;
}

/** Several addresses from trusted data; see `nodeAddress`. */
export function nodeAddresses(texts: readonly string[]): NodeAddress[] {
  return texts.map(nodeAddress);
}

/**
 * `text` as a NodeAddress without a check, where the text is already known to be an address: a key
 * of a clock or a member list that was validated when it entered (Object.keys yields plain strings),
 * or a row this node wrote itself. Costs nothing and changes nothing at run time.
 */
export function asNodeAddress(text: string): NodeAddress {
  return text as NodeAddress;
}

/** Why `value` is not `host:port`, in words for a deployer; null when it is. */
export function addressFault(value: unknown): string | null {
  if (typeof value !== 'string') return 'it is not a string';
  const match = ADDRESS_PATTERN.exec(value);
  if (!match) return 'it is not host:port';
  const port = Number(match[2]);
  if (port < 1 || port > 65535) return `port ${match[2]} is not in 1..65535`;
  const host = match[1] as string;
  if (/^[0-9.]+$/.test(host)) {
    const octets = host.split('.');
    if (octets.length !== 4 || octets.some((o) => !/^[0-9]{1,3}$/.test(o) || Number(o) > 255)) {
      return `${host} is not an IPv4 address (four numbers 0..255)`;
    }
    return null;
  }
  if (!HOST_NAME_PATTERN.test(host)) return `${host} is not a valid host name`;
  return null;
}

/**
 * Order addresses as a person reads them: IPv4 addresses first, octet by octet, then port; other
 * hosts after them by name, then port. Ties (e.g. zero-padded octets) fall back to the text, so
 * this is a total order and every node sorts a view alike.
 */
export function compareAddresses(a: NodeAddress, b: NodeAddress): number {
  const ka = addressKey(a);
  const kb = addressKey(b);
  if (ka.ipv4 !== null && kb.ipv4 !== null) {
    for (let i = 0; i < 4; i++) {
      const d = (ka.ipv4[i] as number) - (kb.ipv4[i] as number);
      if (d !== 0) return d;
    }
  } else if (ka.ipv4 !== null || kb.ipv4 !== null) {
    return ka.ipv4 !== null ? -1 : 1;
  } else if (ka.host !== kb.host) {
    return ka.host < kb.host ? -1 : 1;
  }
  if (ka.port !== kb.port) return ka.port - kb.port;
  return a === b ? 0 : a < b ? -1 : 1;
}

function addressKey(address: NodeAddress): { ipv4: number[] | null; host: string; port: number } {
  const colon = address.lastIndexOf(':');
  const host = colon >= 0 ? address.slice(0, colon) : address;
  const port = colon >= 0 ? Number(address.slice(colon + 1)) : 0;
  const octets = host.split('.');
  const ipv4 = octets.length === 4 && octets.every((o) => /^\d{1,3}$/.test(o)) ? octets.map(Number) : null;
  return { ipv4, host, port: Number.isFinite(port) ? port : 0 };
}

export function sortAddresses(addresses: Iterable<NodeAddress>): NodeAddress[] {
  return [...new Set(addresses)].sort(compareAddresses);
}
