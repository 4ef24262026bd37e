// Throwaway certificates for the TLS tests, made with the openssl command: CAs, and node
// certificates they sign (P-256 keys, valid for a day, extendedKeyUsage serverAuth and clientAuth).

import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** False when openssl can be run; else why the TLS tests are skipped. */
export function opensslMissing(): string | false {
  const run = spawnSync('openssl', ['version'], { stdio: 'ignore' });
  return run.error === undefined && run.status === 0 ? false : 'openssl is not installed (the TLS tests make their certificates with it; apt-get install -y openssl)';
}

/** openssl configuration: the extensions of a CA and of a node (server and client of TLS). */
const OPENSSL_CONFIG = `
[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[node_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[server_only_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
`;

/** Paths of a certificate and its key. */
export interface Pem {
  cert: string;
  key: string;
}

/** Makes certificates in `dir` (which the caller creates and removes). */
export class Certificates {
  readonly dir: string;
  private serial = 1;

  constructor(dir: string) {
    this.dir = dir;
    writeFileSync(join(dir, 'openssl.cnf'), OPENSSL_CONFIG);
  }

  /** A self-signed CA. */
  ca(name: string): Pem {
    const pem = this.paths(name);
    this.openssl(['req', '-x509', '-config', 'openssl.cnf', '-extensions', 'ca_ext', ...this.newKey(pem.key), '-out', pem.cert, '-days', '1', '-subj', `/CN=${name}`]);
    return pem;
  }

  /** A node's certificate signed by `ca` (`serverOnly`: extendedKeyUsage serverAuth alone). */
  node(name: string, ca: Pem, serverOnly = false): Pem {
    const pem = this.paths(name);
    const csr = `${name}.csr`;
    this.openssl(['req', '-new', '-config', 'openssl.cnf', ...this.newKey(pem.key), '-out', csr, '-subj', `/CN=${name}`]);
    const extensions = serverOnly ? 'server_only_ext' : 'node_ext';
    this.openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', String(this.serial++), '-days', '1', '-extfile', 'openssl.cnf', '-extensions', extensions, '-out', pem.cert]);
    return pem;
  }

  private paths(name: string): Pem {
    return { cert: join(this.dir, `${name}.pem`), key: join(this.dir, `${name}.key`) };
  }

  private newKey(keyFile: string): string[] {
    return ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile];
  }

  private openssl(args: string[]): void {
    const run = spawnSync('openssl', args, { cwd: this.dir, encoding: 'utf8' });
    if (run.status !== 0) throw new Error(`openssl ${args.join(' ')} failed (${run.status ?? run.signal}): ${run.stderr}`);
  }
}
