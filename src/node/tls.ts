import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { ConfigError, type NodeConfig } from './config.ts';

/**
 * A node's TLS material, read from TLS_CERT, TLS_KEY and TLS_CA: its certificate (with any
 * intermediates after it), its private key, and the cluster's CA. The node serves HTTPS with the
 * first two and presents them to peers; a peer is trusted when the CA signed its certificate.
 */
export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
}

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
/** Intermediates followed from the node's certificate up to the CA, at most. */
const CHAIN_DEPTH_MAX = 8;

/**
 * Reads the PEM files the configuration names; null when TLS is not configured (plain HTTP).
 * Throws a ConfigError with a message for the deployer when a file cannot be read, holds no PEM,
 * the key does not match the certificate, the CA did not sign the certificate (peers would refuse
 * it), or the certificate is not meant for both TLS servers and clients (a node is both).
 */
export function loadTls(config: Pick<NodeConfig, 'tls'>): TlsMaterial | null {
  if (config.tls === null) return null;
  const material = {
    cert: pemFile('TLS_CERT', config.tls.certFile, 'CERTIFICATE'),
    key: pemFile('TLS_KEY', config.tls.keyFile, 'PRIVATE KEY'),
    ca: pemFile('TLS_CA', config.tls.caFile, 'CERTIFICATE'),
  };
  try {
    createSecureContext(material);
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    throw new ConfigError(`TLS_CERT, TLS_KEY, TLS_CA: cannot be used together (${why}); is the key the one of the certificate, and not protected by a passphrase?`);
  }
  const certs = certificates('TLS_CERT', config.tls.certFile, material.cert);
  const cas = certificates('TLS_CA', config.tls.caFile, material.ca);
  const leaf = certs[0] as X509Certificate;
  if (!signedByCa(leaf, certs.slice(1), cas)) {
    throw new ConfigError(
      `TLS_CERT ${JSON.stringify(config.tls.certFile)} (${leaf.subject.replaceAll('\n', ', ')}) is not signed by the CA in TLS_CA ${JSON.stringify(config.tls.caFile)}: ` +
        'the other nodes would refuse it; sign it with the cluster CA',
    );
  }
  const usage = leaf.keyUsage;
  if (usage !== undefined && !(usage.includes(SERVER_AUTH) && usage.includes(CLIENT_AUTH))) {
    throw new ConfigError(
      `TLS_CERT ${JSON.stringify(config.tls.certFile)}: a node's certificate serves clients and connects to peers, so its extendedKeyUsage must hold both serverAuth and clientAuth`,
    );
  }
  return material;
}

function pemFile(variable: string, path: string, kind: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a directory' : error instanceof Error ? error.message : String(error);
    throw new ConfigError(`${variable}: cannot read ${JSON.stringify(path)}: ${why}`);
  }
  // "PRIVATE KEY" also matches "RSA PRIVATE KEY" and "EC PRIVATE KEY" (older openssl output).
  if (!new RegExp(`-----BEGIN [A-Z ]*${kind}-----`).test(bytes.toString('latin1'))) {
    throw new ConfigError(`${variable}: ${JSON.stringify(path)} is not a PEM file holding a ${kind === 'CERTIFICATE' ? 'certificate' : 'private key'} (no "-----BEGIN ${kind}-----" line)`);
  }
  return bytes;
}

/** Every certificate of a PEM file, in order. */
function certificates(variable: string, path: string, pem: Buffer): X509Certificate[] {
  const blocks = pem.toString('latin1').match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  try {
    const certs = blocks.map((block) => new X509Certificate(block));
    if (certs.length > 0) return certs;
  } catch (error) {
    throw new ConfigError(`${variable}: ${JSON.stringify(path)} holds a certificate that cannot be parsed: ${error instanceof Error ? error.message : String(error)}`);
  }
  throw new ConfigError(`${variable}: ${JSON.stringify(path)} holds no certificate`);
}

/** True when a CA certificate signed `leaf`, directly or through the intermediates given with it. */
function signedByCa(leaf: X509Certificate, intermediates: X509Certificate[], cas: X509Certificate[]): boolean {
  const issued = (child: X509Certificate, parent: X509Certificate): boolean => child.checkIssued(parent) && child.verify(parent.publicKey);
  let current = leaf;
  for (let depth = 0; depth <= CHAIN_DEPTH_MAX; depth++) {
    if (cas.some((ca) => issued(current, ca))) return true;
    const next = intermediates.find((parent) => parent !== current && issued(current, parent));
    if (next === undefined) return false;
    current = next;
  }
  return false;
}
