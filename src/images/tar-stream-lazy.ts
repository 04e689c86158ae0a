/**
 * tar-stream, loaded on first use: only OCI and `docker save` archives (source.ts) and a container's diff id
 * (changes.ts) need it; plain layer tarballs are read by tar-reader.ts. Loading tar-stream and streamx costs
 * every image command tens of milliseconds of module loading otherwise (they live outside the CLI bundle, so
 * outside its code cache).
 */
import { createRequire } from 'node:module';

type TarStream = typeof import('tar-stream');
const require = createRequire(import.meta.url);
let loaded: TarStream | undefined;

/** The tar-stream module, required the first time this is called. */
export function tarStream(): TarStream {
  loaded ??= require('tar-stream') as TarStream;
  return loaded;
}
