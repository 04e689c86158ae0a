/**
 * A `BlockDevice` over a regular (sparse) file.
 *
 * Contract (beyond `BlockDevice`):
 * - `flush` is fdatasync. `close` does not flush.
 * - A device opened with `readOnly` rejects `write` and `resize` with EROFS and never discards.
 * - `discard` punches a hole (the native helper's fallocate(2) when built, else util-linux
 *   `fallocate --punch-hole --keep-size`) for ranges of at least
 *   `PUNCH_MIN_BYTES`; smaller ranges, a missing `fallocate` or a failed punch return false (range unchanged).
 *   After one failure the device stops trying; a missing binary disables punching process-wide.
 * - fs errors surface as `ThinpoolError` EIO (ENOENT / EEXIST when opening or creating).
 * - Reads and writes go through the native helper's pread/pwrite when it is built (one system call per request,
 *   no per-call argument conversion: about 1 µs less than fs.readSync per 4 KiB page-cache read on the test
 *   machine), else through node:fs; both loop over short transfers, writes in pieces of at most WRITE_PIECE.
 * - `holePunchPath()` names the path `discard` takes in this process (what `thinpool status` reports).
 * - `copyWithin` (copy-on-write of data blocks) shares the extents with FICLONERANGE (reflink: XFS, btrfs), else
 *   copies inside the kernel with copy_file_range(2), else reads and writes through a buffer; a path that fails
 *   once on a device (the file system lacks it) is not tried again on that device. `copies` counts the paths
 *   taken. Durability is a write's: the data flush (fdatasync) persists the shared or copied extents.
 * - `sendTo` sends a range of the file to another descriptor inside the kernel (sendfile(2)): no copy through
 *   user space. It returns null, having sent nothing, where the helper or sendfile cannot serve that descriptor.
 * - `writeBehind(bytes)` (bulk writers: import, write from a stream): once writes since the last start add up to
 *   `bytes`, the write-back of the span they covered is started (sync_file_range, not waited for), so the disk
 *   works while the writer goes on and the commit's fdatasync finds little left. A hint only: durability is
 *   still the flush's; 0 (the default) turns it off; without the native helper it does nothing. Every
 *   FLUSH_BEHIND_STARTS starts, an fdatasync also runs on libuv's thread pool (flush-behind; one at a time, never
 *   waited for): on a virtual disk the host's cache flush at the commit otherwise waits for everything written
 *   since the start. An error it meets is kept and thrown by every later `flush` (the kernel reports a
 *   write-back error once per open file: the commit's own fdatasync would not see it). `close` while one runs
 *   closes the descriptor when it ends, so its number is not reused under it.
 * - util-linux `fallocate` is spawned only where the helper is missing: node:child_process is loaded then, not
 *   at start-up (it pulls in net and dgram).
 */
import { nativeHelpers } from './native.js';
import { WRITE_PIECE, writeFull } from './sparse.js';
import { getSystemErrorName } from 'node:util';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import { ThinpoolError, type ErrorCode } from '../errors.js';
import type { BlockDevice, CopyPath } from './block-device.js';
import { checkRange, checkSize } from './memory-device.js';

/**
 * Write-back starts (writeBehind) per flush-behind: with the bulk writers' 8 MiB threshold, an fdatasync behind
 * every 32 MiB. What it bought is the A/B recorded in docs/cli.md (section bulk-ab: `write` from a pipe and
 * `import` of the bulk benches' 1 GiB image, builds before and after it).
 */
export const FLUSH_BEHIND_STARTS = 4;

/** Smallest range `FileDevice.discard` tries to punch. */
export const PUNCH_MIN_BYTES = 64 * 1024;

/** Largest sendfile(2) request (the kernel caps one call just below 2 GiB). */
const SEND_MAX = 1024 * 1024 * 1024;
const EINVAL = 22;
const ENOSYS = 38;
const EOPNOTSUPP = 95;

/** Set once `fallocate` is found missing: no device tries again. */
let fallocateMissing = false;

/** How `discard` releases host space in this process: the native helper, util-linux fallocate(1), or not at all. */
export type HolePunchPath = 'native' | 'fallocate' | 'none';

/**
 * node:child_process, loaded on the first punch that needs util-linux fallocate(1): it pulls in net and dgram,
 * a cost every start-up of the CLI would pay for a fallback it rarely takes.
 */
function spawnSync(): typeof import('node:child_process').spawnSync {
  return (createRequire(import.meta.url)('node:child_process') as typeof import('node:child_process')).spawnSync;
}

function onPath(name: string): boolean {
  if (fallocateMissing) return false;
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir === '') continue;
    try {
      fs.accessSync(`${dir}/${name}`, fs.constants.X_OK);
      return true;
    } catch {
      /* next */
    }
  }
  return false;
}

export function holePunchPath(): HolePunchPath {
  if (nativeHelpers() !== null) return 'native';
  return onPath('fallocate') ? 'fallocate' : 'none';
}

/** A native call's -errno as the error node:fs would have thrown (its `code` is the errno's name). */
function errnoError(negErrno: number, syscall: string): NodeJS.ErrnoException {
  const code = getSystemErrorName(negErrno);
  return Object.assign(new Error(`${code}: ${syscall} failed (errno ${-negErrno})`), { code, errno: negErrno, syscall });
}

function fsError(e: unknown, what: string, path: string): ThinpoolError {
  const errno = (e as NodeJS.ErrnoException | undefined)?.code;
  const code: ErrorCode = errno === 'ENOENT' ? 'ENOENT' : errno === 'EEXIST' ? 'EEXIST' : 'EIO';
  const msg = e instanceof Error ? e.message : String(e);
  return new ThinpoolError(code, `${what} ${path}: ${msg}`, { cause: e });
}

/** Bytes the host file system has allocated to `path` (st_blocks × 512). */
export function allocatedBytes(path: string): number {
  try {
    return fs.statSync(path).blocks * 512;
  } catch (e) {
    throw fsError(e, 'stat', path);
  }
}

export interface FileDeviceOptions {
  readOnly?: boolean;
}

export class FileDevice implements BlockDevice {
  readonly path: string;
  readonly readOnly: boolean;
  #fd: number;
  #size: number;
  #closed = false;
  #punchFailed = false;
  #cloneFailed = false;
  #copyFailed = false;
  #copyBuf: Uint8Array | null = null;
  /** The native helper's pread/pwrite (one system call, no per-call argument conversion), or null: node:fs. */
  readonly #pread = nativeHelpers()?.pread ?? null;
  readonly #pwrite = nativeHelpers()?.pwrite ?? null;
  /** The native helper's sync_file_range(SYNC_FILE_RANGE_WRITE), or null: writeBehind then does nothing. */
  readonly #startWriteBack = nativeHelpers()?.startWriteBack ?? null;
  /** writeBehind: the threshold (0: off), and the bytes and span written since the last start of write-back. */
  #behind = 0;
  #behindBytes = 0;
  #behindLo = Number.MAX_SAFE_INTEGER;
  #behindHi = 0;
  /** How many times writeBehind started a write-back on this device. */
  writeBacksStarted = 0;
  /** Flush-behind: whether one runs, the first error one met (thrown by every later flush), how many started. */
  #flushBehindRunning = false;
  #flushBehindError: ThinpoolError | null = null;
  flushesBehindStarted = 0;
  /** How many `copyWithin` calls took each path on this device. */
  readonly copies: Record<CopyPath, number> = { clone: 0, copy: 0, 'read-write': 0 };

  private constructor(path: string, fd: number, sizeBytes: number, readOnly: boolean) {
    this.path = path;
    this.#fd = fd;
    this.#size = sizeBytes;
    this.readOnly = readOnly;
  }

  /** Opens an existing file; its current length is the device size. */
  static open(path: string, options: FileDeviceOptions = {}): FileDevice {
    const readOnly = options.readOnly ?? false;
    let fd: number;
    try {
      fd = fs.openSync(path, readOnly ? 'r' : 'r+');
    } catch (e) {
      throw fsError(e, 'open', path);
    }
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) throw new ThinpoolError('EINVAL', `not a regular file: ${path}`);
      return new FileDevice(path, fd, st.size, readOnly);
    } catch (e) {
      fs.closeSync(fd);
      throw e instanceof ThinpoolError ? e : fsError(e, 'stat', path);
    }
  }

  /** Creates a new sparse file of `sizeBytes`; throws EEXIST if `path` exists. */
  static create(path: string, sizeBytes: number): FileDevice {
    checkSize(sizeBytes);
    let fd: number;
    try {
      fd = fs.openSync(path, 'wx+');
    } catch (e) {
      throw fsError(e, 'create', path);
    }
    try {
      fs.ftruncateSync(fd, sizeBytes);
    } catch (e) {
      fs.closeSync(fd);
      throw fsError(e, 'ftruncate', path);
    }
    return new FileDevice(path, fd, sizeBytes, false);
  }

  get sizeBytes(): number {
    return this.#size;
  }

  read(buf: Uint8Array, offsetBytes: number): void {
    this.#checkOpen();
    if (!(offsetBytes >= 0 && Number.isSafeInteger(offsetBytes + buf.length))) checkRange(offsetBytes, buf.length);
    let done = 0;
    const pread = this.#pread;
    try {
      while (done < buf.length) {
        let n: number;
        if (pread !== null) {
          n = pread(this.#fd, done === 0 ? buf : buf.subarray(done), offsetBytes + done);
          if (n < 0) throw errnoError(n, 'read');
        } else n = fs.readSync(this.#fd, buf, done, buf.length - done, offsetBytes + done);
        if (n === 0) break; // EOF
        done += n;
      }
    } catch (e) {
      throw fsError(e, 'read', this.path);
    }
    if (done < buf.length) buf.fill(0, done);
  }

  write(buf: Uint8Array, offsetBytes: number): void {
    this.#checkWritable();
    checkRange(offsetBytes, buf.length);
    const pwrite = this.#pwrite;
    try {
      if (pwrite === null)
        writeFull(this.#fd, buf, offsetBytes); // in pieces of at most WRITE_PIECE (sparse.ts: measured faster)
      else {
        for (let done = 0; done < buf.length; ) {
          const end = Math.min(buf.length, done + WRITE_PIECE);
          const n = pwrite(this.#fd, done === 0 && end === buf.length ? buf : buf.subarray(done, end), offsetBytes + done);
          if (n < 0) throw errnoError(n, 'write');
          done += n;
        }
      }
    } catch (e) {
      throw fsError(e, 'write', this.path);
    }
    if (buf.length > 0) this.#size = Math.max(this.#size, offsetBytes + buf.length);
    if (this.#behind > 0) this.#wrote(offsetBytes, buf.length);
  }

  /** Start the write-back of what was written once `bytes` have been written since the last start (0: never). */
  writeBehind(bytes: number): number {
    if (!(Number.isSafeInteger(bytes) && bytes >= 0))
      throw new ThinpoolError('EINVAL', `write-behind threshold ${bytes}: not a byte count`);
    const before = this.#behind;
    this.#behind = this.#startWriteBack === null ? 0 : bytes;
    return before;
  }

  #wrote(offset: number, length: number): void {
    this.#behindBytes += length;
    this.#behindLo = Math.min(this.#behindLo, offset);
    this.#behindHi = Math.max(this.#behindHi, offset + length);
    if (this.#behindBytes < this.#behind) return;
    // A failure (EINVAL on a file system without it, ESPIPE) costs only the head start: the flush still syncs.
    this.#startWriteBack?.(this.#fd, this.#behindLo, this.#behindHi - this.#behindLo);
    this.writeBacksStarted++;
    this.#behindBytes = 0;
    this.#behindLo = Number.MAX_SAFE_INTEGER;
    this.#behindHi = 0;
    if (this.writeBacksStarted % FLUSH_BEHIND_STARTS === 0) this.#flushBehind();
  }

  /** Start an fdatasync on the thread pool unless one runs (see the contract: flush-behind). */
  #flushBehind(): void {
    if (this.#flushBehindRunning) return;
    this.#flushBehindRunning = true;
    this.flushesBehindStarted++;
    const fd = this.#fd;
    fs.fdatasync(fd, (e) => {
      this.#flushBehindRunning = false;
      if (e && this.#flushBehindError === null) this.#flushBehindError = fsError(e, 'fdatasync (flush-behind)', this.path);
      // Closed while this ran: close() left the descriptor to this callback (nothing can start one after close).
      if (this.#closed) {
        try {
          fs.closeSync(fd);
        } catch {
          /* the device was closed already: nothing to report to */
        }
      }
    });
  }

  flush(): void {
    this.#checkOpen();
    if (this.readOnly) return;
    try {
      fs.fdatasyncSync(this.#fd);
    } catch (e) {
      throw fsError(e, 'fdatasync', this.path);
    }
    if (this.#flushBehindError !== null) throw this.#flushBehindError;
  }

  resize(sizeBytes: number): void {
    this.#checkWritable();
    checkSize(sizeBytes);
    try {
      fs.ftruncateSync(this.#fd, sizeBytes);
    } catch (e) {
      throw fsError(e, 'ftruncate', this.path);
    }
    this.#size = sizeBytes;
  }

  discard(offsetBytes: number, lengthBytes: number): boolean {
    this.#checkOpen();
    checkRange(offsetBytes, lengthBytes);
    const length = Math.min(offsetBytes + lengthBytes, this.#size) - offsetBytes;
    if (length <= 0) return true; // nothing stored there: already reads as zeros
    if (this.readOnly || this.#punchFailed || length < PUNCH_MIN_BYTES) return false;
    const native = nativeHelpers();
    if (native) {
      const rc = native.punchHole(this.#fd, offsetBytes, length);
      if (rc === 0) return true;
      this.#punchFailed = true; // e.g. EOPNOTSUPP on this filesystem
      return false;
    }
    if (fallocateMissing) return false;
    const r = spawnSync()(
      'fallocate',
      ['--punch-hole', '--keep-size', '--offset', String(offsetBytes), '--length', String(length), this.path],
      { stdio: 'ignore' },
    );
    if (r.error) {
      if ((r.error as NodeJS.ErrnoException).code === 'ENOENT') fallocateMissing = true;
      else this.#punchFailed = true;
      return false;
    }
    if (r.status !== 0) {
      this.#punchFailed = true;
      return false;
    }
    return true;
  }

  copyWithin(srcBytes: number, dstBytes: number, lengthBytes: number): CopyPath {
    this.#checkWritable();
    checkRange(srcBytes, lengthBytes);
    checkRange(dstBytes, lengthBytes);
    if (srcBytes < dstBytes + lengthBytes && dstBytes < srcBytes + lengthBytes && lengthBytes > 0) {
      throw new ThinpoolError('EINVAL', `copyWithin: ranges overlap (${srcBytes} and ${dstBytes}, ${lengthBytes} bytes)`);
    }
    const path = this.#copy(srcBytes, dstBytes, lengthBytes);
    this.copies[path]++;
    if (lengthBytes > 0) this.#size = Math.max(this.#size, dstBytes + lengthBytes);
    return path;
  }

  #copy(src: number, dst: number, length: number): CopyPath {
    const native = nativeHelpers();
    if (native?.cloneRange && !this.#cloneFailed && src + length <= this.#size) {
      if (native.cloneRange(this.#fd, src, this.#fd, dst, length) === 0) return 'clone';
      this.#cloneFailed = true; // EOPNOTSUPP (ext4, tmpfs), EINVAL (not aligned to the file system's blocks)
    }
    let done = 0;
    if (native?.copyRange && !this.#copyFailed) {
      while (done < length) {
        const n = native.copyRange(this.#fd, src + done, this.#fd, dst + done, length - done);
        if (n < 0) this.#copyFailed = true; // ENOSYS, EXDEV, EOPNOTSUPP: the rest (and later copies) read + write
        if (n <= 0) break; // 0: past the end of the file (the rest reads as zeros: read + write writes them)
        done += n;
      }
      if (done === length) return 'copy';
    }
    const buf = (this.#copyBuf ??= new Uint8Array(1024 * 1024));
    while (done < length) {
      const part = buf.subarray(0, Math.min(buf.length, length - done));
      this.read(part, src + done);
      this.write(part, dst + done);
      done += part.length;
    }
    return 'read-write';
  }

  /**
   * Send bytes [offsetBytes, offsetBytes + lengthBytes) of the file to `outFd` at its current position, inside
   * the kernel. Returns the bytes sent: fewer than asked only when the file ends first (the rest reads as
   * zeros: the caller writes them), or null when nothing could be sent this way (no helper, or a descriptor
   * sendfile does not serve: read instead). A failure after the first byte, or one of the output (EPIPE,
   * ENOSPC), throws EIO with the errno code as its cause.
   */
  sendTo(outFd: number, offsetBytes: number, lengthBytes: number): number | null {
    this.#checkOpen();
    checkRange(offsetBytes, lengthBytes);
    const send = nativeHelpers()?.sendFile;
    if (send === undefined) return null;
    let done = 0;
    while (done < lengthBytes) {
      const n = send(outFd, this.#fd, offsetBytes + done, Math.min(lengthBytes - done, SEND_MAX));
      if (n === 0) break; // the end of the file
      if (n < 0) {
        if (done === 0 && (n === -EINVAL || n === -ENOSYS || n === -EOPNOTSUPP)) return null;
        const cause = errnoError(n, 'sendfile');
        throw new ThinpoolError('EIO', `sendfile from ${this.path}: ${cause.code}`, { cause });
      }
      done += n;
    }
    return done;
  }

  close(): void {
    this.#checkOpen();
    this.#closed = true;
    if (this.#flushBehindRunning) return; // the flush-behind's callback closes the descriptor
    try {
      fs.closeSync(this.#fd);
    } catch (e) {
      throw fsError(e, 'close', this.path);
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new ThinpoolError('ECLOSED', `file device is closed: ${this.path}`);
  }

  #checkWritable(): void {
    this.#checkOpen();
    if (this.readOnly) throw new ThinpoolError('EROFS', `file device is read-only: ${this.path}`);
  }
}
