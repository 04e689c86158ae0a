/**
 * thin_dump (0.9.0): the logical content of committed metadata as an `XmlSuperblock`, so that
 * `formatThinDumpXml(dumpMetadata(md))` is byte for byte what `thin_dump FILE` prints (spec 10.1), and with
 * `{ metadataSnap: true }` what `thin_dump -m FILE` prints (the held snapshot's devices, its time / transaction /
 * flags / version, `nr_data_blocks="0"`).
 *
 * The live view is the engine's current state (its device table and level-1 roots, which run ahead of the
 * on-disk details / level-0 trees until the commit): for a freshly opened or just committed ThinMetadata that is
 * exactly what is on disk. The held snapshot's view (-m) is read from the snapshot superblock's roots.
 *
 * `thinDumpText` yields the same text as bytes in pieces of about a mebibyte, walking one leaf at a time: its memory is
 * the metadata cache plus one buffer, whatever the pool's size (the CLI streams it). `dumpMetadata` builds the
 * whole logical content as objects (for the library and the tests; its size grows with the mappings).
 *
 * The small readers below (details, level 0, level-1 walks) are shared with usage.ts.
 */
import { ThinpoolError } from '../errors.js';
import type { DeviceDetails } from './device-details.js';
import type { ThinMetadata } from './metadata.js';
import type { Superblock } from './superblock.js';
import type { XmlDevice, XmlMapping, XmlSuperblock } from './thin-xml.js';
import { XmlBytes } from './xml-bytes.js';

/**
 * Metadata cache blocks `thinpool dump` opens with: 1 MiB. A dump reads each node once (one path of the tree
 * and one leaf at a time) and never comes back to it, so a small cache serves it; a larger one only costs
 * memory (each block read into a slot not used before touches a fresh page).
 */
export const DUMP_CACHE_BLOCKS = 256;

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
  return new Map(md.inspect().details.entries(root));
}

/** Level 0 of the mapping tree at root: device id -> level-1 root, in id order. */
export function readTopLevel(md: ThinMetadata, root: number): Map<number, number> {
  return new Map(md.inspect().l0.entries(root));
}

/** Visit every mapping of the level-1 tree at root in virtual block order. */
export function forEachL1(md: ThinMetadata, root: number, fn: (vblock: number, dblock: number, time: number) => void): void {
  md.inspect().l1.walk(root, (k, m) => fn(k, m.dblock, m.time));
}

/** One device of a view: its details and level-1 root. */
export interface ViewDevice extends DeviceDetails {
  id: number;
  root: number;
}

/**
 * The devices a tool run sees, in id order: the live devices (in-core state), or with -m the held snapshot's
 * (details tree walked, each looked up in its level 0 like thin_dump does).
 */
export function viewDevices(md: ThinMetadata, metadataSnap = false): ViewDevice[] {
  if (!metadataSnap) return md.deviceIds().map((id) => ({ id, ...md.deviceDetails(id) }));
  const sb = viewSuperblock(md, true);
  const details = readDetails(md, sb.deviceDetailsRoot);
  const tops = readTopLevel(md, sb.dataMappingRoot);
  return [...details].map(([id, d]) => ({ id, ...d, root: l1RootOf(tops, id) }));
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
  const devices: XmlDevice[] = [];
  for (const d of viewDevices(md, snap)) {
    const mappings: XmlMapping[] = [];
    let cur: XmlMapping | undefined;
    forEachL1(md, d.root, (v, db, t) => {
      if (cur !== undefined && v === cur.vblock + cur.length && db === cur.dblock + cur.length && t === cur.time) {
        cur.length++;
        return;
      }
      cur = { vblock: v, dblock: db, length: 1, time: t };
      mappings.push(cur);
    });
    devices.push({
      devId: d.id,
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

/**
 * thin_dump's text for the view as ASCII bytes, in pieces of at least `pieceBytes` (the last may be shorter):
 * their concatenation equals `formatThinDumpXml(dumpMetadata(md))`. Each piece is a view of one reused buffer,
 * valid until the generator is resumed (copy it to keep it). Nothing may change md while the generator is live.
 */
export function* thinDumpText(md: ThinMetadata, opts: DumpOptions = {}, pieceBytes = 1 << 20): Generator<Buffer, void, undefined> {
  const snap = opts.metadataSnap === true;
  const sb = viewSuperblock(md, snap);
  const out = new XmlBytes(pieceBytes);
  out.superblockOpen({
    time: sb.time,
    transaction: sb.transactionId,
    flags: sb.flags,
    version: sb.version,
    dataBlockSize: sb.dataBlockSectors,
    nrDataBlocks: snap ? 0 : md.nrDataBlocks,
  });
  const l1 = md.inspect().l1;
  for (const d of viewDevices(md, snap)) {
    out.deviceOpen({
      devId: d.id,
      mappedBlocks: d.mappedBlocks,
      transaction: d.transactionId,
      creationTime: d.creationTime,
      snapTime: d.snapshottedTime,
    });
    // The current run: v .. v+len-1 -> db .. db+len-1 at time t.
    let v = 0,
      db = 0,
      len = 0,
      t = 0;
    for (const leaf of l1.leaves(d.root)) {
      const n = leaf.nr;
      for (let i = 0; i < n; i++) {
        const k = leaf.key(i);
        const { dblock: kb, time: kt } = leaf.value(i);
        if (len > 0 && k === v + len && kb === db + len && kt === t) {
          len++;
          continue;
        }
        if (len > 0) out.mapping(v, db, len, t);
        v = k;
        db = kb;
        len = 1;
        t = kt;
      }
      if (out.full) yield out.take();
    }
    if (len > 0) out.mapping(v, db, len, t);
    out.deviceClose();
  }
  out.superblockClose();
  yield out.take();
}
