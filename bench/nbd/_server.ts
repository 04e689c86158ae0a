/**
 * The thinpool NBD server as its own process, for the NBD benchmark (not a bench itself: `_` files are helpers).
 *
 *   node dist/bench/nbd/_server.js POOLDIR SOCKET VOLUME [--tls-psk=FILE] [--tls-certificates=DIR]
 *
 * Serves VOLUME as the default export on 127.0.0.1 (a free port) and on the Unix socket, prints one JSON line
 * {"port": N} when ready, and on SIGTERM/SIGINT stops, commits and closes the pool. With --tls-psk and/or
 * --tls-certificates it also serves the same pool with TLS required, one more free port for each:
 * {"port": N, "psk": N, "x509": N}.
 */
import { ThinPool } from '../../src/thin/pool.js';
import { NbdServer, type NbdServerOptions } from '../../src/nbd/server.js';
import { readCertificateDir, readPskFile } from '../../src/nbd/tls.js';

const [dir, sock, volume, ...flags] = process.argv.slice(2);
const flag = (name: string) => flags.find((f) => f.startsWith(`--${name}=`))?.slice(name.length + 3);
const pool = ThinPool.openSync(dir);
const base: NbdServerOptions = { exports: [volume], defaultExport: volume, log: (m) => process.stderr.write(`${m}\n`) };
const server = new NbdServer(pool, base);
const servers = [server];
const tcp = await server.listen({ host: '127.0.0.1', port: 0 });
await server.listen({ path: sock });
const ports: Record<string, number> = { port: tcp.port! };
const psk = flag('tls-psk');
const certs = flag('tls-certificates');
if (psk !== undefined) {
  const s = new NbdServer(pool, { ...base, tls: { mode: 'require', psk: readPskFile(psk) } });
  servers.push(s);
  ports.psk = (await s.listen({ host: '127.0.0.1', port: 0 })).port!;
}
if (certs !== undefined) {
  const s = new NbdServer(pool, { ...base, tls: { mode: 'require', certificates: readCertificateDir(certs) } });
  servers.push(s);
  ports.x509 = (await s.listen({ host: '127.0.0.1', port: 0 })).port!;
}
process.stdout.write(`${JSON.stringify(ports)}\n`);
const stop = async () => {
  for (const s of servers) await s.close();
  pool.closeSync();
  process.exit(0);
};
process.once('SIGTERM', () => void stop());
process.once('SIGINT', () => void stop());
