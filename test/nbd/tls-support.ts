// Keys and certificates for the NBD TLS tests, made with the real tools (Debian gnutls-bin: psktool, certtool).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runOk } from './support.js';

/** psktool -u ID -p FILE for each identity (appending); returns the keys as psktool wrote them. */
export async function makePskFile(file: string, identities: string[]): Promise<Map<string, Buffer>> {
  for (const id of identities) await runOk('psktool', ['-u', id, '-p', file]);
  const keys = new Map<string, Buffer>();
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const i = line.lastIndexOf(':');
    if (i > 0) keys.set(line.slice(0, i), Buffer.from(line.slice(i + 1), 'hex'));
  }
  return keys;
}

/**
 * A CA and a server certificate for localhost / 127.0.0.1 signed by it, in nbdkit's layout:
 * `server` holds ca-cert.pem, server-cert.pem, server-key.pem; `client` holds ca-cert.pem only (what libnbd's
 * tls-certificates= and qemu's tls-creds-x509 read on the client side).
 */
export async function makeCertificates(dir: string): Promise<{ server: string; client: string; ca: Buffer }> {
  const server = join(dir, 'server-pki');
  const client = join(dir, 'client-pki');
  mkdirSync(server, { recursive: true });
  mkdirSync(client, { recursive: true });
  writeFileSync(join(dir, 'ca.tmpl'), 'cn = "thinpool test CA"\nca\ncert_signing_key\nexpiration_days = 2\n');
  writeFileSync(
    join(dir, 'server.tmpl'),
    'organization = "thinpool test"\ncn = "localhost"\ndns_name = "localhost"\n' +
      'ip_address = "127.0.0.1"\ntls_www_server\nencryption_key\nsigning_key\nexpiration_days = 2\n',
  );
  const caKey = join(dir, 'ca-key.pem');
  await runOk('certtool', ['--generate-privkey', '--no-text', '--outfile', caKey]);
  await runOk('certtool', [
    '--generate-self-signed',
    '--no-text',
    '--load-privkey',
    caKey,
    '--template',
    join(dir, 'ca.tmpl'),
    '--outfile',
    join(server, 'ca-cert.pem'),
  ]);
  await runOk('certtool', ['--generate-privkey', '--no-text', '--outfile', join(server, 'server-key.pem')]);
  await runOk('certtool', [
    '--generate-certificate',
    '--no-text',
    '--load-privkey',
    join(server, 'server-key.pem'),
    '--load-ca-certificate',
    join(server, 'ca-cert.pem'),
    '--load-ca-privkey',
    caKey,
    '--template',
    join(dir, 'server.tmpl'),
    '--outfile',
    join(server, 'server-cert.pem'),
  ]);
  const ca = readFileSync(join(server, 'ca-cert.pem'));
  writeFileSync(join(client, 'ca-cert.pem'), ca);
  return { server, client, ca };
}
