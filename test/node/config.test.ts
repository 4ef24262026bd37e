// The options this runtime adds for hostile clients and overload: defaults, parsing, refusals.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, DEFAULTS, loadConfig } from '../../src/node/config.ts';

const base = { SOCKET_ADDRESS: '10.10.0.2:8090', VIEW: '10.10.0.2:8090,10.10.0.3:8090' };

test('overload bounds have defaults, and each can be set', () => {
  const defaults = loadConfig(base);
  assert.equal(defaults.clientRequestsMax, DEFAULTS.clientRequestsMax);
  assert.equal(defaults.clientBytesMax, DEFAULTS.clientBytesMax);
  assert.equal(defaults.replicationQueueBytesMax, DEFAULTS.replicationQueueBytesMax);
  assert.equal(defaults.pendingBytesMax, DEFAULTS.pendingBytesMax);
  assert.deepEqual(defaults.peerSourceIps, []);
  const set = loadConfig({
    ...base,
    CLIENT_REQUESTS_MAX: '10',
    CLIENT_BYTES_MAX: '4194304',
    REPLICATION_QUEUE_BYTES_MAX: '1048576',
    PENDING_BYTES_MAX: '2048',
    PEER_SOURCE_IPS: '10.10.0.1, ::1',
  });
  assert.deepEqual(
    [set.clientRequestsMax, set.clientBytesMax, set.replicationQueueBytesMax, set.pendingBytesMax, set.peerSourceIps],
    [10, 4194304, 1048576, 2048, ['10.10.0.1', '::1']],
  );
});

test('bounds that cannot work are refused at start, naming the variable', () => {
  assert.throws(() => loadConfig({ ...base, CLIENT_REQUESTS_MAX: '0' }), (e) => e instanceof ConfigError && /CLIENT_REQUESTS_MAX/.test(e.message));
  assert.throws(() => loadConfig({ ...base, REPLICATION_QUEUE_BYTES_MAX: '-1' }), (e) => e instanceof ConfigError && /REPLICATION_QUEUE_BYTES_MAX/.test(e.message));
  assert.throws(() => loadConfig({ ...base, PEER_SOURCE_IPS: '10.10.0.1,proxy.local' }), (e) => e instanceof ConfigError && /PEER_SOURCE_IPS/.test(e.message));
  // One body of the largest size must fit the in-flight bound, or it would be refused for ever.
  assert.throws(
    () => loadConfig({ ...base, MAX_BODY_BYTES: '8388608', CLIENT_BYTES_MAX: '4194304' }),
    (e) => e instanceof ConfigError && /CLIENT_BYTES_MAX/.test(e.message) && /MAX_BODY_BYTES/.test(e.message),
  );
});
