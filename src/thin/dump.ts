/**
 * thin_dump (0.9.0): the logical content of committed metadata as an `XmlSuperblock`, so that
 * `formatThinDumpXml(dumpMetadata(md))` is byte for byte what `thin_dump FILE` prints (spec 10.1), and with
 * `{ metadataSnap: true }` what `thin_dump -m FILE` prints (the held snapshot's devices, its time / transaction /
 * flags / version, `nr_data_blocks="0"`).
 *
 * Everything is read from the superblock's roots (not from the engine's in-core device table), so the dump shows
 * what is on disk for a freshly opened ThinMetadata, or the last commit of an open one (plus uncommitted tree
 * changes, if any; commit first).
 *
 * The small readers below (details, level 0, level-1 walks) are shared with usage.ts.
 */
import { ThinpoolError } from '../errors.js';
import type { DeviceDetails, ThinMetadata } from './metadata.js';
import type { Superblock } from './superblock.js';
import type { XmlDevice, XmlMapping, XmlSuperblock } from './thin-xml.js';

const TWO32 = 4294967296;

export interface DumpOptions {
  /** Dump the held metadata snapshot (thin_dump -m). Throws ENOENT when none is held. */
  metadataSnap?: boolean;
}

/** The superblock a tool run reads: the live one, or the held snapshot's copy with -m. */
export function viewSuperblock(md: ThinMetadata, metadataSnap = false): Superblock {
  if (!metadataSnap) return md.superblock as Superblock;
  const held = md.heldSuperblock();
  if (held === null) throw new ThinpoolError('ENOENT', 'no current metadata snap');
  return held;
}

/** Device details by id, in id order, from the details tree at root. */
export function readDetails(md: ThinMetadata, root: number): Map<number, DeviceDetails> {
  const out = new Map<number, DeviceDetails>();
  const u = md.core.u32;
  md.details.walk(root, (id, v) => {
    const p = v >>> 2;
    out.set(id, {
      mappedBlocks: u[p] + u[p + 1] * TWO32,
      transactionId: u[p + 2] + u[p + 3] * TWO32,
      creationTime: u[p + 4],
      snapshottedTime: u[p + 5],
    });
  });
  return out;
}

/** Level 0 of the mapping tree at root: device id -> level-1 root, in id order. */
export function readTopLevel(md: ThinMetadata, root: number): Map<number, number> {
  return new Map(md.l0.entries64(root));
}

/** Visit every mapping of the level-1 tree at root in virtual block order. */
export function forEachL1(md: ThinMetadata, root: number, fn: (vblock: number, dblock: number, time: number) => void): void {
  const u = md.core.u32;
  md.l1.walk(root, (k, a) => {
    const lo = u[a >>> 2];
    fn(k, u[(a >>> 2) + 1] * 256 + (lo >>> 24), lo & 0xffffff);
  });
}

/** The level-1 root of device id in the level-0 map, or a thin_dump-like error. */
export function l1RootOf(tops: Map<number, number>, id: number, what = 'thin device'): number {
  const r = tops.get(id);
  if (r === undefined) throw new ThinpoolError('ECORRUPT', `no mapping tree for ${what} ${id}`, { structure: 'mapping tree (level 0)' });
  return r;
}

export function dumpMetadata(md: ThinMetadata, opts: DumpOptions = {}): XmlSuperblock {
  const snap = opts.metadataSnap === true;
  const sb = viewSuperblock(md, snap);
  const details = readDetails(md, sb.deviceDetailsRoot);
  const tops = readTopLevel(md, sb.dataMappingRoot);
  const devices: XmlDevice[] = [];
  // thin_dump walks the details tree and looks each device up in level 0.
  for (const [id, d] of details) {
    const root = l1RootOf(tops, id);
    const mappings: XmlMapping[] = [];
    let cur: XmlMapping | undefined;
    forEachL1(md, root, (v, db, t) => {
      if (cur !== undefined && v === cur.vblock + cur.length && db === cur.dblock + cur.length && t === cur.time) {
        cur.length++;
        return;
      }
      cur = { vblock: v, dblock: db, length: 1, time: t };
      mappings.push(cur);
    });
    devices.push({
      devId: id,
      mappedBlocks: d.mappedBlocks,
      transaction: d.transactionId,
      creationTime: d.creationTime,
      snapTime: d.snapshottedTime,
      mappings,
    });
  }
  return {
    uuid: '',
    time: sb.time,
    transaction: sb.transactionId,
    flags: sb.flags,
    version: sb.version,
    dataBlockSize: sb.dataBlockSectors,
    nrDataBlocks: snap ? 0 : md.nrDataBlocks,
    devices,
  };
}
