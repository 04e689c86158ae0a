/**
 * The tokenizer under thin-xml.ts: the flat XML of thin_dump read as a sequence of tags, from one string or from
 * pieces of any size (split anywhere, even inside a tag). Pure functions, no I/O. Layer: thin metadata.
 *
 * Contract:
 * - Yields open, close and empty tags with their attributes (entities decoded) and line numbers; text, comments,
 *   processing instructions, CDATA and declarations are skipped, but text is checked for bad entity references.
 * - thin_dump's own mapping lines (`<single_mapping .../>`, `<range_mapping .../>` with its attribute order)
 *   take a fast path: the tag carries its raw attribute values in `values` and an empty `attrs`.
 * - Malformed input throws `ThinpoolError('EXML')` worded as thin_restore 0.9.0 reports it ("Parse error: ...",
 *   with the line); a construct cut at the end of a piece is read on (up to 4 Mi characters) before it is final.
 * - It knows nothing of thin_dump's elements: which tags may appear where is thin-xml.ts's parser.
 */
import { ThinpoolError } from '../errors.js';

export interface Tag {
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

/** The parse error (code EXML), with the line of the input when known. */
export function xmlError(msg: string, line?: number): ThinpoolError {
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
export function* tokenize(first: string, more?: () => string | null): Generator<Tag> {
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
