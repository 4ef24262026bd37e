// Headers that only nodes send each other (beside x-kvs-from and x-kvs-incarnation, which the
// link transport sets on every request, and x-kvs-auth, the authenticator).

/** Headers that only nodes send each other. */
export const PEER_HEADER_PREFIX = 'x-kvs-';
/** How many times a forwarded request was relayed already (at most FORWARD_HOPS_MAX). */
export const HOPS_HEADER = 'x-kvs-hops';
/**
 * Wall-clock time (ms) after which the node that forwarded a write has given up on it. A copy that
 * the network delivers later (a partition held it) is refused, not applied behind the client's back.
 * Nodes' clocks must agree to well within REQUEST_TIMEOUT_MS.
 */
export const DEADLINE_HEADER = 'x-kvs-deadline';
/** Set on DELETE /view when a node reports a peer down (the receiver checks before it removes). */
export const DOWN_REPORT_HEADER = 'x-kvs-down-report';
