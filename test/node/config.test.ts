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

test('addresses: IPv4 octets are 0..255 and host names well formed; a name that does not resolve yet is fine', () => {
  for (const bad of ['999.999.999.999:8090', '10.10.0.256:8090', '10.10.0:8090', '10.10.0.2.5:8090', 'bad_host:80', '-lead.example:80', 'a..b:80', '10.10.0.2:0', '10.10.0.2:65536']) {
    assert.throws(() => loadConfig({ SOCKET_ADDRESS: bad }), (e) => e instanceof ConfigError && e.message.includes(JSON.stringify(bad)), bad);
    assert.throws(() => loadConfig({ ...base, VIEW: `${base.VIEW},${bad}` }), (e) => e instanceof ConfigError && /VIEW entry/.test(e.message), bad);
  }
  // Peers in Kubernetes are named before they resolve.
  const named = loadConfig({ SOCKET_ADDRESS: 'kvs-0.kvs.default.svc.cluster.local:8090', VIEW: 'kvs-0.kvs.default.svc.cluster.local:8090,kvs-1.kvs:8090' });
  assert.deepEqual(named.view, ['kvs-0.kvs.default.svc.cluster.local:8090', 'kvs-1.kvs:8090']);
});

test('a SHARD_COUNT the VIEW cannot fill is refused, with what would work', () => {
  const four = { SOCKET_ADDRESS: '10.10.0.2:8090', VIEW: '10.10.0.2:8090,10.10.0.3:8090,10.10.0.4:8090,10.10.0.5:8090' };
  assert.equal(loadConfig({ ...four, SHARD_COUNT: '2' }).shardCount, 2);
  assert.equal(loadConfig({ ...four, SHARD_COUNT: '1' }).shardCount, 1);
  assert.equal(loadConfig({ SOCKET_ADDRESS: '10.10.0.2:8090', SHARD_COUNT: '1' }).shardCount, 1, 'one shard of one node');
  for (const count of ['3', '1000']) {
    assert.throws(
      () => loadConfig({ ...four, SHARD_COUNT: count }),
      (e) => e instanceof ConfigError && e.message.includes(`SHARD_COUNT=${count}`) && /VIEW has 4/.test(e.message) && /SHARD_COUNT=2/.test(e.message),
      count,
    );
  }
});
