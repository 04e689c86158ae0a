/**
 * The disk libext2fs sees inside the worker thread (fs-thread.ts): every block read, write, discard and flush
 * becomes an `io` request to the thread that owns the pool. It has the methods libext2fs's mount calls
 * (read, write, discard, flush); a read-only disk drops writes silently, as file-disk's disks do.
 *
 * libext2fs does every I/O as one 4 KiB block (about four per data block it writes: the zeroed new block, the
 * inode table block read and written, the data), so this disk caches 256 KiB read windows (at most 128, least
 * recently used dropped) and keeps written pages (write-back) until 16 MiB are dirty, then posts them as one
 * `write` request (runs of consecutive pages laid end to end) without waiting for its answer; libext2fs goes
 * on while the owning thread writes them, and at most one such request is in flight when the next is posted.
 * The owning thread gives the request's buffer back with its answer, for the next one (no fresh memory).
 * A flush, a discard and `writeBack()` (the unmount) post what is dirty and wait for every write in flight.
 *
 * Invariants: a read sees every write made before it (dirty pages are laid over fetched windows, writes update
 * cached windows, and the owning thread serves requests in the order they were posted). Once a posted write
 * failed, every later read, write, flush and discard fails with its error.
 */
import type { IoReply, IoReq } from './fs-protocol.js';

const PAGE = 4096;
const WIN = 256 * 1024;
const MAXWIN = 128;
const MAXDIRTY = 16 * 1024 * 1024;

/** Sends one I/O request to the owning thread and resolves with its reply (rejects on its error). */
export type IoChannel = (msg: Omit<IoReq, 't' | 'id'>, transfer?: ArrayBuffer[]) => Promise<IoReply>;

/** Buffers a released disk leaves for the next disk of this thread (a thread uses its disks one at a time). */
const kept: { arena: Uint8Array | null; spare: ArrayBuffer | null } = { arena: null, spare: null };

export class ProxyDisk {
  readonly readOnly: boolean;
  private readonly cap: number;
  private readonly io: IoChannel;
  private readonly win = new Map<number, Uint8Array>();
  /** Dirty pages: page number -> its slot in `arena`. */
  private readonly dirty = new Map<number, number>();
  private arena: Uint8Array | null = null;
  /** A buffer the owning thread gave back with its answer to a write, for the next one. */
  private spare: ArrayBuffer | null;
  private inflight: Promise<void> | null = null;
  private failed: unknown = null;

  constructor(readOnly: boolean, capacity: number, io: IoChannel) {
    this.readOnly = readOnly;
    this.cap = capacity;
    this.io = io;
    this.spare = kept.spare;
    kept.spare = null;
  }

  private check(): void {
    if (this.failed !== null) throw this.failed;
  }

  private page(p: number): Uint8Array | undefined {
    const slot = this.dirty.get(p);
    return slot === undefined ? undefined : this.arena!.subarray(slot * PAGE, slot * PAGE + PAGE);
  }

  private async fetchWin(w: number): Promise<Uint8Array> {
    let b = this.win.get(w);
    if (b) {
      this.win.delete(w);
      this.win.set(w, b);
      return b;
    }
    const off = w * WIN;
    const len = Math.min(WIN, this.cap - off);
    const r = await this.io({ op: 'read', length: len, offset: off });
    b = new Uint8Array(r.data!, 0, r.n!);
    for (let p = off / PAGE; p * PAGE < off + b.length; p++) {
      const d = this.page(p);
      if (d) b.set(d.subarray(0, Math.min(PAGE, off + b.length - p * PAGE)), p * PAGE - off);
    }
    this.win.set(w, b);
    if (this.win.size > MAXWIN) this.win.delete(this.win.keys().next().value!);
    return b;
  }

  /** Read length bytes at fileOffset into buffer at bufferOffset (cut short at the end of the disk). */
  async read(buffer: Uint8Array, bufferOffset: number, length: number, fileOffset: number): Promise<{ bytesRead: number }> {
    this.check();
    const end = Math.min(fileOffset + length, this.cap);
    let done = 0;
    while (fileOffset + done < end) {
      const pos = fileOffset + done;
      const w = Math.floor(pos / WIN);
      const b = await this.fetchWin(w);
      const within = pos - w * WIN;
      const n = Math.min(b.length - within, end - pos);
      if (n <= 0) break;
      buffer.set(b.subarray(within, within + n), bufferOffset + done);
      done += n;
    }
    return { bytesRead: done };
  }

  async write(buffer: Uint8Array, bufferOffset: number, length: number, fileOffset: number): Promise<{ bytesWritten: number }> {
    this.check();
    if (this.readOnly) return { bytesWritten: length };
    let done = 0;
    while (done < length) {
      const pos = fileOffset + done;
      const p = Math.floor(pos / PAGE);
      const within = pos - p * PAGE;
      const n = Math.min(PAGE - within, length - done);
      let page = this.page(p);
      if (!page) {
        if (this.dirty.size * PAGE >= MAXDIRTY) await this.post();
        if (this.arena === null) {
          this.arena = kept.arena ?? new Uint8Array(MAXDIRTY);
          kept.arena = null;
        }
        const slot = this.dirty.size;
        page = this.arena.subarray(slot * PAGE, slot * PAGE + PAGE);
        if (n < PAGE) await this.read(page, 0, PAGE, p * PAGE);
        this.dirty.set(p, slot);
      }
      const part = buffer.subarray(bufferOffset + done, bufferOffset + done + n);
      page.set(part, within);
      const w = Math.floor(pos / WIN);
      const cached = this.win.get(w);
      if (cached) cached.set(part, pos - w * WIN);
      done += n;
    }
    return { bytesWritten: length };
  }

  /**
   * Post the dirty pages as one write request (after the previous one is answered) and start a new arena.
   * The request's `runs` are (volume offset, length) pairs whose bytes are laid end to end in its data.
   */
  private async post(): Promise<void> {
    if (this.inflight) await this.inflight;
    this.check();
    if (this.dirty.size === 0) return;
    const pages = [...this.dirty.keys()].sort((a, b) => a - b);
    const data =
      this.spare !== null && this.spare.byteLength >= pages.length * PAGE ? new Uint8Array(this.spare) : new Uint8Array(MAXDIRTY);
    this.spare = null;
    const runs: number[] = [];
    let used = 0;
    for (let i = 0; i < pages.length; ) {
      let j = i + 1;
      while (j < pages.length && pages[j] === pages[j - 1] + 1) j++;
      const off = pages[i] * PAGE;
      for (let k = i; k < j; k++) data.set(this.page(pages[k])!, used + (k - i) * PAGE);
      const len = Math.min((j - i) * PAGE, this.cap - off);
      if (len > 0) {
        runs.push(off, len);
        used += len;
      }
      i = j;
    }
    this.dirty.clear();
    this.inflight = this.io({ op: 'write', data: data.subarray(0, used), runs }, [data.buffer as ArrayBuffer]).then(
      (r) => {
        if (r.data) this.spare = r.data;
      },
      (e: unknown) => {
        if (this.failed === null) this.failed = e;
      },
    );
  }

  /** Post every dirty page and wait for every write in flight; throws the error of a failed one. */
  async writeBack(): Promise<void> {
    await this.post();
    if (this.inflight) await this.inflight;
    this.inflight = null;
    this.check();
  }

  /** After the last writeBack (the unmount): leave this disk's buffers to the thread's next disk. */
  release(): void {
    if (this.dirty.size > 0 || this.inflight !== null) return;
    if (this.arena) kept.arena = this.arena;
    if (this.spare) kept.spare = this.spare;
    this.arena = null;
    this.spare = null;
  }

  async flush(): Promise<void> {
    if (this.readOnly) return;
    await this.writeBack();
    await this.io({ op: 'flush' });
  }

  async discard(offset: number, length: number): Promise<void> {
    if (this.readOnly) return;
    await this.writeBack();
    await this.io({ op: 'discard', offset, length });
    for (const w of [...this.win.keys()]) if (w * WIN < offset + length && (w + 1) * WIN > offset) this.win.delete(w);
  }
}
