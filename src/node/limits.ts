// Every fixed limit and timing constant of the runtime, each with why it has its value. What an
// operator tunes is in config.ts (environment variables); these are not meant to be tuned.

import { VALUE_DEPTH_MAX } from '../core/json-value.ts';
import { RESHARD_WAIT_MS as CORE_RESHARD_WAIT_MS } from '../core/node-core.ts';

// ---------------------------------------------------------------- client requests

/**
 * How long a write waits for a reshard in progress to commit before its 503. Below the peers'
 * request timeout, so a node forwarding such a write gets the 503 instead of suspecting its peer.
 */
export const RESHARD_WAIT_MS = CORE_RESHARD_WAIT_MS;

/**
 * A forwarded request is relayed at most this many times, so maps that disagree cannot loop it.
 * One relay is the normal case; the others leave room for nodes whose maps are an epoch apart.
 */
export const FORWARD_HOPS_MAX = 3;
/**
 * Forwarded requests to one member in one POST /internal/kv-batch at most (FORWARD_BATCH_MAX, the
 * setting, may ask for fewer), and the bytes of its body: a batch is what arrives in one turn of
 * the event loop, a few dozen requests on a busy node, and a large request goes on its own.
 */
export const FORWARD_BATCH_ITEMS_MAX = 64;
export const FORWARD_BATCH_BYTES_MAX = 1024 * 1024;

// ---------------------------------------------------------------- requests between nodes

/** Internal requests (transfers, syncs, batches) may be larger than client requests. */
export const INTERNAL_BODY_BYTES_MAX = 64 * 1024 * 1024;
/** Peers' requests in flight at once, and their body bytes: far above what peers send, a bound still. */
export const PEER_REQUESTS_MAX = 1024;
export const PEER_BYTES_MAX = 256 * 1024 * 1024;
/** Internal bodies wrap values a few levels deep (versions in a list in a request). */
export const PEER_BODY_DEPTH_MAX = VALUE_DEPTH_MAX + 8;

/**
 * Keep-alive connections per peer for data (replication, syncs, forwarding): enough that a slow
 * transfer does not hold up forwarded requests, few enough that a cluster's connections stay far
 * below CONNECTIONS_MAX.
 */
export const DATA_CONNECTIONS_PER_PEER = 8;
/**
 * A replication request to a peer starts at least this long after the previous one to that peer:
 * under load the writes of those milliseconds go in one batch (one request, one signature, one
 * write to disk at the peer) instead of one request each. Replication lags by at most this much
 * more; a write after a quiet spell is sent at once.
 */
export const REPLICATION_PACE_MS = 4;
/**
 * The pace while a peer is written to steadily (its last batch carried more than one version):
 * every request wakes a replica that is otherwise idle, and such a wake-up costs far more than the
 * versions it carries (measured: PUT at 8 connections through 6 nodes on 2 cores, ~2,450/s at a
 * steady 10 ms against ~1,900/s at 4 ms). A lone write brings the pace back to REPLICATION_PACE_MS.
 */
export const REPLICATION_BUSY_PACE_MS = 10;
/** Keep-alive connections per peer for the control lane (pings, down reports, maps): small requests, rarely two at once. */
export const CONTROL_CONNECTIONS_PER_PEER = 2;
/**
 * An idle connection to a peer is closed after this long: below the peer's KEEP_ALIVE_MS, so this
 * side closes first and never sends a request on a connection the peer is closing.
 */
export const PEER_KEEP_ALIVE_MS = 30_000;
/**
 * Bytes of one peer's answer at most (a full copy of a large shard comes in one answer): past it the
 * call fails as the peer unreachable. Just below V8's longest string, which the answer becomes.
 */
export const PEER_ANSWER_BYTES_MAX = 500 * 1024 * 1024;

/**
 * Small requests answered from memory (on the control lane: a down report, fetching or pushing the
 * shard map; and a key count relayed to a member of the shard): 2 s is ample for a node that is
 * up, and one that takes longer is not waited for (a map is fetched again at the next ping).
 */
export const CONTROL_TIMEOUT_MS = 2000;

/**
 * GET /status/store asks every node for its /status at once, answered from memory: a node that
 * takes longer than 1 s is shown as down rather than holding up the operator's table or dashboard
 * (which asks again every second).
 */
export const STORE_STATUS_TIMEOUT_MS = 1000;
/**
 * Requests for /status/store that arrive while one is being gathered, or within this long after,
 * get the same answer: each costs a request to every node, and a flood of them must not become a
 * flood between nodes. Half the dashboard's poll interval, so a page still sees every second.
 */
export const STORE_STATUS_FRESH_MS = 500;

// ---------------------------------------------------------------- joining

/**
 * At start, each node of VIEW is asked for its shard map (and a node announces itself) with this
 * timeout: a node that is up answers from memory well within it, and one that is not must not hold
 * up the start (the asking repeats until STARTUP_WAIT_MS).
 */
export const DISCOVERY_TIMEOUT_MS = 1000;
export const ANNOUNCE_TIMEOUT_MS = 1000;
/** Discovery asks again this often while no node has answered (until STARTUP_WAIT_MS): peers starting together find each other soon. */
export const DISCOVERY_POLL_MS = 250;

// ---------------------------------------------------------------- moving data

/**
 * Bytes of versions per request that moves versions in bulk (a reshard transfer, a repair, a late
 * transfer; and per replication batch): large enough that per-request costs do not dominate, small
 * enough that one request is far below INTERNAL_BODY_BYTES_MAX and well within a request timeout.
 */
export const TRANSFER_BYTES_MAX = 1024 * 1024;
/** Digest exchanges in one anti-entropy round (each answer holds about REPAIR_BYTES_MAX of versions). */
export const REPAIR_EXCHANGES_MAX = 64;
/** A peer is asked for a sync at most this often. */
export const SYNC_INTERVAL_MS_MIN = 250;
/**
 * A late transfer to a node that cannot take it yet (down, not in the new epoch yet, or frozen for
 * the next reshard) is tried this often, for `lateTransferWindowMs` in all. An owner frozen for a
 * reshard refuses it for as long as the freeze lasts: up to the prepare phase (at most
 * RESHARD_TIMEOUT_MS, when the coordinator waits for a node that does not answer) and then up to
 * RESHARD_TIMEOUT_MS from phase 2. Giving up sooner would drop acknowledged writes that only the
 * late sender holds; an owner that stays away longer is left to anti-entropy.
 */
export const LATE_TRANSFER_RETRY_MS = 1000;

/** How long a late transfer keeps trying: two freezes and a request, at least 20 s. */
export function lateTransferWindowMs(config: { reshardTimeoutMs: number; requestTimeoutMs: number }): number {
  return Math.max(20_000, 2 * config.reshardTimeoutMs + config.requestTimeoutMs);
}

// ---------------------------------------------------------------- the HTTP server

/**
 * After answering a request early (413, or 503 when shedding), the server keeps reading and
 * discarding its body for up to this many bytes and this long, then closes: a client that is still
 * sending reads the answer instead of a connection reset.
 */
export const LINGER_BYTES_MAX = 128 * 1024 * 1024;
export const LINGER_MS_MAX = 10_000;
/**
 * Headers must arrive within this time (408 otherwise); a whole request within REQUEST_MS_MAX.
 * Generous for any client, short enough that a connection trickling a request in is not held.
 */
export const HEADERS_MS_MAX = 20_000;
export const REQUEST_MS_MAX = 30_000;
/** How often Node checks those two timeouts. */
export const TIMEOUT_CHECK_INTERVAL_MS = 1000;
/** Open connections at most; beyond, Node closes a new connection as soon as it is accepted. */
export const CONNECTIONS_MAX = 10_000;
/** A TLS handshake must be done within this time; the socket is destroyed otherwise. */
export const HANDSHAKE_MS_MAX = 10_000;
/**
 * An idle keep-alive connection is closed after this long: longer than clients keep idle
 * connections (peers: PEER_KEEP_ALIVE_MS; many clients and load balancers: 60 s), so the client
 * side closes first.
 */
export const KEEP_ALIVE_MS = 65_000;
/** A 503 from admission control asks the client to come back after this many seconds. */
export const RETRY_AFTER_S = 1;
/** The body of a request shed for overload is read with this pause after each chunk (see DRAIN_SHED). */
export const SHED_DRAIN_PAUSE_MS = 100;
