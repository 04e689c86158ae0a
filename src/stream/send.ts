/**
 * Send: a volume's content, or what changed since a base volume, as an rbd diff stream (rbd-diff.ts), built on
 * the pool's public API (diff, map, read).
 *
 * Contract:
 * - Full send (no base): one data record per provisioned extent (split into pieces), nothing for holes; the
 *   receiver makes a new volume, so unprovisioned ranges stay holes there.
 * - Incremental send (base given): thin_delta semantics from the two mapping trees, no data block compared or
 *   read unless it differs: blocks mapped by SNAPSHOT to another data block than BASE's, or mapped only by
 *   SNAPSHOT, become data records; blocks mapped only by BASE become zero records; shared blocks are skipped.
 *   One exception: when SNAPSHOT is larger than BASE and BASE ends inside a block, the rest of that block is
 *   sent (BASE's bytes there are past its end, so a receiver growing BASE reads zeros, SNAPSHOT may not).
 * - Records are clamped to SNAPSHOT's size; the stream carries SNAPSHOT's name as to-snap and BASE's as
 *   from-snap, as `rbd export-diff` does.
 * - Memory is bounded by one piece (`pieceBytes`, default 4 MiB) per yielded chunk: the generator reads the
 *   next piece only when the consumer asks for it. The pool must stay open and SNAPSHOT unchanged meanwhile.
 */
import { ThinpoolError } from '../errors.js';
import type { ThinPool } from '../thin/pool.js';
import { DiffEncoder, type DiffVersion } from './rbd-diff.js';

export interface SendOptions {
  /** Base volume: send only what differs from it. */
  from?: string | number;
  /** Stream version (default 1, the one `rbd import-diff` reads). */
  version?: DiffVersion;
  /** Largest data record piece (default 4 MiB). */
  pieceBytes?: number;
}

export interface SendRange {
  kind: 'write' | 'zero';
  offset: number;
  length: number;
}

export interface SendPlan {
  snapshot: string;
  base?: string;
  sizeBytes: number;
  ranges: SendRange[];
  /** Bytes of data records. */
  dataBytes: number;
  /** Bytes covered by zero records. */
  zeroBytes: number;
}

const DEFAULT_PIECE = 4 * 1024 * 1024;

function push(out: SendRange[], kind: SendRange['kind'], offset: number, end: number): void {
  if (end <= offset) return;
  const prev = out[out.length - 1];
  if (prev !== undefined && prev.kind === kind && prev.offset + prev.length === offset) prev.length += end - offset;
  else out.push({ kind, offset, length: end - offset });
}

/** What a send will put in the stream (the mapping trees only; no data read). */
export function planSend(pool: ThinPool, snapshot: string | number, opts: Pick<SendOptions, 'from'> = {}): SendPlan {
  const snap = pool.volume(snapshot);
  const size = snap.sizeBytes;
  const bs = pool.blockSize;
  const ranges: SendRange[] = [];
  let baseLabel: string | undefined;
  if (opts.from === undefined) {
    for (const e of snap.map()) push(ranges, 'write', e.offsetBytes, Math.min(size, e.offsetBytes + e.lengthBytes));
  } else {
    const base = pool.volume(opts.from);
    baseLabel = base.label;
    const baseSize = base.sizeBytes;
    // The partial last block of a smaller base: its bytes past baseSize are not BASE's content.
    const tail = baseSize < size && baseSize % bs !== 0 ? { from: baseSize, to: Math.min(size, Math.ceil(baseSize / bs) * bs) } : null;
    const tailMapped = tail !== null && snap.extents(tail.from, 1).length > 0;
    for (const r of pool.diff(base.id, snap.id)) {
      const from = r.begin * bs;
      const to = Math.min(size, (r.begin + r.length) * bs);
      if (r.kind === 'different' || r.kind === 'right_only') push(ranges, 'write', from, to);
      else if (r.kind === 'left_only') push(ranges, 'zero', from, to);
      else if (tailMapped && tail !== null && from <= tail.from && to >= tail.to) {
        push(ranges, 'write', tail.from, tail.to);
      }
    }
    ranges.sort((a, b) => a.offset - b.offset);
  }
  let dataBytes = 0;
  let zeroBytes = 0;
  for (const r of ranges) {
    if (r.kind === 'write') dataBytes += r.length;
    else zeroBytes += r.length;
  }
  return { snapshot: snap.label, base: baseLabel, sizeBytes: size, ranges, dataBytes, zeroBytes };
}

/**
 * The stream of `snapshot` (or of its changes since opts.from), chunk by chunk. `onProgress(doneBytes,
 * totalBytes)` counts the data bytes read so far.
 */
export async function* sendStream(
  pool: ThinPool,
  snapshot: string | number,
  opts: SendOptions = {},
  onProgress?: (done: number, total: number) => void,
): AsyncGenerator<Uint8Array, SendPlan, undefined> {
  const plan = planSend(pool, snapshot, opts);
  const enc = new DiffEncoder(opts.version ?? 1);
  const piece = Math.max(512, opts.pieceBytes ?? DEFAULT_PIECE);
  if (pool.isClosed) throw new ThinpoolError('ECLOSED', 'pool is closed');
  const snap = pool.volume(snapshot);
  yield enc.banner();
  if (plan.base !== undefined) yield enc.fromSnap(plan.base);
  yield enc.toSnap(plan.snapshot);
  yield enc.size(plan.sizeBytes);
  let done = 0;
  for (const r of plan.ranges) {
    if (r.kind === 'zero') {
      yield enc.zero(r.offset, r.length);
      continue;
    }
    for (let off = r.offset; off < r.offset + r.length; off += piece) {
      const n = Math.min(piece, r.offset + r.length - off);
      const data = new Uint8Array(n);
      snap.readSync(data, off);
      yield enc.writeHeader(off, n);
      yield data;
      done += n;
      onProgress?.(done, plan.dataBytes);
    }
  }
  yield enc.end();
  return plan;
}
