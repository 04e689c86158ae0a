/**
 * Image sources: an OCI image layout directory, an OCI or `docker save` tar archive (unpacked to a temporary
 * directory first), or an ordered list of layer tarballs (plain or gzipped).
 *
 * What comes out: the layers bottom first, each with a way to open its uncompressed tar stream, the diff id
 * the config declares (when there is a config) and the blob digest to verify (OCI layouts); and the config's
 * history and creation time.
 */
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { ThinpoolError } from '../errors.js';
import { tarStream } from './tar-stream-lazy.js';
import { cleanPath, digestStream, emptyLayer, fileChunks, layerChunks, openLayer } from './layer.js';
import { readTar } from './tar-reader.js';

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  comment?: string;
  empty_layer?: boolean;
}

export interface ImageConfig {
  created?: string;
  architecture?: string;
  os?: string;
  config?: Record<string, unknown>;
  rootfs: { type: 'layers'; diff_ids: string[] };
  history?: HistoryEntry[];
}

export interface LayerSource {
  /** Where the layer comes from (for messages). */
  label: string;
  path: string;
  /** Diff id declared by the image config (verified while applying). */
  diffId?: string;
  /** Digest of the blob as stored (verified before applying). */
  blobDigest?: string;
  /**
   * Layer tarballs given without an image config: their diff id, read from the content (one pass over the
   * file). Asked only where a layer already in the pool could be reused; otherwise the apply computes it.
   */
  digest?(): Promise<string>;
  /** The uncompressed tar, in chunks valid until the next-but-one is read (layerChunks, layer.ts). */
  open(): Promise<AsyncIterable<Buffer>>;
}

export interface ImageSource {
  layers: LayerSource[];
  config: ImageConfig;
  /** sha256 of the config as stored, or of a config made for a list of tarballs. */
  configDigest: string;
  /**
   * Layer tarballs: the config (and its digest) is made once every diff id is known, after the import applied
   * or reused each layer; `config` and `configDigest` above list no diff ids.
   */
  configFor?(diffIds: string[]): { config: ImageConfig; configDigest: string };
  /** Name found in the archive (docker save RepoTags, OCI ref name annotation). */
  refName?: string;
  cleanup(): void;
}

function bad(msg: string): never {
  throw new ThinpoolError('EINVAL', msg);
}

function readJson<T>(path: string, what: string): T {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    bad(`${what} is missing (${path})`);
  }
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    bad(`${what} is not valid JSON (${path}): ${(e as Error).message}`);
  }
}

export async function fileDigest(path: string): Promise<string> {
  return digestStream(fileChunks(path));
}

function sha(text: string | Buffer): string {
  return `sha256:${createHash('sha256').update(text).digest('hex')}`;
}

function blobPath(root: string, digest: string): string {
  const m = /^([a-z0-9]+):([a-f0-9]{32,128})$/.exec(digest);
  if (!m) bad(`bad digest ${JSON.stringify(digest)} in the image`);
  return join(root, 'blobs', m[1], m[2]);
}

interface Manifestish {
  mediaType?: string;
  manifests?: Descriptor[];
  config?: Descriptor;
  layers?: Descriptor[];
}
interface Descriptor {
  mediaType?: string;
  digest: string;
  size?: number;
  annotations?: Record<string, string>;
  platform?: { os?: string; architecture?: string };
}

async function fromOciLayout(root: string): Promise<Omit<ImageSource, 'cleanup'>> {
  const index = readJson<{ manifests?: Descriptor[] }>(join(root, 'index.json'), 'OCI index.json');
  let desc = index.manifests?.[0];
  if (!desc) bad(`OCI layout ${root} lists no manifest in index.json`);
  const refName = desc.annotations?.['org.opencontainers.image.ref.name'];
  for (let depth = 0; depth < 4; depth++) {
    const path = blobPath(root, desc.digest);
    const doc: Manifestish = readJson<Manifestish>(path, `manifest ${desc.digest}`);
    if ((await fileDigest(path)) !== desc.digest) bad(`manifest blob ${desc.digest} does not match its digest`);
    if (doc.manifests) {
      desc = doc.manifests.find((m: Descriptor) => m.platform?.os === 'linux' && m.platform?.architecture === 'amd64') ?? doc.manifests[0];
      if (!desc) bad(`image index ${path} lists no manifest`);
      continue;
    }
    if (!doc.config || !doc.layers) bad(`manifest ${desc.digest} has no config or layers`);
    const cfgPath = blobPath(root, doc.config.digest);
    if ((await fileDigest(cfgPath).catch(() => bad(`config blob ${doc.config!.digest} is missing`))) !== doc.config.digest)
      bad(`config blob ${doc.config.digest} does not match its digest`);
    const config = readJson<ImageConfig>(cfgPath, 'image config');
    const diffIds = config.rootfs?.diff_ids ?? [];
    if (diffIds.length !== doc.layers.length) bad(`the image config lists ${diffIds.length} diff ids for ${doc.layers.length} layers`);
    const layers = doc.layers.map((l: Descriptor, i: number): LayerSource => {
      const p = blobPath(root, l.digest);
      return {
        label: `${i + 1} (${l.digest.slice(0, 19)})`,
        path: p,
        diffId: diffIds[i],
        blobDigest: l.digest,
        open: () => layerChunks(p),
      };
    });
    return { layers, config, configDigest: doc.config.digest, refName };
  }
  bad(`OCI layout ${root}: image indexes nested too deep`);
}

async function fromDockerSave(root: string): Promise<Omit<ImageSource, 'cleanup'>> {
  const manifest = readJson<Array<{ Config: string; RepoTags?: string[]; Layers: string[] }>>(
    join(root, 'manifest.json'),
    'docker save manifest.json',
  );
  const m = manifest[0];
  if (!m?.Config || !Array.isArray(m.Layers)) bad('docker save manifest.json names no Config or Layers');
  const cfgPath = join(root, cleanPath(m.Config, 'config path'));
  const config = readJson<ImageConfig>(cfgPath, 'image config');
  const diffIds = config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== m.Layers.length) bad(`the image config lists ${diffIds.length} diff ids for ${m.Layers.length} layers`);
  const layers = m.Layers.map((l, i): LayerSource => {
    const p = join(root, cleanPath(l, 'layer path'));
    return { label: `${i + 1} (${l})`, path: p, diffId: diffIds[i], open: () => layerChunks(p) };
  });
  return { layers, config, configDigest: await fileDigest(cfgPath), refName: m.RepoTags?.[0] };
}

type TarEntry = ReturnType<ReturnType<typeof tarStream>['extract']> extends AsyncIterable<infer E> ? E : never;

/** What reading the archive at path threw, as the EINVAL that names it (a ThinpoolError passes as it is). */
function notATar(path: string, e: unknown): ThinpoolError {
  if (e instanceof ThinpoolError) return e;
  return new ThinpoolError('EINVAL', `${path} is not a valid tar archive (truncated or corrupt): ${(e as Error).message}`, { cause: e });
}

/** The entries of a (possibly gzipped) tar archive; a truncated or corrupt archive raises EINVAL naming it. */
async function* tarEntries(path: string): AsyncGenerator<TarEntry> {
  const ex = tarStream().extract();
  const input = await openLayer(path);
  input.on('error', (e) => ex.destroy(e));
  input.pipe(ex);
  try {
    for await (const e of ex) yield e;
  } catch (e) {
    throw notATar(path, e);
  } finally {
    input.destroy();
  }
}

/**
 * The top-level names of a tar archive (reads it through, or until it clearly is a layer tarball), with the
 * project's own reader (tar-reader.ts): telling a lone layer tarball from an image archive loads no tar-stream
 * and copies no body. A truncated or corrupt archive raises EINVAL naming it.
 */
async function tarNames(path: string): Promise<Set<string>> {
  const names = new Set<string>();
  // readTar leaves its input where the archive ends: closed here, with the file handle it holds (else Node closes
  // it on garbage collection, with a warning on stderr).
  const chunks = (await layerChunks(path))[Symbol.asyncIterator]();
  try {
    for await (const e of readTar({ [Symbol.asyncIterator]: () => chunks })) {
      names.add(cleanPath(e.header.name));
      if (names.size > 64 && !names.has('/manifest.json') && !names.has('/oci-layout')) {
        // A layer tarball with many entries: image archives hold few names at the top (blobs/, manifest.json).
        const top = [...names].filter((n) => n.split('/').length === 2);
        if (top.length > 16) break;
      }
    }
  } catch (e) {
    throw notATar(path, e);
  } finally {
    await chunks.return?.(undefined).catch(() => undefined);
  }
  return names;
}

async function unpackArchive(path: string, dir: string): Promise<void> {
  for await (const e of tarEntries(path)) {
    const p = cleanPath(e.header.name);
    if (e.header.type === 'file' && p !== '') {
      const out = join(dir, p);
      mkdirSync(dirname(out), { recursive: true });
      await pipeline(e, createWriteStream(out));
    } else e.resume();
  }
}

/** Read SOURCE: one directory, one archive, or layer tarballs (in order, bottom first). */
export async function readSource(paths: string[]): Promise<ImageSource> {
  if (paths.length === 0) bad('no image source given');
  for (const p of paths) if (!existsSync(p)) throw new ThinpoolError('ENOENT', `image source ${p} does not exist`);
  if (paths.length === 1 && statSync(paths[0]).isDirectory()) {
    const root = paths[0];
    if (existsSync(join(root, 'index.json'))) return { ...(await fromOciLayout(root)), cleanup: () => undefined };
    if (existsSync(join(root, 'manifest.json'))) return { ...(await fromDockerSave(root)), cleanup: () => undefined };
    bad(`${root} is neither an OCI image layout (no index.json) nor an unpacked docker save (no manifest.json)`);
  }
  for (const p of paths) if (!statSync(p).isFile()) bad(`${p} is not a file`);
  for (const p of paths)
    if (statSync(p).size === 0)
      bad(`${p} is empty: not a tar archive (an image source is an OCI layout, an OCI or docker save archive, or layer tarballs)`);
  if (paths.length === 1) {
    const names = await tarNames(paths[0]);
    if (names.has('/index.json') || names.has('/manifest.json')) {
      const dir = mkdtempSync(join(tmpdir(), 'thinpool-image-'));
      const cleanup = (): void => rmSync(dir, { recursive: true, force: true });
      try {
        await unpackArchive(paths[0], dir);
        const src =
          existsSync(join(dir, 'index.json')) && existsSync(join(dir, 'blobs')) ? await fromOciLayout(dir) : await fromDockerSave(dir);
        return { ...src, cleanup };
      } catch (e) {
        cleanup();
        throw e;
      }
    }
  }
  // A list of layer tarballs: the diff ids come from the content, read when needed (LayerSource.digest) or
  // while applying.
  const layers: LayerSource[] = [];
  const now = new Date().toISOString();
  const history: HistoryEntry[] = [];
  for (const [i, p] of paths.entries()) {
    const label = `${i + 1} (${basename(p)})`;
    layers.push({ label, path: p, digest: () => tarballDigest(p, label), open: () => layerChunks(p) });
    history.push({ created: now, created_by: `thinpool image import ${basename(p)}` });
  }
  const configFor = (diffIds: string[]): { config: ImageConfig; configDigest: string } => {
    const config: ImageConfig = {
      created: now,
      architecture: 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: diffIds },
      history,
    };
    return { config, configDigest: sha(JSON.stringify(config)) };
  };
  return { layers, ...configFor([]), configFor, cleanup: () => undefined };
}

/** The diff id of a layer tarball: sha256 of its uncompressed bytes (an empty or unreadable one refused). */
async function tarballDigest(p: string, label: string): Promise<string> {
  try {
    const h = createHash('sha256');
    let n = 0;
    for await (const c of await layerChunks(p)) {
      h.update(c as Buffer);
      n += (c as Buffer).length;
    }
    if (n === 0) throw emptyLayer(label);
    return `sha256:${h.digest('hex')}`;
  } catch (e) {
    if (e instanceof ThinpoolError) throw e;
    throw new ThinpoolError('EINVAL', `layer ${p} cannot be read (truncated or corrupt compression): ${(e as Error).message}`, {
      cause: e,
    });
  }
}

/** The chain ids of a list of diff ids (OCI image spec). */
export function chainIds(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) out.push(out.length === 0 ? d : sha(`${out[out.length - 1]} ${d}`));
  return out;
}
