/**
 * serve: the NBD server (src/nbd) behind the command line. A NAME `container/NAME` or `image/NAME` exports that
 * container's volume (or the image's top layer, read-only as every committed layer) under that export name.
 * Volume names cannot hold a slash, so these names never clash with a volume's.
 */
import type { ThinPool } from '../../thin/pool.js';
import type { Ctx } from '../io.js';
import { cephOptions, requirePoolDir } from '../pool.js';

const CONTAINER = 'container/';
const IMAGE = 'image/';

export async function serve(ctx: Ctx, args: string[], opts: Record<string, unknown>): Promise<number> {
  const [dir, ...rest] = args;
  const names = (rest.flat() as string[]).filter((n) => typeof n === 'string');
  const pool = requirePoolDir(ctx, dir);
  const named = names.filter((n) => n.startsWith(CONTAINER) || n.startsWith(IMAGE));
  // The images layer is loaded only when a container or image is named.
  const images = named.length > 0 ? await import('../../images/images.js') : null;
  const aliases =
    images === null
      ? undefined
      : (p: ThinPool): ReadonlyMap<string, string> => {
          const store = new images.ImageStore(p);
          return new Map(
            named.map((n) => {
              const v = n.startsWith(CONTAINER)
                ? store.containerVolume(n.slice(CONTAINER.length))
                : store.imageVolume(n.slice(IMAGE.length));
              return [n, `#${v.id}`];
            }),
          );
        };
  const { serveCommand } = await import('../../nbd/serve-command.js');
  return serveCommand({
    pool,
    ceph: cephOptions(ctx),
    names,
    aliases,
    listen: opts.listen as string | undefined,
    socket: opts.socket as string | undefined,
    readOnly: opts.readOnly === true,
    busyPollUs: opts.busyPollUs as string | undefined,
    writeBack: opts.writeBack as string | undefined,
    tls: opts.tls as string | undefined,
    tlsPsk: opts.tlsPsk as string | undefined,
    tlsCertificates: opts.tlsCertificates as string | undefined,
    tlsAllow: opts.tlsAllow as string[] | undefined,
    insecure: opts.insecure === true,
    socketMode: opts.socketMode as string | undefined,
    maxConnections: opts.maxConnections as string | undefined,
    handshakeTimeout: opts.handshakeTimeout as string | undefined,
    stdout: ctx.io.stdout,
    stderr: ctx.io.stderr,
  });
}
