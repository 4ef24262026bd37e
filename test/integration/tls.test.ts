// TLS between clients and nodes and between nodes (TLS_CERT, TLS_KEY, TLS_CA), with real processes
// and certificates made by openssl for this run: a cluster CA signing one certificate per node, and
// a foreign CA signing the certificate of a node that is not of this cluster (ports:
// test/helpers/ports.ts). The nodes run without CLUSTER_SECRET: TLS alone tells nodes from others.
//
// Every node listens on 127.0.0.1, the foreign one too: its address is as good as any node's, so
// only the certificates keep it out.

import { KvsClient } from '../../src/client/client.ts';
import { nodeAddress } from '../../src/core/address.ts';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Server } from 'node:http';
import { Agent } from 'undici';
import { startHttpServer } from '../../src/node/http-server.ts';
import { PeerClient, PeerUnreachableError } from '../../src/node/peer-client.ts';
import { Certificates, opensslMissing, type Pem } from '../helpers/certs.ts';
import { assertPortFree, NotYet, pollUntil } from '../helpers/cluster.ts';
import { call as httpCall, kvsPath, sortedAddresses, type NodeAddress } from '../helpers/http.ts';
import { portsFor } from '../helpers/ports.ts';
import { useCluster } from '../helpers/store.ts';

const ports = portsFor(import.meta.url);
const NODE_COUNT = 3;
/** Port indexes in the range: the node of the foreign CA, and a bare HTTPS server. */
const FOREIGN = 3;
const ECHO = 4;
/** How long the foreign node is watched, trying to join, while it must stay out. */
const FOREIGN_WINDOW_MS = 5_000;
const REQUEST_TIMEOUT_MS = 5_000;

interface Answer {
  status: number;
  body: any;
  text: string;
}

describe('TLS: HTTPS for clients, mutual TLS between nodes', { skip: opensslMissing() }, () => {
  let dir: string | undefined;
  let caFile = '';
  let echo: Server | undefined;
  const agents: Agent[] = [];
  let anonymous: Agent;
  let addrs: NodeAddress[] = [];
  let A: NodeAddress;
  let B: NodeAddress;
  let C: NodeAddress;
  let clusterCa: Pem;
  let nodePems: Pem[] = [];
  let foreignPem: Pem;
  let foreignCa: Pem;

  /** An HTTPS client that trusts the cluster CA (or `ca`), and presents `client` if given. */
  function agent(client?: Pem, ca?: Pem): Agent {
    const made = new Agent({
      keepAliveTimeout: 1_000,
      connect: {
        ca: readFileSync(ca?.cert ?? caFile),
        rejectUnauthorized: true,
        // Nodes are addressed by IP; their certificates do not name it.
        checkServerIdentity: () => undefined,
        timeout: REQUEST_TIMEOUT_MS,
        ...(client === undefined ? {} : { cert: readFileSync(client.cert), key: readFileSync(client.key) }),
      },
    });
    agents.push(made);
    return made;
  }

  function call(dispatcher: Agent, method: 'GET' | 'PUT', addr: NodeAddress, path: string, body?: unknown, scheme: 'http' | 'https' = 'https'): Promise<Answer> {
    return httpCall(method, addr, path, body, { dispatcher, scheme, timeoutMs: REQUEST_TIMEOUT_MS });
  }

  async function viewAt(addr: NodeAddress): Promise<NodeAddress[]> {
    const r = await call(anonymous, 'GET', addr, '/view');
    if (r.status !== 200 || !Array.isArray(r.body?.view)) throw new Error(`GET /view at ${addr}: ${r.status} ${r.text}`);
    return sortedAddresses(r.body.view as NodeAddress[]);
  }

  function material(pem: Pem, ca: Pem): { cert: Buffer; key: Buffer; ca: Buffer } {
    return { cert: readFileSync(pem.cert), key: readFileSync(pem.key), ca: readFileSync(ca.cert) };
  }

  function tlsEnv(pem: Pem, ca: Pem): Record<string, string> {
    return { TLS_CERT: pem.cert, TLS_KEY: pem.key, TLS_CA: ca.cert };
  }

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'kvs-tls-'));
    const certs = new Certificates(dir);
    clusterCa = certs.ca('cluster-ca');
    caFile = clusterCa.cert;
    nodePems = [1, 2, 3].map((i) => certs.node(`node${i}`, clusterCa));
    foreignCa = certs.ca('foreign-ca');
    foreignPem = certs.node('foreign-node', foreignCa);
    anonymous = agent();
  });

  // Started once the certificates exist (the before hook above), each node with its own; ready
  // means GET /status over HTTPS answers ready:true.
  const store = useCluster(() => ({
    ports,
    nodeCount: NODE_COUNT,
    extraEnv: { CLUSTER_SECRET: '' },
    nodeEnv: (_addr, i) => tlsEnv(nodePems[i]!, clusterCa),
    callOptions: { scheme: 'https', dispatcher: anonymous },
    logLines: 30,
  }));

  before(async () => {
    addrs = store.nodes;
    [A, B, C] = addrs as [NodeAddress, NodeAddress, NodeAddress];
    for (const i of [FOREIGN, ECHO]) await assertPortFree(ports.address(i));
  });

  after(async () => {
    await Promise.allSettled(agents.map((a) => a.destroy()));
    echo?.closeAllConnections();
    await new Promise<void>((resolve) => (echo === undefined ? resolve() : echo.close(() => resolve())));
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  test('a write at one node is read at the others over HTTPS: the nodes replicate over mutual TLS; the client has no certificate', async () => {
    const put = await call(anonymous, 'PUT', A, kvsPath('tls-key'), { value: 'over-tls', 'causal-metadata': null });
    assert.equal(put.status, 201, put.text);
    const meta = put.body['causal-metadata'];
    assert.notEqual(meta, undefined);
    for (const addr of [B, C]) {
      const { value } = await pollUntil(
        `GET tls-key at ${addr} with the write's metadata`,
        async () => {
          const r = await call(anonymous, 'GET', addr, kvsPath('tls-key'), { 'causal-metadata': meta });
          if (r.status === 503) throw new NotYet(`503 ${r.text}`);
          return r;
        },
        { timeoutMs: 10_000, intervalMs: 50 },
      );
      assert.equal(value.status, 200, value.text);
      assert.equal(value.body.value, 'over-tls', `at ${addr}`);
    }
    // Without the metadata too: the write itself reached each replica (not only a forwarded read).
    for (const addr of [B, C]) {
      await pollUntil(
        `tls-key replicated to ${addr}`,
        async () => {
          const r = await call(anonymous, 'GET', addr, kvsPath('tls-key'), { 'causal-metadata': null });
          if (r.status !== 200 || r.body?.value !== 'over-tls') throw new NotYet(`${r.status} ${r.text}`);
        },
        { timeoutMs: 10_000, intervalMs: 50 },
      );
    }
    for (const addr of addrs) assert.deepEqual(await viewAt(addr), addrs, `GET /view at ${addr} without a client certificate`);
  });

  test('plain HTTP to a TLS node gets no answer, and the node keeps serving HTTPS', async () => {
    const plain = new Agent({ connect: { timeout: REQUEST_TIMEOUT_MS } });
    agents.push(plain);
    await assert.rejects(call(plain, 'GET', A, '/view', undefined, 'http'), (error: Error & { code?: string }) => {
      assert.match(`${error.code} ${error.message}`, /UND_ERR_SOCKET|ECONNRESET|other side closed|socket hang up/);
      return true;
    });
    assert.deepEqual(await viewAt(A), addrs);
  });

  test("the project's client library speaks HTTPS with the store's CA", async () => {
    const client = new KvsClient({ nodes: [A, B], tls: { ca: readFileSync(caFile) } });
    try {
      await client.put('tls-client-key', { over: 'tls' });
      const got = await client.get('tls-client-key');
      assert.ok(got.found);
      assert.deepEqual(got.value, { over: 'tls' });
    } finally {
      await client.close();
    }
    // Without the CA the node's certificate is not trusted: the request never leaves.
    const untrusting = new KvsClient({ nodes: [A], tls: { ca: readFileSync(foreignCa.cert) }, timeoutMs: 3_000 });
    try {
      await assert.rejects(untrusting.get('tls-client-key'));
    } finally {
      await untrusting.close();
    }
  });

  test('a client with a certificate of the cluster is served as well', async () => {
    const r = await call(agent(nodePems[0]), 'GET', B, '/view');
    assert.equal(r.status, 200, r.text);
  });

  test('/internal/ping over HTTPS without a client certificate is answered over HTTP, and the public API still serves', async () => {
    // What the node answers is its routing's business (a request without a certificate of the
    // cluster is not from a peer); here, only that the handshake needs no client certificate.
    const r = await call(anonymous, 'GET', A, '/internal/ping');
    assert.equal(typeof r.status, 'number');
    assert.ok(r.status < 500, `${r.status} ${r.text}`);
    assert.deepEqual(await viewAt(A), addrs);
  });

  test('the server marks a request peerCertified only with a client certificate the CA signed', async () => {
    echo = await startHttpServer({
      host: '127.0.0.1',
      port: ports.port(ECHO),
      classify: () => ({ name: 'client', bodyBytesMax: 1024, depthMax: 8, depthMessage: 'too deep', inFlight: { requestsMax: 16, bytesMax: 1 << 20 } }),
      handler: async (req) => ({ status: 200, body: { peerCertified: req.peerCertified } }),
      onError: () => {},
      onRefused: () => {},
      tls: { cert: readFileSync(nodePems[0]!.cert), key: readFileSync(nodePems[0]!.key), ca: readFileSync(clusterCa.cert) },
    });
    const echoAddr = ports.address(ECHO);
    const cases: [string, Agent, boolean][] = [
      ['no client certificate', anonymous, false],
      ["a node's certificate signed by the cluster CA", agent(nodePems[1]), true],
      ['a certificate signed by a foreign CA', agent(foreignPem), false],
    ];
    for (const [what, client, expected] of cases) {
      const r = await call(client, 'GET', echoAddr, '/internal/ping');
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.peerCertified, expected, what);
    }
  });

  test('a node whose certificate a foreign CA signed cannot join: its handshakes fail, and the three keep serving', async () => {
    // The store's data, which the foreign node must never get.
    const secret = await call(anonymous, 'PUT', A, kvsPath('before-foreign'), { value: 'the-store-s-data', 'causal-metadata': null });
    assert.equal(secret.status, 201, secret.text);
    // VIEW: the three and itself.
    const foreignAddr = await store.cluster.startJoiner(ports.port(FOREIGN), { LOG_LEVEL: 'info', ...tlsEnv(foreignPem, foreignCa) });
    assert.deepEqual(store.cluster.node(foreignAddr).env.VIEW, [...addrs, foreignAddr].join(','));
    const foreign = store.cluster.node(foreignAddr);
    const started = performance.now();
    const foreignClient = agent(undefined, foreignCa);
    // Its requests to the three fail (their certificates are signed by a CA it does not trust), so
    // it takes them out of its view as not answering, although they answer each other.
    await pollUntil(
      'the foreign node to take the three out of its view as not answering',
      async () => {
        if (!foreign.alive) throw new assert.AssertionError({ message: `the foreign node exited: ${foreign.crashed}\n${foreign.tail(40)}` });
        const r = await call(foreignClient, 'GET', foreignAddr, '/view');
        if (r.status !== 200 || JSON.stringify(r.body?.view) !== JSON.stringify([foreignAddr])) throw new NotYet(`its view: ${r.status} ${r.text}`);
        const log = foreign.tail(400);
        const notRemoved = addrs.filter((addr) => !log.split('\n').some((line) => line.includes('removed') && line.includes(`"peer":"${addr}"`)));
        if (notRemoved.length > 0) throw new NotYet(`not logged as removed yet: ${notRemoved.join(', ')}`);
      },
      { timeoutMs: 15_000 },
    );
    // What its peer client meets, seen from here with its credentials, and with a member's toward it:
    // the handshake fails on the certificate, and the request provably never left.
    const asForeign = new PeerClient({ connectTimeoutMs: 2_000, requestTimeoutMs: REQUEST_TIMEOUT_MS, connectionsPerPeer: 1, tls: material(foreignPem, foreignCa) });
    const asMember = new PeerClient({ connectTimeoutMs: 2_000, requestTimeoutMs: REQUEST_TIMEOUT_MS, connectionsPerPeer: 1, tls: material(nodePems[0]!, clusterCa) });
    try {
      for (const [client, peer] of [[asForeign, B], [asMember, foreignAddr]] as const) {
        await assert.rejects(client.call(nodeAddress(peer), 'GET', '/internal/ping', undefined), (error: unknown) => {
          assert.ok(error instanceof PeerUnreachableError, String(error));
          assert.equal(error.maybeDelivered, false, `a failed handshake proves the request never left: ${error.message}`);
          assert.match(String((error.cause as { code?: unknown }).code), /SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT/);
          return true;
        });
      }
      // A member's credentials do reach a member.
      const answered = await asMember.call(nodeAddress(B), 'GET', '/internal/ping', undefined);
      assert.equal(typeof answered.status, 'number');
    } finally {
      await asForeign.close();
      await asMember.close();
    }
    // Over the whole window (at least FOREIGN_WINDOW_MS after it started) no node of the three
    // lists it and each keeps answering; the foreign node never has the store's data.
    // At least five rounds, however long the steps above took on a loaded machine.
    let rounds = 0;
    while (rounds < 5 || performance.now() - started < FOREIGN_WINDOW_MS) {
      rounds++;
      for (const addr of addrs) {
        const view = await viewAt(addr);
        assert.deepEqual(view, addrs, `round ${rounds}: GET /view at ${addr} must not list ${foreignAddr}`);
      }
      const stolen = await call(foreignClient, 'GET', foreignAddr, kvsPath('before-foreign'), { 'causal-metadata': null }).catch((error: Error) => ({ status: 0, body: undefined, text: error.message }));
      assert.ok(!(stolen.status === 200 && stolen.body?.value === 'the-store-s-data'), `round ${rounds}: the foreign node served the store's data: ${stolen.text}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    for (const addr of addrs) assert.ok(store.cluster.node(addr).alive, `${addr} still runs`);
    // The three still replicate among themselves.
    const put = await call(anonymous, 'PUT', C, kvsPath('after-foreign'), { value: 'still', 'causal-metadata': null });
    assert.equal(put.status, 201, put.text);
    const { value } = await pollUntil(
      'GET after-foreign at the first node',
      async () => {
        const r = await call(anonymous, 'GET', A, kvsPath('after-foreign'), { 'causal-metadata': put.body['causal-metadata'] });
        if (r.status === 503) throw new NotYet(`503 ${r.text}`);
        return r;
      },
      { timeoutMs: 10_000, intervalMs: 50 },
    );
    assert.equal(value.status, 200, value.text);
    assert.equal(value.body.value, 'still');
  });
});
