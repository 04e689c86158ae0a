/**
 * The thinpool NBD server as its own process, for the NBD benchmark (not a bench itself: `_` files are helpers).
 *
 *   node dist/bench/nbd/_server.js POOLDIR SOCKET VOLUME
 *
 * Serves VOLUME as the default export on 127.0.0.1 (a free port) and on the Unix socket, prints one JSON line
 * {"port": N} when ready, and on SIGTERM/SIGINT stops, commits and closes the pool.
 */
import { ThinPool } from '../../src/thin/pool.js';
import { NbdServer } from '../../src/nbd/server.js';

const [dir, sock, volume] = process.argv.slice(2);
const pool = ThinPool.openSync(dir);
const server = new NbdServer(pool, { exports: [volume], defaultExport: volume, log: (m) => process.stderr.write(`${m}\n`) });
const tcp = await server.listen({ host: '127.0.0.1', port: 0 });
await server.listen({ path: sock });
process.stdout.write(`${JSON.stringify({ port: tcp.port })}\n`);
const stop = async () => {
  await server.close();
  pool.closeSync();
  process.exit(0);
};
process.once('SIGTERM', () => void stop());
process.once('SIGINT', () => void stop());
