/**
 * The XML format of thin_dump / thin_restore 0.9.0 (spec section 10): its records, the writer and the document
 * rules of the reader. Pure functions, no I/O. Layer: thin metadata (used by dump.ts, restore.ts, xml-bytes.ts).
 *
 * - `formatThinDumpXml` prints byte for byte what thin_dump 0.9.0 prints for the same metadata.
 * - `parseThinXml` / `parseThinXmlStream` accept what thin_restore 0.9.0 accepts, with its error wording for the
 *   documented cases (`ThinpoolError('EXML')`); the tags come from xml-tokenizer.ts.
 */
import { ThinpoolError } from '../errors.js';
import { type Tag, tokenize, xmlError } from './xml-tokenizer.js';

/** One run of mappings: virtual blocks `vblock .. vblock+length-1` map to `dblock .. dblock+length-1`. */
export interface XmlMapping {
  vblock: number;
  dblock: number;
  /** Number of blocks in the run; 1 for a single mapping. */
  length: number;
  time: number;
}

export interface XmlDevice {
  devId: number;
  /** Printed as stored by thin_dump; ignored (recomputed) by thin_restore. */
  mappedBlocks: number;
  transaction: number;
  creationTime: number;
  snapTime: number;
  mappings: XmlMapping[];
}

export interface XmlSuperblock {
  /** Never printed by thin_dump 0.9.0 (always `uuid=""`). */
  uuid: string;
  time: number;
  transaction: number;
  flags: number;
  version: number;
  /** In 512-byte sectors. */
  dataBlockSize: number;
  nrDataBlocks: number;
  devices: XmlDevice[];
  /** `metadata_snap` attribute, only set when the input carried it (thin_dump 0.9.0 never prints it). */
  metadataSnap?: number;
}

export interface ParseThinXmlOptions {
  /**
   * Reject a mapping whose data block is >= nr_data_blocks, as thin_restore does
   * (`mapping beyond end of data device (B >= N)`). Default true. Turn off to read `thin_dump -m` output,
   * which prints nr_data_blocks="0".
   */
  checkDataBounds?: boolean;
}

// ---------------------------------------------------------------------------------------------------------------
// Formatting

/** Sorted, coalesced runs of one device, exactly as thin_dump 0.9.0 groups them (spec 10.1). */
export function coalesceMappings(mappings: readonly XmlMapping[]): XmlMapping[] {
  const sorted = mappings.filter((m) => m.length > 0).sort((a, b) => a.vblock - b.vblock);
  const out: XmlMapping[] = [];
  let cur: XmlMapping | undefined;
  for (const m of sorted) {
    if (cur !== undefined) {
      if (m.vblock < cur.vblock + cur.length) {
        throw new ThinpoolError('EINVAL', `overlapping mappings at virtual block ${m.vblock}`);
      }
      if (m.vblock === cur.vblock + cur.length && m.dblock === cur.dblock + cur.length && m.time === cur.time) {
        cur.length += m.length;
        continue;
      }
      out.push(cur);
    }
    cur = { vblock: m.vblock, dblock: m.dblock, length: m.length, time: m.time };
  }
  if (cur !== undefined) out.push(cur);
  return out;
}

/** thin_dump's opening line for the superblock. */
export function xmlSuperblockOpen(sb: Omit<XmlSuperblock, 'devices' | 'uuid'>): string {
  return (
    `<superblock uuid="" time="${sb.time}" transaction="${sb.transaction}" flags="${sb.flags}" ` +
    `version="${sb.version}" data_block_size="${sb.dataBlockSize}" nr_data_blocks="${sb.nrDataBlocks}">\n`
  );
}

/** thin_dump's opening line for a device. */
export function xmlDeviceOpen(dev: Omit<XmlDevice, 'mappings'>): string {
  return (
    `  <device dev_id="${dev.devId}" mapped_blocks="${dev.mappedBlocks}" transaction="${dev.transaction}" ` +
    `creation_time="${dev.creationTime}" snap_time="${dev.snapTime}">\n`
  );
}

/** thin_dump's line for one coalesced run (length >= 1). */
export function xmlMappingLine(vblock: number, dblock: number, length: number, time: number): string {
  return length === 1
    ? `    <single_mapping origin_block="${vblock}" data_block="${dblock}" time="${time}"/>\n`
    : `    <range_mapping origin_begin="${vblock}" data_begin="${dblock}" length="${length}" time="${time}"/>\n`;
}

export const XML_DEVICE_CLOSE = '  </device>\n';
export const XML_SUPERBLOCK_CLOSE = '</superblock>\n';

/** The text thin_dump 0.9.0 prints for this metadata (devices by increasing id, runs coalesced). */
export function formatThinDumpXml(sb: XmlSuperblock): string {
  const parts: string[] = [xmlSuperblockOpen(sb)];
  const devices = [...sb.devices].sort((a, b) => a.devId - b.devId);
  for (const dev of devices) {
    parts.push(xmlDeviceOpen(dev));
    for (const m of coalesceMappings(dev.mappings)) parts.push(xmlMappingLine(m.vblock, m.dblock, m.length, m.time));
    parts.push(XML_DEVICE_CLOSE);
  }
  parts.push(XML_SUPERBLOCK_CLOSE);
  return parts.join('');
}

/** Every mapped block of a device as `[vblock, dblock, time]`, in increasing virtual block order. */
export function expandMappings(dev: XmlDevice): Array<[number, number, number]> {
  const out: Array<[number, number, number]> = [];
  const runs = [...dev.mappings].sort((a, b) => a.vblock - b.vblock);
  for (const m of runs) {
    for (let i = 0; i < m.length; i++) out.push([m.vblock + i, m.dblock + i, m.time]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Parsing

function getAttr(tag: Tag, key: string): string {
  const v = tag.attrs.get(key);
  if (v === undefined) throw xmlError(`could not find attribute: ${key}`);
  return v;
}

/** An unsigned decimal integer (thin_restore uses boost::lexical_cast; we accept plain digits only). */
function toUint(tag: Tag, key: string, value: string, max: number): number {
  if (!/^[0-9]+$/.test(value)) {
    throw xmlError(`bad lexical cast: source type value could not be interpreted as target (${key}="${value}")`, tag.line);
  }
  const v = Number(value);
  if (!Number.isSafeInteger(v) || v > max) throw xmlError(`value out of range: ${key}="${value}"`, tag.line);
  return v;
}

const U32 = 0xffffffff;
const U64 = Number.MAX_SAFE_INTEGER;

function uintAttr(tag: Tag, key: string, max: number): number {
  return toUint(tag, key, getAttr(tag, key), max);
}

function optUintAttr(tag: Tag, key: string, max: number, dflt: number): number {
  const v = tag.attrs.get(key);
  return v === undefined ? dflt : toUint(tag, key, v, max);
}

/** Parse thin_dump XML following thin_restore 0.9.0's rules (spec 10.2). Throws `ThinpoolError('EXML')`. */
export function parseThinXml(text: string, options: ParseThinXmlOptions = {}): XmlSuperblock {
  let sb: XmlSuperblock | undefined;
  let dev: XmlDevice | undefined;
  parseThinXmlStream(
    text,
    undefined,
    {
      superblock: (s) => void (sb = s),
      device: (d) => {
        sb!.devices.push(d);
        dev = d;
      },
      mapping: (m) => void dev!.mappings.push(m),
      deviceEnd: () => void (dev = undefined),
    },
    options,
  );
  return sb!;
}

/** What a streamed parse hands over, in document order. */
export interface ThinXmlHandler {
  /** The superblock's attributes (`devices` empty). */
  superblock(sb: XmlSuperblock): void;
  /** A device's attributes (`mappings` empty); its mappings follow, then deviceEnd. */
  device(dev: XmlDevice): void;
  /** One mapping or run of the current device (length >= 1), as written (not sorted, not coalesced). */
  mapping(m: XmlMapping): void;
  deviceEnd(): void;
}

/**
 * Parse thin_dump XML as a stream, with parseThinXml's rules and errors: `first`, then the pieces `more` returns
 * until null (split anywhere, even inside a tag). Memory: the current piece and one device's attributes.
 */
export function parseThinXmlStream(
  first: string,
  more: (() => string | null) | undefined,
  h: ThinXmlHandler,
  options: ParseThinXmlOptions = {},
): void {
  const checkDataBounds = options.checkDataBounds ?? true;
  let sb: XmlSuperblock | undefined;
  let sbDone = false;
  let dev: XmlDevice | undefined;
  const ids = new Set<number>();
  const stack: string[] = [];

  const addMapping = (_tag: Tag, m: XmlMapping): void => {
    if (dev === undefined) throw xmlError('not in device');
    if (m.length === 0) return;
    const last = m.dblock + m.length - 1;
    if (checkDataBounds && sb !== undefined && last >= sb.nrDataBlocks) {
      const bad = Math.max(m.dblock, sb.nrDataBlocks);
      throw xmlError(`mapping beyond end of data device (${bad} >= ${sb.nrDataBlocks})`);
    }
    h.mapping(m);
  };
  const endDevice = (): void => {
    dev = undefined;
    h.deviceEnd();
  };

  for (const tag of tokenize(first, more)) {
    if (tag.kind === 'close') {
      const open = stack.pop();
      if (open !== tag.name) throw xmlError('Parse error: mismatched tag', tag.line);
      if (tag.name === 'device') endDevice();
      else if (tag.name === 'superblock') sbDone = true;
      continue;
    }
    if (stack.length === 0 && (sb !== undefined || sbDone)) {
      throw xmlError('Parse error: junk after document element', tag.line);
    }
    switch (tag.name) {
      case 'superblock': {
        if (sb !== undefined) throw xmlError('missing superblock'); // thin_restore's wording for a nested one
        const uuid = getAttr(tag, 'uuid');
        const time = uintAttr(tag, 'time', U32);
        const transaction = uintAttr(tag, 'transaction', U64);
        const flags = optUintAttr(tag, 'flags', U32, 0);
        const version = optUintAttr(tag, 'version', U32, 1);
        const dataBlockSize = uintAttr(tag, 'data_block_size', U32);
        const nrDataBlocks = uintAttr(tag, 'nr_data_blocks', U64);
        sb = { uuid, time, transaction, flags, version, dataBlockSize, nrDataBlocks, devices: [] };
        const snap = tag.attrs.get('metadata_snap');
        if (snap !== undefined) sb.metadataSnap = toUint(tag, 'metadata_snap', snap, U64);
        h.superblock(sb);
        break;
      }
      case 'device': {
        if (sb === undefined) throw xmlError('missing superblock');
        if (dev !== undefined) throw xmlError('nested device', tag.line);
        const devId = uintAttr(tag, 'dev_id', U32);
        const d: XmlDevice = {
          devId,
          mappedBlocks: uintAttr(tag, 'mapped_blocks', U64),
          transaction: uintAttr(tag, 'transaction', U64),
          creationTime: uintAttr(tag, 'creation_time', U32),
          snapTime: uintAttr(tag, 'snap_time', U32),
          mappings: [],
        };
        if (ids.has(devId)) throw xmlError('Device already exists');
        ids.add(devId);
        dev = d;
        h.device(d);
        break;
      }
      case 'single_mapping': {
        if (dev === undefined) throw xmlError('not in device');
        const v = tag.values;
        if (v !== undefined) {
          addMapping(tag, {
            vblock: toUint(tag, 'origin_block', v[0], U64),
            dblock: toUint(tag, 'data_block', v[1], U64),
            length: 1,
            time: toUint(tag, 'time', v[2], U32),
          });
          break;
        }
        addMapping(tag, {
          vblock: uintAttr(tag, 'origin_block', U64),
          dblock: uintAttr(tag, 'data_block', U64),
          length: 1,
          time: uintAttr(tag, 'time', U32),
        });
        break;
      }
      case 'range_mapping': {
        if (dev === undefined) throw xmlError('not in device');
        const v = tag.values;
        if (v !== undefined) {
          addMapping(tag, {
            vblock: toUint(tag, 'origin_begin', v[0], U64),
            dblock: toUint(tag, 'data_begin', v[1], U64),
            length: toUint(tag, 'length', v[2], U64),
            time: toUint(tag, 'time', v[3], U32),
          });
          break;
        }
        addMapping(tag, {
          vblock: uintAttr(tag, 'origin_begin', U64),
          dblock: uintAttr(tag, 'data_begin', U64),
          length: uintAttr(tag, 'length', U64),
          time: uintAttr(tag, 'time', U32),
        });
        break;
      }
      default:
        throw xmlError('unknown tag type');
    }
    if (tag.kind === 'open') stack.push(tag.name);
    else if (tag.name === 'device') endDevice();
    else if (tag.name === 'superblock') sbDone = true;
  }
  if (stack.length > 0 || sb === undefined) throw xmlError('Parse error: no element found');
}
