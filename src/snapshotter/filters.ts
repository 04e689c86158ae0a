/**
 * containerd's filter language (package `filters`, v1.6), as `List` requests carry it.
 *
 *   filters  := one filter per string; a snapshot matches when ANY string matches
 *   filter   := selector ("," selector)*         -- ALL selectors must match
 *   selector := fieldpath [op value]             -- without op: the field is present
 *   fieldpath:= field ("." field)*               -- field: [A-Za-z0-9_]+ or a "quoted" string
 *   op       := "==" | "!=" | "~="               -- equal, not equal, regular expression
 *   value    := quoted | [^\s,]+                 -- for ~= also /quoted/ or |quoted|
 *
 * Matching follows containerd: `==` needs the field present; `!=` compares the value ("" when absent), so
 * `parent!=""` selects snapshots with a parent; `~=` matches the value ("" when absent). A snapshot's fields are
 * `kind` (active, view, committed), `name`, `parent` (present, possibly ""), and `labels.KEY` (KEY may contain
 * dots: the rest of the path is joined with "."). Parse errors are EINVAL (gRPC InvalidArgument).
 */
import { ThinpoolError } from '../errors.js';

/** What a filter looks at. */
export interface Filterable {
  name: string;
  kind: 'active' | 'view' | 'committed';
  parent: string;
  labels: Record<string, string>;
}

type Op = 'present' | '==' | '!=' | '~=';
interface Selector {
  path: string[];
  op: Op;
  value: string;
  re?: RegExp;
}

export type Predicate = (s: Filterable) => boolean;

function bad(input: string, pos: number, msg: string): ThinpoolError {
  return new ThinpoolError('EINVAL', `bad filter ${JSON.stringify(input)} at ${pos}: ${msg}`);
}

const FIELD = /[A-Za-z0-9_]/;

/** Go string-literal unescaping of the body of a quoted token (between its quote characters). */
function unescape(body: string, quote: string, input: string, pos: number): string {
  let out = '';
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (c !== '\\') {
      out += c;
      continue;
    }
    const e = body[++i];
    const simple: Record<string, string> = { a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\' };
    if (e === undefined) throw bad(input, pos, 'quoted literal not terminated');
    if (e in simple) out += simple[e];
    else if (e === quote) out += quote;
    else if (/[0-7]/.test(e)) {
      const digits = body.slice(i, i + 3);
      if (!/^[0-7]{3}$/.test(digits)) throw bad(input, pos, 'illegal numeric escape sequence');
      out += String.fromCodePoint(parseInt(digits, 8));
      i += 2;
    } else if (e === 'x' || e === 'u' || e === 'U') {
      const n = e === 'x' ? 2 : e === 'u' ? 4 : 8;
      const digits = body.slice(i + 1, i + 1 + n);
      if (!new RegExp(`^[0-9a-fA-F]{${n}}$`).test(digits)) throw bad(input, pos, 'illegal numeric escape sequence');
      out += String.fromCodePoint(parseInt(digits, 16));
      i += n;
    } else throw bad(input, pos, 'illegal escape sequence');
  }
  return out;
}

class Scanner {
  pos = 0;
  constructor(readonly input: string) {}

  skipSpace(): void {
    while (this.pos < this.input.length && /\s/.test(this.input[this.pos])) this.pos++;
  }

  peek(): string {
    this.skipSpace();
    return this.input[this.pos] ?? '';
  }

  /** A quoted token starting at pos (quote is " or, when alt, / or |): its unescaped body. */
  quoted(alt: boolean): string {
    const start = this.pos;
    const q = this.input[this.pos];
    if (q !== '"' && !(alt && (q === '/' || q === '|'))) throw bad(this.input, start, 'invalid quote encountered');
    let i = this.pos + 1;
    for (; i < this.input.length && this.input[i] !== q; i++) {
      if (this.input[i] === '\n') break;
      if (this.input[i] === '\\') i++;
    }
    if (i >= this.input.length || this.input[i] !== q) throw bad(this.input, start, 'quoted literal not terminated');
    this.pos = i + 1;
    return unescape(this.input.slice(start + 1, i), q, this.input, start);
  }

  field(): string {
    const c = this.peek();
    if (c === '"' || c === '/' || c === '|') return this.quoted(false);
    const start = this.pos;
    while (this.pos < this.input.length && FIELD.test(this.input[this.pos])) this.pos++;
    if (this.pos === start) throw bad(this.input, start, 'expected field or quoted');
    return this.input.slice(start, this.pos);
  }

  operator(): Op {
    this.skipSpace();
    const start = this.pos;
    while (this.pos < this.input.length && '=!~'.includes(this.input[this.pos])) this.pos++;
    const op = this.input.slice(start, this.pos);
    if (op === '==' || op === '!=' || op === '~=') return op;
    throw bad(this.input, start, op === '' ? 'expected an operator ("=="|"!="|"~=")' : `unsupported operator ${JSON.stringify(op)}`);
  }

  value(alt: boolean): string {
    const c = this.peek();
    if (c === '') throw bad(this.input, this.pos, 'unexpected end: expected value or quoted');
    if (c === '"' || c === '/' || c === '|') return this.quoted(alt);
    const start = this.pos;
    while (this.pos < this.input.length && this.input[this.pos] !== ',' && !/\s/.test(this.input[this.pos])) this.pos++;
    if (this.pos === start) throw bad(this.input, start, 'expected value or quoted');
    return this.input.slice(start, this.pos);
  }
}

function parseOne(input: string): Selector[] {
  const s = new Scanner(input);
  const out: Selector[] = [];
  for (;;) {
    const path = [s.field()];
    while (s.peek() === '.') {
      s.pos++;
      path.push(s.field());
    }
    const next = s.peek();
    let sel: Selector;
    if (next === ',' || next === '') sel = { path, op: 'present', value: '' };
    else {
      const op = s.operator();
      const value = s.value(op === '~=');
      sel = { path, op, value };
      if (op === '~=') {
        try {
          sel.re = new RegExp(value);
        } catch (e) {
          throw bad(input, s.pos, `bad regular expression: ${(e as Error).message}`);
        }
      }
    }
    out.push(sel);
    const after = s.peek();
    if (after === '') return out;
    if (after !== ',') throw bad(input, s.pos, `unexpected input: ${after}`);
    s.pos++;
  }
}

function field(s: Filterable, path: string[]): [string, boolean] {
  switch (path[0]) {
    case 'kind':
      return [s.kind, true];
    case 'name':
      return [s.name, true];
    case 'parent':
      return [s.parent, true];
    case 'labels': {
      const key = path.slice(1).join('.');
      return Object.hasOwn(s.labels, key) ? [s.labels[key], true] : ['', false];
    }
    default:
      return ['', false];
  }
}

function matches(sel: Selector, s: Filterable): boolean {
  const [v, present] = field(s, sel.path);
  switch (sel.op) {
    case 'present':
      return present;
    case '==':
      return present && v === sel.value;
    case '!=':
      return v !== sel.value;
    case '~=':
      return sel.re!.test(v);
  }
}

/** Compile List's filters: no filters, or any empty one (containerd's "always"), match everything. */
export function compileFilters(filters: readonly string[]): Predicate {
  const alts = filters.map((f) => (f === '' ? null : parseOne(f)));
  if (alts.length === 0 || alts.includes(null)) return () => true;
  return (s) => alts.some((all) => all!.every((sel) => matches(sel, s)));
}
