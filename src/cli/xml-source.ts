/**
 * Reading thin_dump XML for `thinpool restore` without holding it: the file in pieces of a mebibyte (UTF-8
 * decoded across piece boundaries), a byte-level count of its mappings (to size the metadata before the
 * restore), and standard input spooled to a file first (so it can be counted and then read).
 *
 * Contract: memory is one piece at a time whatever the file's size; `countXmlMappings` counts what
 * thin_restore will insert for well-formed input (single_mapping tags plus the lengths of range_mapping tags);
 * for malformed input the count is only a size hint, and the parse reports the error.
 */
import { closeSync, createWriteStream, openSync, readSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StringDecoder } from 'node:string_decoder';

// 64 KiB: a piece stays a regular young-generation string (a 1 MiB one went to large-object space, freed only
// by a full GC: 40+ MiB of dead pieces at the peak of a 5 M-mapping restore).
const PIECE = 64 << 10;

export interface XmlPieces {
  first: string;
  more: () => string | null;
  close: () => void;
}

/** The file at path as text pieces: `first`, then `more()` until it returns null. */
export function xmlPieces(path: string): XmlPieces {
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(PIECE);
  const dec = new StringDecoder('utf8');
  let done = false;
  const more = (): string | null => {
    if (done) return null;
    const n = readSync(fd, buf, 0, PIECE, null);
    if (n === 0) {
      done = true;
      const rest = dec.end();
      return rest === '' ? null : rest;
    }
    return dec.write(buf.subarray(0, n));
  };
  return { first: more() ?? '', more, close: () => closeSync(fd) };
}

const SINGLE = Buffer.from('<single_mapping');
const RANGE = Buffer.from('<range_mapping');
const LENGTH = Buffer.from('length=');

/** Mappings and devices the XML file describes, counted on its bytes (see the module comment). */
export function countXmlMappings(path: string): { mappings: number; devices: number } {
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(PIECE + 64 * 1024);
  let carry = 0;
  let mappings = 0;
  let devices = 0;
  try {
    for (;;) {
      const n = readSync(fd, buf, carry, PIECE, null);
      const end = carry + n;
      // Tags are counted up to the last '<' of the piece; from there on they are carried to the next one.
      let stop = n === 0 ? end : buf.lastIndexOf(60, end - 1);
      if (stop < 0 || end - stop > 64 * 1024) stop = end;
      const view = buf.subarray(0, stop);
      for (let p = view.indexOf(SINGLE); p >= 0; p = view.indexOf(SINGLE, p + SINGLE.length)) mappings++;
      for (let p = view.indexOf(RANGE); p >= 0; p = view.indexOf(RANGE, p + RANGE.length)) {
        const gt = view.indexOf(62, p);
        const l = view.indexOf(LENGTH, p);
        if (l < 0 || (gt >= 0 && l > gt)) continue;
        let k = l + LENGTH.length + 1;
        let v = 0;
        while (k < view.length && view[k] >= 48 && view[k] <= 57) v = v * 10 + (view[k++] - 48);
        mappings += v;
      }
      for (let p = view.indexOf('<device'); p >= 0; p = view.indexOf('<device', p + 7)) devices++;
      if (n === 0) break;
      buf.copy(buf, 0, stop, end);
      carry = end - stop;
    }
  } finally {
    closeSync(fd);
  }
  return { mappings, devices };
}

/** Copy a stream (standard input) into a file. */
export async function spool(stream: Readable, path: string): Promise<void> {
  await pipeline(stream, createWriteStream(path));
}
