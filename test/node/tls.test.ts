// loadTls: the TLS files a node is given are read and checked at start, and every fault is a
// ConfigError that says which variable and what to do; `kvs` refuses them in one line, exit 2.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../../src/node/config.ts';
import { loadTls } from '../../src/node/tls.ts';
import { Certificates, opensslMissing, type Pem } from '../helpers/certs.ts';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe('loadTls', { skip: opensslMissing() }, () => {
  let dir = '';
  let ca: Pem;
  let node: Pem;
  let other: Pem;
  let foreignCa: Pem;
  let foreign: Pem;
  let serverOnly: Pem;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'kvs-tls-unit-'));
    const certs = new Certificates(dir);
    ca = certs.ca('ca');
    node = certs.node('node', ca);
    other = certs.node('other', ca);
    foreignCa = certs.ca('foreign-ca');
    foreign = certs.node('foreign', foreignCa);
    serverOnly = certs.node('server-only', ca, true);
  });
  after(() => {
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  const files = (pem: Pem, caPem: Pem, key = pem.key) => ({ tls: { certFile: pem.cert, keyFile: key, caFile: caPem.cert } });

  function refuses(config: ReturnType<typeof files>, pattern: RegExp): void {
    assert.throws(
      () => loadTls(config),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError, String(error));
        assert.match(error.message, pattern);
        return true;
      },
    );
  }

  test('no TLS configured: null (plain HTTP)', () => {
    assert.equal(loadTls({ tls: null }), null);
  });

  test('a certificate the CA signed, its key and the CA: the three files as read', () => {
    const material = loadTls(files(node, ca));
    assert.ok(material !== null);
    assert.deepEqual(material.cert, readFileSync(node.cert));
    assert.deepEqual(material.key, readFileSync(node.key));
    assert.deepEqual(material.ca, readFileSync(ca.cert));
  });

  test('a file that is missing, or holds no PEM, is refused naming the variable', () => {
    refuses({ tls: { certFile: join(dir, 'nope.pem'), keyFile: node.key, caFile: ca.cert } }, /^TLS_CERT: cannot read ".*nope\.pem": no such file$/);
    refuses({ tls: { certFile: node.cert, keyFile: join(dir, 'nope.key'), caFile: ca.cert } }, /^TLS_KEY: cannot read/);
    refuses({ tls: { certFile: node.cert, keyFile: node.key, caFile: dir } }, /^TLS_CA: cannot read .*: it is a directory$/);
    const garbage = join(dir, 'garbage.pem');
    writeFileSync(garbage, 'not a certificate\n');
    refuses({ tls: { certFile: garbage, keyFile: node.key, caFile: ca.cert } }, /^TLS_CERT: .* is not a PEM file holding a certificate/);
    refuses({ tls: { certFile: node.cert, keyFile: garbage, caFile: ca.cert } }, /^TLS_KEY: .* is not a PEM file holding a private key/);
  });

  test('a key that is not the certificate\'s is refused', () => {
    refuses(files(node, ca, other.key), /cannot be used together/);
  });

  test('a certificate the CA did not sign is refused: the other nodes would refuse it', () => {
    refuses(files(foreign, ca), /is not signed by the CA in TLS_CA/);
  });

  test('a certificate only for servers is refused: a node is also a client of its peers', () => {
    refuses(files(serverOnly, ca), /serverAuth and clientAuth/);
  });

  test('kvs refuses an unreadable TLS file in one line on stderr, exit 2', () => {
    const run = spawnSync(process.execPath, ['src/node/main.ts'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      timeout: 20_000,
      env: { PATH: process.env.PATH, SOCKET_ADDRESS: '127.0.0.1:9879', TLS_CERT: join(dir, 'missing.pem'), TLS_KEY: node.key, TLS_CA: ca.cert },
    });
    assert.equal(run.status, 2, `exit ${run.status} ${run.signal}; stderr: ${run.stderr}`);
    assert.match(run.stderr, /^kvs: TLS_CERT: cannot read ".*missing\.pem": no such file\n$/);
  });
});
