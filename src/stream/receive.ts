/**
 * Receive: an rbd diff stream (ours or `rbd export-diff`'s, v1 or v2) made into a new volume of a pool, built on
 * the pool's public API (create, snapshot, resize, write, discard, update, delete, commit).
 *
 * Contract:
 * - A stream with a from-snap record (or `opts.from`) is incremental: the new volume is a snapshot of that base
 *   (which must exist in the pool), resized to the stream's size, with the stream's records applied; every block
 *   the stream does not touch stays shared with the base. A stream without one makes a new empty volume.
 * - Holes stay holes: a zero record unmaps whole blocks (zeroing partial edges only where mapped); a whole block
 *   of zeros in a data record is unmapped rather than written; a partial block of zeros over a hole is skipped.
 * - All or nothing: the volume carries the owner label `thinpool.owner=receive` while it is filled (so no other
 *   user can write, delete or rename it meanwhile), gets its final labels at the end record and is committed
 *   then, once. A truncated or corrupt stream (ESTREAM), a missing base or any failure deletes the volume again,
 *   releases the data blocks it had taken from the data file (holes again) and commits nothing, so the pool's
 *   committed state and its data file are as before (the durable high-water mark, data.hwm, may have risen: it
 *   only ever does). The base's snapshotted time moves in the open transaction, as any snapshot of it would. A volume left with that owner label by a
 *   crash after a commit forced mid-receive (space pressure) is incomplete: the pool drops it when it is next
 *   opened writable (a read-only open still lists it, owned by `receive`).
 * - Memory is bounded by one decoder piece (1 MiB) whatever the stream's size; the source is read as the
 *   records are applied (a pipe works).
 */
import { ThinpoolError } from '../errors.js';
import { OWNER_LABEL, RECEIVING_OWNER, type ThinPool } from '../thin/pool.js';
import type { Volume } from '../thin/volume.js';
import { decodeDiff, type DiffRecord } from './rbd-diff.js';

/** The owner a volume carries while it is being received (the pool drops such volumes when it opens). */
export { RECEIVING_OWNER };

export interface ReceiveOptions {
  /** Base volume in this pool (default: the stream's from-snap name). Only for incremental streams. */
  from?: string | number;
  /** Labels of the new volume. */
  labels?: Record<string, string>;
  /** Make the new volume read-only once received. */
  readOnly?: boolean;
  /** Called with the number of stream bytes read so far. */
  onProgress?: (consumedBytes: number) => void;
}

export interface ReceiveResult {
  volume: Volume;
  id: number;
  name: string;
  sizeBytes: number;
  /** The base volume of an incremental stream. */
  base?: string;
  /** The stream's from-snap and to-snap names. */
  fromSnap?: string;
  toSnap?: string;
  /** Bytes of data records applied (written or unmapped as zeros) and covered by zero records. */
  dataBytes: number;
  zeroBytes: number;
}

const owner = { owner: RECEIVING_OWNER };

function allZero(b: Uint8Array): boolean {
  // Compare in 8-byte words where aligned.
  if (b.byteOffset % 8 === 0 && b.length % 8 === 0) {
    const w = new BigUint64Array(b.buffer, b.byteOffset, b.length / 8);
    for (let i = 0; i < w.length; i++) if (w[i] !== 0n) return false;
    return true;
  }
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** Apply one piece of a data record: nonzero runs written, zero whole blocks unmapped, zeros over holes skipped. */
function applyWrite(vol: Volume, bs: number, offset: number, data: Uint8Array): void {
  let runStart = -1;
  const flush = (end: number): void => {
    if (runStart >= 0) vol.writeSync(data.subarray(runStart, end), offset + runStart);
    runStart = -1;
  };
  for (let at = 0; at < data.length; ) {
    const pos = offset + at;
    const n = Math.min(bs - (pos % bs), data.length - at);
    const part = data.subarray(at, at + n);
    if (!allZero(part)) {
      if (runStart < 0) runStart = at;
    } else {
      flush(at);
      if (n === bs) vol.discardSync(pos, n);
      else if (vol.extents(pos, n).length > 0) vol.writeSync(part, pos);
    }
    at += n;
  }
  flush(data.length);
}

/**
 * Undo a failed receive in the open transaction: delete the volume, then release from the data file the blocks
 * it had allocated (free in the committed state and now in the transaction too), so the data file reads as it
 * did before: blocks the pool never used stay holes.
 */
function abandon(pool: ThinPool, vol: Volume, base: string | undefined): void {
  const bs = pool.blockSize;
  const fresh: number[] = [];
  try {
    const shared = new Set<number>();
    if (base !== undefined && pool.has(base)) {
      for (const e of pool.volume(base).map()) for (let d = e.dblock; d < e.dblock + e.lengthBytes / bs; d++) shared.add(d);
    }
    for (const e of vol.map()) for (let d = e.dblock; d < e.dblock + e.lengthBytes / bs; d++) if (!shared.has(d)) fresh.push(d);
    pool.deleteSync(vol.id, owner);
    for (const d of fresh) pool.storage.data.discard(d * bs, bs);
  } catch {
    // The pool or a device failed meanwhile: nothing of this transaction will be committed, and the blocks it
    // took are free in the committed state either way.
  }
}

/**
 * Receive the stream from `source` as the new volume `name`. Commits once, at the end. See the contract above.
 */
export async function receive(
  pool: ThinPool,
  name: string,
  source: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array>,
  opts: ReceiveOptions = {},
): Promise<ReceiveResult> {
  if (pool.has(name)) throw new ThinpoolError('EEXIST', `a volume named "${name}" already exists`);
  let vol: Volume | null = null;
  let fromSnap: string | undefined;
  let toSnap: string | undefined;
  let size: number | null = null;
  let base: string | undefined;
  let dataBytes = 0;
  let zeroBytes = 0;
  const start = (): Volume => {
    if (size === null)
      throw new ThinpoolError('ESTREAM', 'rbd diff stream has no size record before its data: it is not a complete export-diff stream');
    const baseRef = opts.from ?? fromSnap;
    if (opts.from !== undefined && fromSnap === undefined) {
      throw new ThinpoolError(
        'EINVAL',
        `the stream is a full stream (no from-snap record): it makes a new volume and cannot be applied onto ${String(opts.from)}; receive it without a base`,
      );
    }
    const labels = { [OWNER_LABEL]: RECEIVING_OWNER };
    let v: Volume;
    if (baseRef !== undefined) {
      if (!pool.has(baseRef)) {
        throw new ThinpoolError(
          'ENOENT',
          `the stream is incremental from "${String(baseRef)}", but no volume of that name is in this pool: receive the stream of "${String(baseRef)}" first, or name the base volume with --from`,
        );
      }
      const b = pool.volume(baseRef);
      base = b.label;
      v = pool.snapshotSync(b.id, name, { labels });
      if (size !== v.sizeBytes) pool.resizeSync(v.id, size, owner);
    } else {
      v = pool.createThinSync(name, { size, labels });
    }
    return v;
  };
  try {
    for await (const rec of decodeDiff(source, { onBytes: opts.onProgress }) as AsyncGenerator<DiffRecord>) {
      switch (rec.type) {
        case 'from':
          fromSnap = rec.name;
          break;
        case 'to':
          toSnap = rec.name;
          break;
        case 'size':
          size = rec.size;
          break;
        case 'write':
          vol ??= start();
          applyWrite(vol, pool.blockSize, rec.offset, rec.data);
          dataBytes += rec.data.length;
          break;
        case 'zero':
          vol ??= start();
          vol.discardSync(rec.offset, rec.length);
          zeroBytes += rec.length;
          break;
        case 'end': {
          vol ??= start();
          pool.updateSync(vol.id, { labels: { ...(opts.labels ?? {}) }, ...(opts.readOnly ? { readOnly: true } : {}) }, owner);
          pool.commitSync();
          return { volume: vol, id: vol.id, name, sizeBytes: vol.sizeBytes, base, fromSnap, toSnap, dataBytes, zeroBytes };
        }
      }
    }
    throw new ThinpoolError('ESTREAM', 'rbd diff stream ended without its end record');
  } catch (e) {
    if (vol !== null) abandon(pool, vol, base);
    throw e;
  }
}

/** Delete volumes left half-received (see ThinPool.dropIncompleteReceives; every writable open does it). */
export function dropIncompleteReceives(pool: ThinPool): string[] {
  return pool.dropIncompleteReceives();
}
