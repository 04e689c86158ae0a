/**
 * TLS for the NBD server (NBD_OPT_STARTTLS): loading credentials and upgrading an accepted socket in place.
 *
 * Contract and invariants:
 * - Credentials are pre-shared keys (a psktool key file: one `identity:hexkey` line per client, as nbdkit and
 *   libnbd read it) and/or X.509 (a directory holding server-cert.pem, server-key.pem and optionally
 *   ca-cert.pem, nbdkit's layout). Both are read once, when the server is configured; a file that cannot be
 *   used is a ThinpoolError (EINVAL / ENOENT) naming the file and what is wrong with it.
 * - `upgradeToTls` wraps the already-open plain socket in a server TLSSocket (Node's `tls`, OpenSSL): the TLS
 *   handshake runs on the same connection right after the server's ACK to STARTTLS, as the protocol wants.
 *   TLS 1.2 is the minimum, and with PSK configured also the maximum (see upgradeToTls). A PSK client is known by its identity from then on (`identity`); an X.509 client
 *   has none.
 * - A failed TLS handshake (wrong key, unknown identity, not TLS at all) ends that connection only: the
 *   socket is destroyed and `onFail` says why.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { ThinpoolError } from '../errors.js';

/** TLS mode of a server: `on` offers STARTTLS, `require` refuses everything else until TLS is up (FORCEDTLS). */
export type NbdTlsMode = 'on' | 'require';

export interface NbdTlsOptions {
  mode: NbdTlsMode;
  /** Pre-shared keys by identity (readPskFile). */
  psk?: Map<string, Buffer>;
  /** X.509 credentials (readCertificateDir). */
  certificates?: NbdCertificates;
  /**
   * Per PSK identity, the export names it may list and open; an identity not in the map may use every export.
   * (X.509 and plain-text clients are not limited by it.)
   */
  allow?: Map<string, string[]>;
}

export interface NbdCertificates {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
}

/** Longest PSK identity accepted in a key file (RFC 4279 allows 2^16-1; psktool users never come close). */
const MAX_IDENTITY = 128;

/** Read a psktool key file: `identity:hexkey` per line; blank lines and lines starting with # are skipped. */
export function readPskFile(path: string): Map<string, Buffer> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ThinpoolError(code === 'ENOENT' ? 'ENOENT' : 'EINVAL', `cannot read PSK file ${path}: ${(e as Error).message}`);
  }
  const keys = new Map<string, Buffer>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '' || line.startsWith('#')) continue;
    const colon = line.lastIndexOf(':');
    const id = colon > 0 ? line.slice(0, colon) : '';
    const hex = colon > 0 ? line.slice(colon + 1) : '';
    if (id === '' || id.length > MAX_IDENTITY || !/^([0-9a-fA-F]{2})+$/.test(hex)) {
      throw new ThinpoolError(
        'EINVAL',
        `PSK file ${path} line ${i + 1}: expected IDENTITY:HEXKEY (make one with: psktool -u IDENTITY -p ${path})`,
      );
    }
    if (keys.has(id)) throw new ThinpoolError('EINVAL', `PSK file ${path} line ${i + 1}: identity "${id}" appears twice`);
    keys.set(id, Buffer.from(hex, 'hex'));
  }
  if (keys.size === 0) throw new ThinpoolError('EINVAL', `PSK file ${path} holds no keys (make one with: psktool -u IDENTITY -p ${path})`);
  return keys;
}

/** Read server-cert.pem, server-key.pem and (if present) ca-cert.pem from a directory. */
export function readCertificateDir(dir: string): NbdCertificates {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ThinpoolError('ENOENT', `certificate directory ${dir} does not exist`);
  const read = (name: string, required: boolean): Buffer | undefined => {
    const p = join(dir, name);
    if (!existsSync(p)) {
      if (required)
        throw new ThinpoolError(
          'ENOENT',
          `certificate directory ${dir} has no ${name} (expected server-cert.pem, server-key.pem and optionally ca-cert.pem)`,
        );
      return undefined;
    }
    return readFileSync(p);
  };
  const certs: NbdCertificates = {
    cert: read('server-cert.pem', true)!,
    key: read('server-key.pem', true)!,
    ca: read('ca-cert.pem', false),
  };
  try {
    tls.createSecureContext({ cert: certs.cert, key: certs.key, ca: certs.ca });
  } catch (e) {
    throw new ThinpoolError('EINVAL', `certificates in ${dir} cannot be used: ${(e as Error).message}`);
  }
  return certs;
}

/** Check the TLS options once, when the server is configured. */
export function checkTlsOptions(t: NbdTlsOptions): void {
  if (t.mode !== 'on' && t.mode !== 'require') throw new ThinpoolError('EINVAL', `TLS mode "${String(t.mode)}": expected on or require`);
  if ((!t.psk || t.psk.size === 0) && !t.certificates) {
    throw new ThinpoolError('EINVAL', 'TLS needs credentials: a PSK file and/or a certificate directory');
  }
  if (t.allow && t.psk) {
    for (const id of t.allow.keys()) {
      if (!t.psk.has(id)) throw new ThinpoolError('EINVAL', `export allow-list names identity "${id}", which is not in the PSK file`);
    }
  }
}

export interface TlsUpgrade {
  /** The encrypted socket, usable at once (writes wait for the handshake). */
  socket: tls.TLSSocket;
  /** The PSK identity the client used, once the handshake has succeeded (null: X.509, or not yet). */
  identity(): string | null;
}

/**
 * Wrap an accepted plain socket, on which the server has just acknowledged STARTTLS, in a server TLSSocket.
 * `onSecure` runs once the handshake succeeds; on failure the socket is destroyed and `onFail` gets the reason
 * (the server's handshake deadline covers a client that never finishes).
 */
export function upgradeToTls(plain: Socket, t: NbdTlsOptions, onSecure: () => void, onFail: (why: string) => void): TlsUpgrade {
  let identity: string | null = null;
  // pskCallback is honoured by the TLSSocket constructor (as by tls.createServer), though not in its typings.
  const opts: tls.TLSSocketOptions & { pskCallback?: (socket: tls.TLSSocket, identity: string) => Buffer | null } = {
    isServer: true,
    minVersion: 'TLSv1.2',
    requestCert: false,
  };
  if (t.certificates) {
    opts.cert = t.certificates.cert;
    opts.key = t.certificates.key;
    if (t.certificates.ca) opts.ca = t.certificates.ca;
  }
  if (t.psk && t.psk.size > 0) {
    const keys = t.psk;
    // OpenSSL offers no PSK cipher suites by default: add them. Node's pskCallback is never consulted in a TLS 1.3
    // handshake (the server then falls back to certificates, or fails without them), so PSK means TLS 1.2; a
    // client with a certificate-only configuration negotiates TLS 1.2 too when PSK is configured alongside.
    // Node's default list ends in !PSK, which would strike them out again.
    const defaults = tls.DEFAULT_CIPHERS.split(':')
      .filter((c) => c !== '!PSK')
      .join(':');
    // RSA-PSK is left out: it would authenticate the server by certificate too, which a PSK client cannot check.
    opts.ciphers = t.certificates ? `ECDHE-PSK:DHE-PSK:PSK:${defaults}:!kRSAPSK` : 'ECDHE-PSK:DHE-PSK:PSK:!kRSAPSK';
    opts.maxVersion = 'TLSv1.2';
    opts.pskCallback = (_sock: tls.TLSSocket, id: string) => {
      const key = keys.get(id);
      if (!key) return null;
      identity = id;
      return key;
    };
  }
  const socket = new tls.TLSSocket(plain, opts);
  let settled = false;
  const abandon = (why: string): void => {
    if (settled) return;
    settled = true;
    socket.destroy();
    plain.destroy();
    onFail(why);
  };
  socket.once('secure', () => {
    if (settled) return;
    settled = true;
    onSecure();
  });
  socket.on('error', (e) => abandon(e.message));
  socket.once('close', () => abandon('connection closed during the TLS handshake'));
  return { socket, identity: () => (settled ? identity : null) };
}
