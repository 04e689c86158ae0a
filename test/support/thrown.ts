// What a call threw, for tests that assert on refusals. Each probe runs fn once, synchronously, and reports how it
// ended. The outcome of a call that returns is 'ok' (as a code, or { code: 'ok', message: '' }), except where said.
// A ThinpoolError is reported by its code, message and, for refusal*, the place it names (structure, mblock: each
// undefined when the error names none). Anything else thrown (an untyped error) is, by the probe's name:
//   codeOf, typedError, refusal, caught: rethrown as it was, so the test fails with the real error;
//   codeOrUntyped: reported as the code `untyped: <its text>`;
//   thrownError, refusalOrUntyped: reported as { code: 'untyped', message: <its text> };
//   thrown: returned as it is, typed or not, with undefined when fn returns.
// caught gives the ThinpoolError itself and throws when fn returns (it is for calls that must fail).
import { isThinpoolError, type ThinpoolError } from '../../src/errors.js';

/** A refusal as a plain object: what toEqual and toMatchObject compare. */
export interface Refusal {
  code: string;
  message: string;
  structure?: string;
  mblock?: number;
}

/** The ThinpoolError fn threw, or 'ok' when it returned. */
type Typed = ThinpoolError | 'ok';

const rethrow = (e: unknown): never => {
  throw e;
};

/** shape(how fn ended) when it returned or threw a ThinpoolError; untyped(what it threw) when it threw anything else. */
function settle<R>(fn: () => unknown, shape: (t: Typed) => R, untyped: (e: unknown) => R = rethrow): R {
  try {
    fn();
  } catch (e) {
    return isThinpoolError(e) ? shape(e) : untyped(e);
  }
  return shape('ok');
}

const code = (t: Typed): string => (t === 'ok' ? t : t.code);
const codeAndMessage = (t: Typed): { code: string; message: string } =>
  t === 'ok' ? { code: 'ok', message: '' } : { code: t.code, message: t.message };
const place = (t: Typed): Refusal =>
  t === 'ok' ? { code: 'ok', message: '' } : { code: t.code, message: t.message, structure: t.structure, mblock: t.mblock };
const untypedMessage = (e: unknown) => ({ code: 'untyped', message: String(e) });

/** Whatever fn threw, typed or not; undefined when it returned. */
export function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

/** The ThinpoolError fn threw; anything else is rethrown, and an Error('no error') is thrown when fn returns. */
export function caught(fn: () => unknown): ThinpoolError {
  return settle(fn, (t) => {
    if (t === 'ok') throw new Error('no error');
    return t;
  });
}

/** The code of the ThinpoolError fn threw, 'ok' when it returned; anything else is rethrown. */
export function codeOf(fn: () => unknown): string {
  return settle(fn, code);
}

/** The code of the ThinpoolError fn threw, 'ok' when it returned, `untyped: <text>` for anything else. */
export function codeOrUntyped(fn: () => unknown): string {
  return settle(fn, code, (e) => `untyped: ${String(e)}`);
}

/** The code and message of the ThinpoolError fn threw ('ok' when it returned); anything else is rethrown. */
export function typedError(fn: () => unknown): { code: string; message: string } {
  return settle(fn, codeAndMessage);
}

/** The code and message of what fn threw: a ThinpoolError's, `untyped` and its text for anything else, 'ok' when it returned. */
export function thrownError(fn: () => unknown): { code: string; message: string } {
  return settle(fn, codeAndMessage, untypedMessage);
}

/** The code, message and place of the ThinpoolError fn threw ('ok' when it returned); anything else is rethrown. */
export function refusal(fn: () => unknown): Refusal {
  return settle(fn, place);
}

/** As refusal, but anything other than a ThinpoolError is reported as { code: 'untyped', message: its text }. */
export function refusalOrUntyped(fn: () => unknown): Refusal {
  return settle(fn, place, untypedMessage);
}
