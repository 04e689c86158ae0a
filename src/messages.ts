/**
 * Words for users, shared by the CLI and by the layers that talk to users themselves (image commands, the NBD
 * serve command): quoting a user-given name in a message, and turning engine errors (ThinpoolError with a stable
 * code) and system errors into one line that says what is wrong and what to do, plus the exit status.
 *
 * Contract: imports nothing, not even src/errors.ts (the CLI loads it on every start): engine errors are
 * recognised by their `name` and `code`. Exit status: 2 for a usage error (EINVAL), 1 for everything else.
 */

/** Quote a user-given name for messages: plain when printable, JSON-escaped when it holds control characters. */
export function q(name: string): string {
  // eslint-disable-next-line no-control-regex
  return /[\x00-\x1f\x7f"\s]/.test(name) || name === '' ? JSON.stringify(name).replace(/\x7f/g, '\\u007f') : name;
}

export interface ErrorContext {
  /** The pool directory as the user typed it. */
  pool?: string;
  /** Whether the command only reads the pool (the remedy for a permission error differs). */
  mode?: 'read' | 'write';
}

const DAMAGE = new Set(['EBADCSUM', 'EBADBLOCKNR', 'EBADNODE', 'EBADSUPER', 'ECYCLE', 'ECORRUPT']);
const FS_DENIED = new Set(['EACCES', 'EPERM', 'EROFS']);

interface ErrLike {
  name?: string;
  code?: string;
  message?: string;
  cause?: unknown;
}

function causeCode(e: ErrLike): string | undefined {
  let c: unknown = e.cause;
  for (let i = 0; i < 4 && c !== undefined && c !== null; i++) {
    const code = (c as ErrLike).code;
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code) && !code.startsWith('EBAD')) return code;
    c = (c as ErrLike).cause;
  }
  return undefined;
}

function isEngineError(e: unknown): e is ErrLike & { code: string; message: string } {
  return typeof e === 'object' && e !== null && (e as ErrLike).name === 'ThinpoolError' && typeof (e as ErrLike).code === 'string';
}

export function explainError(e: unknown, ctx: ErrorContext = {}): { message: string; exitCode: number } {
  const pool = ctx.pool !== undefined ? q(ctx.pool) : 'POOL';
  if (isEngineError(e)) {
    const msg = e.message;
    switch (e.code) {
      case 'EINVAL':
        return { message: msg, exitCode: 2 };
      case 'ENOENT':
        if (/not a thinpool pool/.test(msg))
          return { message: `${msg}: check the path, or create a pool with "thinpool init ${pool} --size SIZE"`, exitCode: 1 };
        if (/^no volume/.test(msg)) return { message: `${msg} in pool ${pool}: list the volumes with "thinpool ls ${pool}"`, exitCode: 1 };
        if (/metadata snap/.test(msg)) return { message: `${msg} in ${pool}: dump without --metadata-snap`, exitCode: 1 };
        return { message: msg, exitCode: 1 };
      case 'EEXIST':
        if (/already holds a pool/.test(msg)) return { message: `${msg}: choose another directory`, exitCode: 1 };
        if (/already holds a thin pool/.test(msg))
          return { message: `${msg}: choose another NAME (thinpool ls-pools lists them)`, exitCode: 1 };
        return { message: `${msg}: choose another name`, exitCode: 1 };
      case 'EBUSY':
        if (/belongs to|has children|held|lock break/.test(msg)) return { message: msg, exitCode: 1 }; // says what to do itself
        return { message: `${msg}: wait for it to finish (or stop it) and retry`, exitCode: 1 };
      case 'EROFS':
        if (/needs_check/.test(msg))
          return { message: msg.replace(/ \(run `thinpool check`\)/, '') + `: run "thinpool check ${pool}"`, exitCode: 1 };
        return { message: msg, exitCode: 1 };
      case 'ENOSPC_DATA':
        return {
          message: `${msg.replace(/; delete volumes or extend the pool$/, '')}: delete volumes ("thinpool delete ${pool} NAME") to free space, or grow the pool ("thinpool extend ${pool} --size SIZE")`,
          exitCode: 1,
        };
      case 'ENOSPC_METADATA':
        if (!/out of metadata space/.test(msg)) return { message: msg, exitCode: 1 };
        return {
          message: `${msg.replace(/: delete volumes or grow the metadata device$/, '')}: delete volumes to free metadata, or grow it ("thinpool extend ${pool} --metadata-size SIZE")`,
          exitCode: 1,
        };
      case 'EXML':
        return { message: `not valid thin_dump XML: ${msg}`, exitCode: 1 };
      case 'EIO': {
        const cc = causeCode(e);
        if (cc !== undefined && FS_DENIED.has(cc)) {
          if (ctx.mode === 'read')
            return { message: `cannot read pool ${pool} (${cc}): run as the pool's owner or fix its permissions`, exitCode: 1 };
          return {
            message: `${pool} is not writable (${cc}): this command changes the pool; fix the permissions or use a writable copy`,
            exitCode: 1,
          };
        }
        if (cc === 'ENOSPC' || cc === 'EDQUOT') {
          return {
            message: `the file system holding ${pool} is full (${cc}): free space on it (see "df ${pool}") and retry; the pool keeps its last commit`,
            exitCode: 1,
          };
        }
        if (cc === 'ENOTDIR') return { message: `a part of the path ${pool} is a file, not a directory: check the path`, exitCode: 1 };
        return { message: `I/O error: ${msg}`, exitCode: 1 };
      }
      case 'EFAILED':
        return { message: `${msg}: run "thinpool check ${pool}"`, exitCode: 1 };
      default:
        if (DAMAGE.has(e.code)) {
          return {
            message: `metadata of ${pool} is damaged: ${msg}: run "thinpool check ${pool}" for a full report; restore from a dump with "thinpool restore"`,
            exitCode: 1,
          };
        }
        return { message: msg, exitCode: 1 };
    }
  }
  const sys = e as NodeJS.ErrnoException;
  if (sys && typeof sys.code === 'string' && typeof sys.message === 'string') {
    const path = sys.path !== undefined ? q(sys.path) : '';
    switch (sys.code) {
      case 'ENOENT':
        return { message: `${path || 'file'}: no such file or directory`, exitCode: 1 };
      case 'EACCES':
      case 'EPERM':
        return { message: `${path || 'file'}: permission denied`, exitCode: 1 };
      case 'EROFS':
        return { message: `${path || 'file'}: read-only file system`, exitCode: 1 };
      case 'EISDIR':
        return { message: `${path || 'file'}: is a directory, expected a file`, exitCode: 1 };
      case 'ENOTDIR':
        return { message: `${path || 'file'}: a part of this path is a file, not a directory: check the path`, exitCode: 1 };
      case 'EEXIST':
        return { message: `${path || 'file'} already exists and is not a directory: choose another path`, exitCode: 1 };
      case 'ENOSPC':
      case 'EDQUOT':
        return { message: `${path || 'file'}: the host file system is full (${sys.code}): free space on it and retry`, exitCode: 1 };
      case 'EPIPE':
        return { message: 'standard output was closed before everything was written (the reader stopped early)', exitCode: 1 };
      default:
        return { message: sys.message, exitCode: 1 };
    }
  }
  return { message: e instanceof Error ? e.message : String(e), exitCode: 1 };
}
