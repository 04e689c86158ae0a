/**
 * The disk libext2fs sees inside the worker thread (fs-thread.ts): every block read, write, discard and flush
 * becomes an `io` request to the thread that owns the pool. It has the methods libext2fs's mount calls
 * (read, write, discard, flush); a read-only disk drops writes silently, as file-disk's disks do.
 *
 * libext2fs does every I/O as one 4 KiB block (about four per data block it writes: the zeroed new block, the
 * inode table block read and written, the data), so this disk caches 256 KiB read windows (at most 128, least
 * recently used dropped) and keeps written pages (write-back) until 16 MiB are dirty, then posts them as one
 * `write` request without waiting for its answer; libext2fs goes on while the owning thread writes them, and
 * at most one such request is in flight when the next is posted.
 *
 * Memory shared with the owning thread, not copied nor moved: the read windows and two 16 MiB arenas of dirty
 * pages live in one SharedArrayBuffer, given to the owning thread once (`attach`, before the first request).
 * A read request names the window's place in it, which the owning thread fills; a write request names runs
 * of pages in the arena being written (volume offset, place, length), and the other arena takes the next
 * writes meanwhile. No window is read into while it is used, and no arena is written while it is in flight.
 * A flush, a discard and `writeBack()` (the unmount) post what is dirty and wait for every write in flight.
 *
 * A read's answer also says how far the unprovisioned space after it goes, as it is once every write posted
 * before the read is done; a read inside such a range, in a window none of whose pages was posted since and
 * that is not cached, is answered here with zeroes and the dirty pages, without asking nor caching a window
 * (libext2fs reads back blocks it has just allocated and zeroed: one window request per file, before).
 *
 * `readNow` and `writeNow` are the same read and write when they need no wait (every window at hand; whole
 * pages with room in the arena): libext2fs's block I/O then completes without Asyncify (ext2fs-sync-io.ts).
 * They answer undefined, having changed nothing, when the async path must do it.
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
const MAXZERO = 32;
/** Where the two arenas start in the shared memory (the windows come first). */
const ARENA0 = MAXWIN * WIN;
const SHARED = ARENA0 + 2 * MAXDIRTY;

/** Sends one I/O request to the owning thread and resolves with its reply (rejects on its error). */
export type IoChannel = (msg: Omit<IoReq, 't' | 'id'>) => Promise<IoReply>;

/** The shared memory a released disk leaves for the next disk of this thread (one disk at a time). */
const kept: { shared: Uint8Array | null } = { shared: null };

export class ProxyDisk {
  readonly readOnly: boolean;
  private readonly cap: number;
  private readonly io: IoChannel;
  /** Windows and arenas (see the module comment); the owning thread has it once attach() is answered. */
  private readonly shared: Uint8Array;
  private attached = false;
  /** Cached windows: window number -> its bytes (a view of `shared`), least recently used first. */
  private readonly win = new Map<number, Uint8Array>();
  /** Window places not in use. */
  private readonly freeWins: number[] = [];
  /** Dirty pages: page number -> its slot in the arena being filled. */
  private readonly dirty = new Map<number, number>();
  /** The arena being filled (0 or 1): its first byte in `shared`. */
  private arena = ARENA0;
  private inflight: Promise<void> | null = null;
  private failed: unknown = null;
  /**
   * Byte ranges the owning thread said were unprovisioned (the latest MAXZERO), as (start, end, posts)
   * triples: `posts` write requests had been posted when the read that told it was.
   */
  private readonly zeros: number[] = [];
  /** Write requests posted so far; and by window, the number of the last one that held a page of it. */
  private posts = 0;
  private readonly lastPost: Uint32Array;

  /** Whether readNow/writeNow answer (false: always undefined, every I/O goes the async way). */
  private readonly answerNow: boolean;
  /** Block I/O answered by readNow/writeNow, and by the async read/write. */
  readonly counts = { now: 0, waited: 0 };

  constructor(readOnly: boolean, capacity: number, io: IoChannel, answerNow = true) {
    this.readOnly = readOnly;
    this.answerNow = answerNow;
    this.cap = capacity;
    this.io = io;
    this.shared = kept.shared ?? new Uint8Array(new SharedArrayBuffer(SHARED));
    kept.shared = null;
    for (let i = MAXWIN - 1; i >= 0; i--) this.freeWins.push(i * WIN);
    this.lastPost = new Uint32Array(Math.ceil(capacity / WIN));
  }

  /** Whether [start, end) in window w is unprovisioned on the owning side but for its dirty pages. */
  private knownZero(w: number, start: number, end: number): boolean {
    const z = this.zeros;
    for (let i = 0; i < z.length; i += 3) if (z[i] <= start && end <= z[i + 1] && this.lastPost[w] <= z[i + 2]) return true;
    return false;
  }

  /** Give the shared memory to the owning thread; once, before any other request. */
  async attach(): Promise<void> {
    if (this.attached) return;
    await this.io({ op: 'attach', shared: this.shared.buffer as SharedArrayBuffer });
    this.attached = true;
  }

  private check(): void {
    if (this.failed !== null) throw this.failed;
  }

  private page(p: number): Uint8Array | undefined {
    const slot = this.dirty.get(p);
    if (slot === undefined) return undefined;
    const at = this.arena + slot * PAGE;
    return this.shared.subarray(at, at + PAGE);
  }

  private async fetchWin(w: number): Promise<Uint8Array> {
    let b = this.win.get(w);
    if (b) {
      this.win.delete(w);
      this.win.set(w, b);
      return b;
    }
    await this.attach();
    if (this.freeWins.length === 0) {
      const oldest = this.win.keys().next().value!;
      this.freeWins.push(this.win.get(oldest)!.byteOffset);
      this.win.delete(oldest);
    }
    const at = this.freeWins.pop()!;
    const off = w * WIN;
    const len = Math.min(WIN, this.cap - off);
    try {
      const posts = this.posts;
      const r = await this.io({ op: 'read', length: len, offset: off, at });
      b = this.shared.subarray(at, at + r.n!);
      if (r.zeros) {
        this.zeros.push(off + r.n!, off + r.n! + r.zeros, posts);
        if (this.zeros.length > 3 * MAXZERO) this.zeros.splice(0, 3);
      }
    } catch (e) {
      this.freeWins.push(at);
      throw e;
    }
    for (let p = off / PAGE; p * PAGE < off + b.length; p++) {
      const d = this.page(p);
      if (d) b.set(d.subarray(0, Math.min(PAGE, off + b.length - p * PAGE)), p * PAGE - off);
    }
    this.win.set(w, b);
    return b;
  }

  /**
   * [pos, upto) of window w (one window at most) into buffer at `to`, if at hand: from the cached window, or
   * zeroes and the dirty pages where the space is known unprovisioned. False (nothing copied) otherwise.
   */
  private copyOut(w: number, pos: number, upto: number, buffer: Uint8Array, to: number): boolean {
    const b = this.win.get(w);
    if (b !== undefined) {
      this.win.delete(w); // most recently used
      this.win.set(w, b);
      const within = pos - w * WIN;
      buffer.set(b.subarray(within, within + (upto - pos)), to);
      return true;
    }
    if (!this.knownZero(w, pos, upto)) return false;
    for (let q = pos; q < upto; ) {
      const p = Math.floor(q / PAGE);
      const k = Math.min((p + 1) * PAGE, upto) - q;
      const d = this.page(p);
      if (d) buffer.set(d.subarray(q - p * PAGE, q - p * PAGE + k), to + (q - pos));
      else buffer.fill(0, to + (q - pos), to + (q - pos) + k);
      q += k;
    }
    return true;
  }

  /**
   * The read, now, if every byte of it is at hand (ext2fs-sync-io.ts): 0 when buffer is filled from
   * fileOffset; undefined, with nothing changed but the windows' recency, when a window must be fetched or a
   * posted write failed (read() then does it, or fails).
   */
  readNow(buffer: Uint8Array, fileOffset: number): number | undefined {
    if (this.failed !== null || !this.answerNow) return undefined;
    const end = Math.min(fileOffset + buffer.length, this.cap);
    for (let pos = fileOffset; pos < end; ) {
      const w = Math.floor(pos / WIN);
      const upto = Math.min(end, (w + 1) * WIN);
      if (!this.win.has(w) && !this.knownZero(w, pos, upto)) return undefined;
      pos = upto;
    }
    for (let pos = fileOffset; pos < end; ) {
      const w = Math.floor(pos / WIN);
      const upto = Math.min(end, (w + 1) * WIN);
      this.copyOut(w, pos, upto, buffer, pos - fileOffset);
      pos = upto;
    }
    this.counts.now++;
    return 0;
  }

  /** Read length bytes at fileOffset into buffer at bufferOffset (cut short at the end of the disk). */
  async read(buffer: Uint8Array, bufferOffset: number, length: number, fileOffset: number): Promise<{ bytesRead: number }> {
    this.check();
    this.counts.waited++;
    const end = Math.min(fileOffset + length, this.cap);
    let done = 0;
    while (fileOffset + done < end) {
      const pos = fileOffset + done;
      const w = Math.floor(pos / WIN);
      const upto = Math.min(end, (w + 1) * WIN);
      if (!this.copyOut(w, pos, upto, buffer, bufferOffset + done)) {
        const b = await this.fetchWin(w);
        const within = pos - w * WIN;
        const n = Math.min(b.length - within, end - pos);
        if (n <= 0) break;
        buffer.set(b.subarray(within, within + n), bufferOffset + done);
        done += n;
        continue;
      }
      done += upto - pos;
    }
    return { bytesRead: done };
  }

  /** Copy `part` (within one page, at volume offset pos) into the page's dirty slot and its cached window, if any. */
  private put(part: Uint8Array, slot: number, pos: number): void {
    this.shared.set(part, this.arena + slot * PAGE + (pos % PAGE));
    const w = Math.floor(pos / WIN);
    const cached = this.win.get(w);
    if (cached) cached.set(part, pos - w * WIN);
  }

  /**
   * The write, now, if it needs no wait (ext2fs-sync-io.ts): whole pages, and room for them in the arena. 0
   * when done (a read-only disk drops it, as write() does); undefined, with nothing changed, otherwise (write()
   * then does it, or fails with the error of a failed posted write).
   */
  writeNow(buffer: Uint8Array, fileOffset: number): number | undefined {
    if (this.failed !== null || !this.answerNow) return undefined;
    if (this.readOnly) {
      this.counts.now++;
      return 0;
    }
    const length = buffer.length;
    if (fileOffset % PAGE !== 0 || length % PAGE !== 0) return undefined;
    let fresh = 0;
    for (let pos = fileOffset; pos < fileOffset + length; pos += PAGE) if (!this.dirty.has(pos / PAGE)) fresh++;
    if ((this.dirty.size + fresh) * PAGE > MAXDIRTY) return undefined;
    for (let done = 0; done < length; done += PAGE) {
      const p = (fileOffset + done) / PAGE;
      let slot = this.dirty.get(p);
      if (slot === undefined) {
        slot = this.dirty.size;
        this.dirty.set(p, slot);
      }
      this.put(buffer.subarray(done, done + PAGE), slot, fileOffset + done);
    }
    this.counts.now++;
    return 0;
  }

  async write(buffer: Uint8Array, bufferOffset: number, length: number, fileOffset: number): Promise<{ bytesWritten: number }> {
    this.check();
    this.counts.waited++;
    if (this.readOnly) return { bytesWritten: length };
    let done = 0;
    while (done < length) {
      const pos = fileOffset + done;
      const p = Math.floor(pos / PAGE);
      const n = Math.min(PAGE - (pos - p * PAGE), length - done);
      let slot = this.dirty.get(p);
      if (slot === undefined) {
        if (this.dirty.size * PAGE >= MAXDIRTY) await this.post();
        slot = this.dirty.size;
        if (n < PAGE) await this.read(this.shared.subarray(this.arena + slot * PAGE, this.arena + slot * PAGE + PAGE), 0, PAGE, p * PAGE);
        this.dirty.set(p, slot);
      }
      this.put(buffer.subarray(bufferOffset + done, bufferOffset + done + n), slot, pos);
      done += n;
    }
    return { bytesWritten: length };
  }

  /**
   * Post the dirty pages as one write request (after the previous one is answered) and fill the other arena
   * from now on. The request's `runs` are (volume offset, place in the shared memory, length) triples: pages
   * consecutive on the volume and in the arena make one run.
   */
  private async post(): Promise<void> {
    if (this.inflight) await this.inflight;
    this.inflight = null;
    this.check();
    if (this.dirty.size === 0) return;
    await this.attach();
    const pages = [...this.dirty.keys()].sort((a, b) => a - b);
    const runs: number[] = [];
    for (let i = 0; i < pages.length; ) {
      const first = this.dirty.get(pages[i])!;
      let j = i + 1;
      while (j < pages.length && pages[j] === pages[j - 1] + 1 && this.dirty.get(pages[j]) === first + (j - i)) j++;
      const off = pages[i] * PAGE;
      const len = Math.min((j - i) * PAGE, this.cap - off);
      if (len > 0) runs.push(off, this.arena + first * PAGE, len);
      for (let w = Math.floor(off / WIN); w * WIN < off + len; w++) this.lastPost[w] = this.posts + 1;
      i = j;
    }
    this.posts++;
    this.dirty.clear();
    this.arena = this.arena === ARENA0 ? ARENA0 + MAXDIRTY : ARENA0;
    this.inflight = this.io({ op: 'write', runs }).then(
      () => undefined,
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

  /** After the last writeBack (the unmount): leave the shared memory to the thread's next disk. */
  release(): void {
    if (this.dirty.size > 0 || this.inflight !== null) return;
    kept.shared = this.shared;
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
    for (const [w, b] of [...this.win])
      if (w * WIN < offset + length && (w + 1) * WIN > offset) {
        this.win.delete(w);
        this.freeWins.push(b.byteOffset);
      }
  }
}
