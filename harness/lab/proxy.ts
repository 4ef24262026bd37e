// Added latency without netem: a TCP relay in the lab's process. iptables DNAT in the source
// node's namespace sends its connections to the target's :8090 here (on the bridge address); each
// chunk is delivered `delayMs` after it arrived, in order, in both directions of the connection.
//
// The relay also honours the lab's packet-level faults: the lab's iptables rules cannot see through
// it (the target sees the bridge address as the source), so while a fault drops packets from A to
// B, data from A to B waits here, as TCP would retransmit it after the fault heals.

import { createServer, connect } from 'node:net';
import type { Server, Socket } from 'node:net';

/** Stop reading from a side while this much is queued towards the other. */
const QUEUE_BYTES_MAX = 4 * 1024 * 1024;
/** While a fault blocks a direction, queued data is looked at again this often. */
const BLOCKED_RECHECK_MS = 50;
const CONNECT_TIMEOUT_MS = 2_000;

export type LatencyProxyOptions = {
  /** Address to listen on (the bridge address, reachable from every namespace). */
  listenHost: string;
  targetHost: string;
  targetPort: number;
  delayMs: number;
  /** Whether packets from the source node to the target (`'forward'`) or back (`'backward'`) are dropped now. */
  blocked: (direction: 'forward' | 'backward') => boolean;
};

type Chunk = { data: Buffer; dueMs: number } | { end: true; dueMs: number };

/** One direction of one relayed connection: a delayed, ordered queue from `from` to `to`. */
class DelayedPipe {
  readonly #from: Socket;
  readonly #to: Socket;
  readonly #delayMs: number;
  readonly #blocked: () => boolean;
  readonly #queue: Chunk[] = [];
  #queuedBytes = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(from: Socket, to: Socket, delayMs: number, blocked: () => boolean) {
    this.#from = from;
    this.#to = to;
    this.#delayMs = delayMs;
    this.#blocked = blocked;
    from.on('data', (data: Buffer) => {
      this.#push({ data, dueMs: performance.now() + this.#delayMs });
      this.#queuedBytes += data.length;
      if (this.#queuedBytes > QUEUE_BYTES_MAX) from.pause();
    });
    from.on('end', () => this.#push({ end: true, dueMs: performance.now() + this.#delayMs }));
  }

  #push(chunk: Chunk): void {
    this.#queue.push(chunk);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#queue.length === 0) return;
    const head = this.#queue[0]!;
    const waitMs = this.#blocked() ? BLOCKED_RECHECK_MS : Math.max(0, head.dueMs - performance.now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#flush();
    }, waitMs);
  }

  #flush(): void {
    const now = performance.now();
    while (this.#queue.length > 0 && !this.#blocked() && this.#queue[0]!.dueMs <= now) {
      const chunk = this.#queue.shift()!;
      if ('end' in chunk) {
        this.#to.end();
        continue;
      }
      this.#queuedBytes -= chunk.data.length;
      if (!this.#to.destroyed) this.#to.write(chunk.data);
    }
    if (this.#queuedBytes <= QUEUE_BYTES_MAX && this.#from.isPaused()) this.#from.resume();
    this.#schedule();
  }

  stop(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#queue.length = 0;
  }
}

export class LatencyProxy {
  readonly options: LatencyProxyOptions;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #pipes = new Set<DelayedPipe>();
  #port = 0;

  private constructor(options: LatencyProxyOptions) {
    this.options = options;
    this.#server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (client) => this.#relay(client));
  }

  static async start(options: LatencyProxyOptions): Promise<LatencyProxy> {
    const proxy = new LatencyProxy(options);
    await new Promise<void>((resolve, reject) => {
      proxy.#server.once('error', reject);
      proxy.#server.listen({ host: options.listenHost, port: 0 }, () => {
        proxy.#server.off('error', reject);
        resolve();
      });
    });
    const address = proxy.#server.address();
    if (address === null || typeof address === 'string') throw new Error('latency proxy has no port');
    proxy.#port = address.port;
    return proxy;
  }

  get port(): number {
    return this.#port;
  }

  #relay(client: Socket): void {
    const upstream = connect({ host: this.options.targetHost, port: this.options.targetPort, allowHalfOpen: true });
    this.#sockets.add(client);
    this.#sockets.add(upstream);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const connectTimer = setTimeout(() => upstream.destroy(new Error('connect timeout')), CONNECT_TIMEOUT_MS);
    const forward = new DelayedPipe(client, upstream, this.options.delayMs, () => this.options.blocked('forward'));
    const backward = new DelayedPipe(upstream, client, this.options.delayMs, () => this.options.blocked('backward'));
    this.#pipes.add(forward);
    this.#pipes.add(backward);
    let tornDown = false;
    const teardown = (): void => {
      if (tornDown) return;
      tornDown = true;
      clearTimeout(connectTimer);
      forward.stop();
      backward.stop();
      this.#pipes.delete(forward);
      this.#pipes.delete(backward);
      client.destroy();
      upstream.destroy();
      this.#sockets.delete(client);
      this.#sockets.delete(upstream);
    };
    upstream.once('connect', () => {
      clearTimeout(connectTimer);
      client.resume();
    });
    // An error resets both sides at once; a closed side leaves the other time to flush what is queued.
    for (const socket of [client, upstream]) {
      socket.on('error', teardown);
      socket.on('close', () => setTimeout(teardown, this.options.delayMs + 200).unref());
    }
  }

  /** Stops listening and resets every relayed connection (the nodes reconnect directly). */
  async close(): Promise<void> {
    for (const pipe of this.#pipes) pipe.stop();
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
