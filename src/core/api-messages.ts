// Strings of the public API. Clients compare these byte for byte (../shared/spec/api.md).

export const MESSAGES = {
  added: 'added',
  alreadyPresent: 'already present',
  deleted: 'deleted',
  noSuchReplica: 'View has no such replica',
  created: 'created',
  replaced: 'replaced',
  found: 'found',
  noValue: 'PUT request does not specify a value',
  keyTooLong: 'Key is too long',
  keyMissing: 'Key does not exist',
  causalUnavailable: 'Causal dependencies not satisfied; try again later',
  nodeAddedToShard: 'node added to shard',
  resharded: 'resharded',
  notEnoughNodes: 'Not enough nodes to provide fault tolerance with requested shard count',
} as const;

/** Keys longer than this many characters (Unicode code points) are refused. */
export const KEY_LENGTH_MAX = 50;
