// POST /internal/kv-batch: several forwarded key-value requests to one member in one request
// between nodes, answered as each is served. The format both ends speak, and the serving end.
//
// The request is JSON: `{"items":[{"method","path","hops","deadline","body"}, ...]}`, each item what
// a forwarded /kvs/<key> request would have carried (its x-kvs-hops and x-kvs-deadline headers, the
// client's body as it came, absent when there was none). The answer is 200 with one line per item,
// in the order they are served, not the order sent: `<index> <status> <JSON body>\n`. A parked
// item (waiting for its causal dependencies) holds up no other item's line; lines served in one
// turn of the event loop go out in one write.

import { bodyFault } from '../core/json-value.ts';
import type { KvMethod } from '../core/node-core.ts';
import type { HttpReply, HttpRequest } from './http-server.ts';
import type { PeerHeaders } from './peer-gate.ts';
import { FORWARD_BATCH_ITEMS_MAX, FORWARD_HOPS_MAX } from './limits.ts';
import { BadRequest, RawJson } from './replies.ts';
import { CLIENT_BODY_DEPTH_MAX } from './request-classes.ts';

export const KV_BATCH_PATH = '/internal/kv-batch';
export const KV_BATCH_CONTENT_TYPE = 'application/x-ndjson';

/** One forwarded request of a batch, checked. */
export interface BatchItem {
  method: KvMethod;
  /** `/kvs/<key>`, still percent-encoded. */
  path: string;
  hops: number;
  deadlineMs: number | null;
  /** The client's body, parsed (undefined when it sent none). */
  body: unknown;
}

const METHODS: ReadonlySet<string> = new Set(['GET', 'PUT', 'DELETE']);
const ITEM_FIELDS: ReadonlySet<string> = new Set(['method', 'path', 'hops', 'deadline', 'body']);

/** The JSON text of one item (`bodyText`: the client's body as JSON text, undefined when none). */
export function encodeItem(method: KvMethod, path: string, hops: number, deadlineMs: number, bodyText: string | undefined): string {
  const body = bodyText === undefined ? '' : `,"body":${bodyText}`;
  return `{"method":"${method}","path":${JSON.stringify(path)},"hops":${hops},"deadline":${deadlineMs}${body}}`;
}

/** The request body of a batch from its items' texts (encodeItem). */
export function encodeBatch(items: readonly string[]): string {
  return `{"items":[${items.join(',')}]}`;
}

/**
 * The items of a batch's body, each checked as a forwarded request's headers and body are: a
 * malformed batch is refused whole (400), since only a node sends one and a node sends none.
 */
export function parseBatch(body: unknown): BatchItem[] {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new BadRequest('A batch is an object with items');
  const items = (body as Record<string, unknown>).items;
  if (!Array.isArray(items) || items.length === 0 || items.length > FORWARD_BATCH_ITEMS_MAX) {
    throw new BadRequest(`A batch holds 1 to ${FORWARD_BATCH_ITEMS_MAX} items`);
  }
  return items.map((item, index) => parseItem(item, index));
}

function parseItem(item: unknown, index: number): BatchItem {
  const fault = (what: string): BadRequest => new BadRequest(`Batch item ${index}: ${what}`);
  if (typeof item !== 'object' || item === null || Array.isArray(item)) throw fault('not an object');
  const fields = item as Record<string, unknown>;
  for (const name of Object.keys(fields)) if (!ITEM_FIELDS.has(name)) throw fault(`unknown field ${JSON.stringify(name.slice(0, 32))}`);
  const { method, path, hops, deadline } = fields;
  if (typeof method !== 'string' || !METHODS.has(method)) throw fault('method must be GET, PUT or DELETE');
  if (typeof path !== 'string' || !path.startsWith('/kvs/') || path.length > 16_384) throw fault('path must be /kvs/<key>');
  if (!Number.isInteger(hops) || (hops as number) < 1 || (hops as number) > FORWARD_HOPS_MAX) throw fault(`hops must be a whole number from 1 to ${FORWARD_HOPS_MAX}`);
  if (deadline !== null && (!Number.isSafeInteger(deadline) || (deadline as number) < 1)) throw fault('deadline must be a time in milliseconds since 1970, or null');
  const body = Object.hasOwn(fields, 'body') ? fields.body : undefined;
  if (body !== undefined && bodyFault(body, CLIENT_BODY_DEPTH_MAX) !== null) throw fault(`body nests deeper than ${CLIENT_BODY_DEPTH_MAX} levels, as a client's may not`);
  return { method: method as KvMethod, path, hops: hops as number, deadlineMs: deadline as number | null, body };
}

/** One line of the answer: the item's index, its status and its JSON body. */
export function replyLine(index: number, reply: HttpReply): string {
  let text = reply.body instanceof RawJson ? reply.body.text : (JSON.stringify(reply.body) ?? 'null');
  // JSON.stringify never writes a raw line break; a relayed text might (whitespace between tokens).
  if (text.includes('\n') || text.includes('\r')) text = JSON.stringify(JSON.parse(text));
  return `${index} ${reply.status} ${text}\n`;
}

/** `replyLine`, or a 500's line when the reply's relayed text is not JSON. */
function safeLine(index: number, reply: HttpReply): string {
  try {
    return replyLine(index, reply);
  } catch {
    return replyLine(index, { status: 500, body: { error: 'Internal error' } });
  }
}

/** A line of the answer, read: undefined when it is not one (the item then fails as unanswered). */
export function parseLine(line: string): { index: number; status: number; text: string } | undefined {
  const first = line.indexOf(' ');
  const second = first < 0 ? -1 : line.indexOf(' ', first + 1);
  if (second < 0) return undefined;
  const index = Number(line.slice(0, first));
  const status = Number(line.slice(first + 1, second));
  if (!Number.isSafeInteger(index) || index < 0 || !Number.isInteger(status) || status < 100 || status > 599) return undefined;
  return { index, status, text: line.slice(second + 1) };
}

/** What serving a batch's items takes from the node. */
export interface BatchServer {
  /** Serves one item as the forwarded request it stands for (`peer`: its node-to-node headers). */
  serve(request: HttpRequest, peer: PeerHeaders): Promise<HttpReply>;
  /** An item whose serving threw (answered 500). */
  onError(error: unknown, item: BatchItem): void;
  /** Runs a callback once the current turn is done: the lines answered in it go out in one write. */
  soon(callback: () => void): void;
}

/**
 * The answer to a batch (`batch`: its request, `peer`: its node-to-node headers): each item is
 * served as it would have been on its own, and its line goes out when it is answered.
 */
export function serveBatch(items: readonly BatchItem[], batch: HttpRequest, peer: PeerHeaders, server: BatchServer): HttpReply {
  const serveItem = async (item: BatchItem): Promise<HttpReply> => {
    const one: HttpRequest = { method: item.method, path: item.path, headers: {}, body: item.body, remoteAddress: batch.remoteAddress };
    try {
      return await server.serve(one, { ...peer, hops: item.hops, deadlineMs: item.deadlineMs, downReport: null });
    } catch (error) {
      server.onError(error, item);
      return { status: 500, body: { error: 'Internal error' } };
    }
  };
  return {
    status: 200,
    body: undefined,
    contentType: KV_BATCH_CONTENT_TYPE,
    stream: (write) =>
      new Promise<void>((resolve) => {
        let pending = '';
        let left = items.length;
        let scheduled = false;
        const flush = (): void => {
          scheduled = false;
          if (pending.length > 0) write(pending);
          pending = '';
          if (left === 0) resolve();
        };
        items.forEach((item, index) => {
          serveItem(item).then((reply) => {
            pending += safeLine(index, reply);
            left--;
            if (!scheduled) {
              scheduled = true;
              server.soon(flush);
            }
          });
        });
      }),
  };
}
