/**
 * The XML format of thin_dump / thin_restore 0.9.0 (spec section 10). Pure functions, no I/O.
 *
 * - `formatThinDumpXml` prints byte for byte what thin_dump 0.9.0 prints for the same metadata.
 * - `parseThinXml` accepts what thin_restore 0.9.0 accepts, with its error wording for the documented cases.
 */
import { ThinpoolError } from '../errors.js';

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

interface Tag {
  kind: 'open' | 'close' | 'empty';
  name: string;
  attrs: Map<string, string>;
  line: number;
  /** A mapping tag in thin_dump's exact form, read by the fast path: its attribute values in thin_dump's order. */
  values?: string[];
}

/** thin_dump's own mapping lines, recognised whole (anything else takes the general path). */
const SINGLE_RE = /<single_mapping origin_block="([0-9]{1,16})" data_block="([0-9]{1,16})" time="([0-9]{1,10})"\/>/y;
const RANGE_RE = /<range_mapping origin_begin="([0-9]{1,16})" data_begin="([0-9]{1,16})" length="([0-9]{1,16})" time="([0-9]{1,10})"\/>/y;
const NO_ATTRS = new Map<string, string>();

function xmlError(msg: string, line?: number): ThinpoolError {
  return new ThinpoolError('EXML', line === undefined ? msg : `${msg} (line ${line})`);
}

const NAME_START = /[A-Za-z_:]/;
const NAME_CHAR = /[A-Za-z0-9_:.-]/;

function decodeEntities(raw: string, line: number): string {
  if (!raw.includes('&')) return raw;
  return raw.replace(/&([^;]*);?/g, (whole, ent: string) => {
    if (!whole.endsWith(';')) throw xmlError('Parse error: unterminated entity reference', line);
    switch (ent) {
      case 'amp':
        return '&';
      case 'lt':
        return '<';
      case 'gt':
        return '>';
      case 'quot':
        return '"';
      case 'apos':
        return "'";
    }
    let code: number | undefined;
    if (/^#[0-9]+$/.test(ent)) code = Number.parseInt(ent.slice(1), 10);
    else if (/^#x[0-9A-Fa-f]+$/.test(ent)) code = Number.parseInt(ent.slice(2), 16);
    if (code === undefined || code > 0x10ffff) throw xmlError(`Parse error: undefined entity &${ent};`, line);
    return String.fromCodePoint(code);
  });
}

/** Longest construct (tag, comment) read across pieces of streamed input before an error is final. */
const MAX_CONSTRUCT = 4 << 20;

/**
 * A tokenizer for the flat XML of thin_dump: tags with attributes; text, comments, PIs and doctype skipped. The
 * input is `first` and then whatever `more` returns until it returns null (pieces of any size).
 */
function* tokenize(first: string, more?: () => string | null): Generator<Tag> {
  let text = first;
  let i = 0;
  let line = 1;
  let n = text.length;
  let eof = more === undefined;
  /** Position of the next '&' at or after i (-1: not searched yet). */
  let ampAt = -1;
  const advanceTo = (j: number): void => {
    for (let k = i; k < j; k++) if (text.charCodeAt(k) === 10) line++;
    i = j;
  };
  /** Keep text from i on, append the next piece; false at the end of the input. */
  const pull = (): boolean => {
    const next = eof ? null : more!();
    if (next === null) {
      eof = true;
      return false;
    }
    text = text.slice(i) + next;
    n = text.length;
    i = 0;
    ampAt = -1;
    return true;
  };
  for (;;) {
    if (i >= n && !pull()) break;
    const lt = text.indexOf('<', i);
    if (lt < 0) {
      if (pull()) continue;
      advanceTo(n);
      break;
    }
    if (ampAt < i) ampAt = text.indexOf('&', i) >>> 0; // no '&' left: 2^32 - 1
    if (ampAt < lt) decodeEntities(text.slice(i, lt), line); // validate only
    advanceTo(lt);
    const c1 = text.charCodeAt(i + 1);
    const re = c1 === 115 ? SINGLE_RE : c1 === 114 ? RANGE_RE : undefined; // 's', 'r'
    if (re !== undefined) {
      re.lastIndex = i;
      const m = re.exec(text);
      if (m !== null) {
        const t: Tag = {
          kind: 'empty',
          name: re === SINGLE_RE ? 'single_mapping' : 'range_mapping',
          attrs: NO_ATTRS,
          line,
          values: m.slice(1),
        };
        i = re.lastIndex; // no newline inside
        yield t;
        continue;
      }
    }
    let tag: Tag | null;
    try {
      tag = construct();
    } catch (e) {
      // A construct cut at the end of a piece: read on and parse it again (no construct is megabytes long).
      if (!eof && n - i < MAX_CONSTRUCT && pull()) continue;
      throw e;
    }
    if (tag !== null) yield tag;
  }

  /** The construct at i: a tag, or null for a comment, PI, CDATA or declaration (skipped). */
  function construct(): Tag | null {
    if (text.startsWith('<!--', i)) {
      const end = text.indexOf('-->', i + 4);
      if (end < 0) throw xmlError('Parse error: unterminated comment', line);
      advanceTo(end + 3);
      return null;
    }
    if (text.startsWith('<?', i)) {
      const end = text.indexOf('?>', i + 2);
      if (end < 0) throw xmlError('Parse error: unterminated processing instruction', line);
      advanceTo(end + 2);
      return null;
    }
    if (text.startsWith('<![CDATA[', i)) {
      const end = text.indexOf(']]>', i + 9);
      if (end < 0) throw xmlError('Parse error: unterminated CDATA section', line);
      advanceTo(end + 3);
      return null;
    }
    if (text.startsWith('<!', i)) {
      const end = text.indexOf('>', i + 2);
      if (end < 0) throw xmlError('Parse error: unterminated declaration', line);
      advanceTo(end + 1);
      return null;
    }
    const tagLine = line;
    let j = i + 1;
    let kind: Tag['kind'] = 'open';
    if (text[j] === '/') {
      kind = 'close';
      j++;
    }
    if (j >= n || !NAME_START.test(text[j]!)) throw xmlError('Parse error: not well-formed (invalid token)', tagLine);
    const nameStart = j;
    while (j < n && NAME_CHAR.test(text[j]!)) j++;
    const name = text.slice(nameStart, j);
    const attrs = new Map<string, string>();
    for (;;) {
      const wsStart = j;
      while (j < n && /\s/.test(text[j]!)) j++;
      if (j >= n) throw xmlError('Parse error: unclosed token', tagLine);
      const c = text[j]!;
      if (c === '>') {
        j++;
        break;
      }
      if (c === '/' && kind === 'open') {
        if (text[j + 1] !== '>') throw xmlError('Parse error: not well-formed (invalid token)', tagLine);
        kind = 'empty';
        j += 2;
        break;
      }
      if (kind === 'close' || j === wsStart || !NAME_START.test(c)) {
        throw xmlError('Parse error: not well-formed (invalid token)', tagLine);
      }
      const aStart = j;
      while (j < n && NAME_CHAR.test(text[j]!)) j++;
      const aName = text.slice(aStart, j);
      while (j < n && /\s/.test(text[j]!)) j++;
      if (text[j] !== '=') throw xmlError('Parse error: not well-formed (invalid token)', tagLine);
      j++;
      while (j < n && /\s/.test(text[j]!)) j++;
      const q = text[j];
      if (q !== '"' && q !== "'") throw xmlError('Parse error: not well-formed (invalid token)', tagLine);
      const vEnd = text.indexOf(q, j + 1);
      if (vEnd < 0) throw xmlError('Parse error: unclosed token', tagLine);
      const raw = text.slice(j + 1, vEnd);
      if (raw.includes('<')) throw xmlError('Parse error: not well-formed (invalid token)', tagLine);
      if (attrs.has(aName)) throw xmlError('Parse error: duplicate attribute', tagLine);
      attrs.set(aName, decodeEntities(raw, tagLine));
      j = vEnd + 1;
    }
    advanceTo(j);
    return { kind, name, attrs, line: tagLine };
  }
}

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
