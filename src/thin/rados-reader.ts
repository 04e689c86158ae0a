/**
 * Read-only opens of rados:// pools. They take no lock, so the pool's writer may go on committing meanwhile;
 * what they read is still one committed state, or they fail with ESTALE, never a mix of two.
 *
 * Why it is needed: a writer reuses the metadata and data blocks that commit N referenced but commit N+1 no
 * longer does as soon as N+1 is on disk, so a reader that walks commit N's trees while commits go on may read
 * blocks of another tree. dm-thin's answer is the held metadata root (reserve_metadata_snap): its trees and the
 * data blocks they map keep their references, so nothing they reach is reused while it is held.
 *
 * Contract:
 * - The open reads the superblock, the catalog and (when one is held) the held superblock and the catalog
 *   recorded with it, then the superblock again; when it changed (a commit came between) it starts over, up to
 *   OPEN_ATTEMPTS times, then ESTALE. The catalog is the staged one whose fingerprint matches the superblock
 *   (its commit has not published it yet), else the published one.
 * - With a held root the reader sees the held state: block 0 of its metadata device reads as the committed
 *   superblock with the held snapshot's mapping and details roots, time and transaction id, and its catalog is
 *   the one recorded when the root was reserved (`NAME.catalog.held`, tagged with those roots; when absent or
 *   of another reservation, the published catalog, reconciled against the held devices). Space figures are
 *   those of the commit read at open. Without a held root the reader sees the last commit.
 * - Every read of either device after that (metadata cache misses, data reads, sync or async) is followed by a
 *   read of the superblock: until `settle()` (the pool is open) it must equal the one read at open; afterwards,
 *   with a held root, the same root must still be held (same block, same bytes), without one the superblock
 *   must still equal it. Otherwise the read fails with ESTALE: the reader reopens (or reads a held root, which
 *   lasts while it is held). Writes are refused (EROFS).
 * - A synchronous read is checked by a synchronous superblock read of its own. Asynchronous reads share checks
 *   (`sharedCheck`): each waits for a check whose superblock read started after the read completed, which is all
 *   the rule needs (a writer reuses a block only once its next commit's superblock is written, so a read that
 *   saw a reused block is followed by a superblock read that sees that commit). With many reads in flight (NBD
 *   at queue depth 16) that is about one asynchronous superblock read per batch of completions, instead of one
 *   synchronous round trip per read on the thread that serves every request.
 */
import { sha256Hex } from '../sha256.js';
import { Core } from '../core/wasm.js';
import { ThinpoolError } from '../errors.js';
import type { AsyncBlockDevice } from '../io/block-device.js';
import type { RadosIoctx } from '../io/librados.js';
import { catalogAt, type CatalogData, type CatalogStore, type Envelope, parseEnvelope } from './catalog.js';
import { readSuperblock, sealSuperblockAt, type Superblock } from './superblock.js';

const BLOCK = 4096;
export const OPEN_ATTEMPTS = 8;

/** The tag a held catalog carries: the roots of the state it names. */
export function heldTag(sb: Pick<Superblock, 'dataMappingRoot' | 'deviceDetailsRoot'>): string {
  return `roots ${sb.dataMappingRoot} ${sb.deviceDetailsRoot}`;
}

const heldRootOf = (b: Uint8Array): number => Number(new DataView(b.buffer, b.byteOffset, BLOCK).getBigUint64(56, true));

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function stale(what: string): ThinpoolError {
  return new ThinpoolError(
    'ESTALE',
    `the pool's writer committed ${what}: this read-only view no longer holds; open the pool again (a held metadata snapshot, "thinpool metadata-snap reserve" or ThinPool.reserveMetadataSnap, gives a view that lasts while it is held)`,
  );
}

/** The catalog a reader sees (read once at open); it never changes anything. */
class ReaderCatalog implements CatalogStore {
  constructor(readonly catalog: CatalogData | null) {}
  readPublished(): CatalogData | null {
    return this.catalog;
  }
  readStaged(): Envelope | null {
    return null;
  }
  stage(): void {
    throw new ThinpoolError('EROFS', 'a read-only open of a RADOS pool changes nothing');
  }
  publish(): void {
    throw new ThinpoolError('EROFS', 'a read-only open of a RADOS pool changes nothing');
  }
  discardStaged(): void {
    throw new ThinpoolError('EROFS', 'a read-only open of a RADOS pool changes nothing');
  }
}

/** A device read through a check after every read; block 0 may be replaced (the view's superblock). */
class CheckedDevice implements AsyncBlockDevice {
  constructor(
    readonly inner: AsyncBlockDevice,
    readonly check: () => void,
    readonly checkAsync: () => Promise<void>,
    readonly block0: Uint8Array | null,
  ) {}
  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }
  /** A reader writes nothing. */
  readonly writeBackBytes = 0;
  #overlay(buf: Uint8Array, offsetBytes: number): void {
    if (this.block0 === null || offsetBytes >= BLOCK) return;
    const n = Math.min(buf.length, BLOCK - offsetBytes);
    buf.set(this.block0.subarray(offsetBytes, offsetBytes + n), 0);
  }
  read(buf: Uint8Array, offsetBytes: number): void {
    if (this.block0 !== null && offsetBytes + buf.length <= BLOCK) {
      this.#overlay(buf, offsetBytes); // the view's own superblock: nothing of the cluster's is read
      return;
    }
    this.inner.read(buf, offsetBytes);
    this.check();
    this.#overlay(buf, offsetBytes);
  }
  async readAsync(buf: Uint8Array, offsetBytes: number): Promise<void> {
    await this.inner.readAsync(buf, offsetBytes);
    await this.checkAsync();
    this.#overlay(buf, offsetBytes);
  }
  write(): void {
    throw new ThinpoolError('EROFS', 'a read-only open of a RADOS pool writes nothing');
  }
  async writeAsync(): Promise<void> {
    this.write();
  }
  flush(): void {}
  resize(): void {
    this.write();
  }
  discard(): boolean {
    this.write();
    return false;
  }
  close(): void {
    this.inner.close();
  }
}

export interface ReaderView {
  metadata: AsyncBlockDevice;
  data: AsyncBlockDevice;
  catalog: CatalogStore;
  /** The held root the view reads (0: the last commit). */
  heldRoot: number;
  /** The pool is open: from now on a held root need only stay held. */
  settle(): void;
}

/**
 * A consistent read-only view of the pool NAME over its devices (see the module comment). `catalog` is the
 * pool's catalog store (staged and published envelopes); `readHeldCatalog` reads the catalog recorded with a
 * held root, if any.
 */
export function openReaderView(
  io: Pick<RadosIoctx, 'readAll'>,
  name: string,
  metadata: AsyncBlockDevice,
  data: AsyncBlockDevice,
  catalog: { readStaged(): Envelope | null; readPublished(): CatalogData | null },
): ReaderView {
  const sb = new Uint8Array(BLOCK);
  const again = new Uint8Array(BLOCK);
  for (let attempt = 0; attempt < OPEN_ATTEMPTS; attempt++) {
    metadata.read(sb, 0);
    const live = readSuperblock(sb);
    const fingerprint = superblockHash(sb);
    let chosen = catalogAt(catalog, fingerprint);
    let heldBytes: Uint8Array | null = null;
    let view: Uint8Array | null = null;
    if (live.heldRoot !== 0) {
      heldBytes = new Uint8Array(BLOCK);
      metadata.read(heldBytes, live.heldRoot * BLOCK);
      const held = readSuperblock(heldBytes, live.heldRoot);
      const raw = io.readAll(`${name}.catalog.held`);
      const recorded = raw === null ? null : parseEnvelope(Buffer.from(raw).toString('utf8'), `RADOS object ${name}.catalog.held`);
      // Another reservation's catalog (or none): the published one, reconciled on open against the held devices.
      if (recorded !== null && recorded.fingerprint === heldTag(held)) chosen = recorded.catalog;
      const core = new Core(1, 0);
      const viewSb: Superblock = {
        ...live,
        dataMappingRoot: held.dataMappingRoot,
        deviceDetailsRoot: held.deviceDetailsRoot,
        time: held.time,
        transactionId: held.transactionId,
      };
      view = new Uint8Array(sealSuperblockAt(core, core.scratch, viewSb));
    }
    metadata.read(again, 0);
    if (!sameBytes(sb, again)) continue;
    const atOpen = sb.slice();
    const heldRoot = live.heldRoot;
    let settled = false;
    /** The superblock read now: true when the view holds as it is, false when the held root must be compared. */
    const holds = (now: Uint8Array): boolean => {
      if (sameBytes(now, atOpen)) return true;
      if (!settled) throw stale('while the pool was being opened');
      if (heldRoot === 0) throw stale('since this read-only open');
      if (heldRootOf(now) !== heldRoot) throw stale('and released the metadata snapshot this read-only open reads');
      return false;
    };
    const heldSame = (heldNow: Uint8Array): void => {
      if (!sameBytes(heldNow, heldBytes!)) throw stale('and replaced the metadata snapshot this read-only open reads');
    };
    const now = new Uint8Array(BLOCK);
    const heldNow = new Uint8Array(BLOCK);
    const check = (): void => {
      metadata.read(now, 0);
      if (holds(now)) return;
      metadata.read(heldNow, heldRoot * BLOCK);
      heldSame(heldNow);
    };
    const checkAsync = sharedCheck(async () => {
      const b = new Uint8Array(BLOCK);
      await metadata.readAsync(b, 0);
      if (holds(b)) return;
      await metadata.readAsync(b, heldRoot * BLOCK);
      heldSame(b);
    });
    return {
      metadata: new CheckedDevice(metadata, check, checkAsync, view),
      data: new CheckedDevice(data, check, checkAsync, null),
      catalog: new ReaderCatalog(chosen),
      heldRoot,
      settle: () => {
        settled = true;
      },
    };
  }
  throw stale(`during each of ${OPEN_ATTEMPTS} attempts to open the pool read-only`);
}

/**
 * One check shared by the asynchronous reads that need it: the returned function resolves (or rejects) with a
 * run of `run` that starts after the call. A call joins the run that is waiting to start, or makes one: it
 * starts a microtask later when no run is going (so the reads a batch of completions settles together join
 * it), else when the run going ends (that one started before the call, so it cannot vouch for the read).
 */
export function sharedCheck(run: () => Promise<void>): () => Promise<void> {
  // The last run started (settled or not): a run waiting to start starts after it, at once when it has ended.
  let last: Promise<void> = Promise.resolve();
  let waiting: Promise<void> | null = null;
  const begin = (): Promise<void> => {
    waiting = null;
    last = run();
    return last;
  };
  return () => {
    waiting ??= last.then(begin, begin);
    return waiting;
  };
}

/** The fingerprint commit.ts ties a staged catalog to (sha256 of the superblock's first 512 bytes). */
function superblockHash(b: Uint8Array): string {
  return sha256Hex(b.subarray(0, 512));
}
