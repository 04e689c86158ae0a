/**
 * The disk libext2fs sees inside the worker thread (fs-thread.ts): every block read, write, discard and flush
 * becomes an `io` request to the thread that owns the pool.
 *
 * libext2fs does every I/O as one 4 KiB block, so this disk caches 256 KiB read windows (at most 128, least
 * recently used dropped) and keeps written pages (write-back) until 16 MiB are dirty, a flush, a discard or the
 * unmount, then sends them as runs of consecutive pages of up to 1 MiB. Invariant: a read sees every write
 * made before it (dirty pages are laid over fetched windows, and writes update cached windows).
 */
import { Disk, type ReadResult, type WriteResult } from 'file-disk';
import type { IoReply, IoReq } from './fs-protocol.js';

const PAGE = 4096;
const WIN = 256 * 1024;
const MAXWIN = 128;
const MAXDIRTY = 16 * 1024 * 1024;
const RUN = 1024 * 1024;

/** Sends one I/O request to the owning thread and resolves with its reply (rejects on its error). */
export type IoChannel = (msg: Omit<IoReq, 't' | 'id'>, transfer?: ArrayBuffer[]) => Promise<IoReply>;

export class ProxyDisk extends Disk {
  private readonly cap: number;
  private readonly io: IoChannel;
  private readonly win = new Map<number, Uint8Array>();
  private readonly dirty = new Map<number, Uint8Array>();

  constructor(readOnly: boolean, capacity: number, io: IoChannel) {
    super(readOnly, false, false, true);
    this.cap = capacity;
    this.io = io;
  }

  protected async _getCapacity(): Promise<number> {
    return this.cap;
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
      const d = this.dirty.get(p);
      if (d) b.set(d.subarray(0, Math.min(PAGE, off + b.length - p * PAGE)), p * PAGE - off);
    }
    this.win.set(w, b);
    if (this.win.size > MAXWIN) this.win.delete(this.win.keys().next().value!);
    return b;
  }

  protected async _read(buffer: Buffer, bufferOffset: number, length: number, fileOffset: number): Promise<ReadResult> {
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
    return { bytesRead: done, buffer };
  }

  protected async _write(buffer: Buffer, bufferOffset: number, length: number, fileOffset: number): Promise<WriteResult> {
    let done = 0;
    while (done < length) {
      const pos = fileOffset + done;
      const p = Math.floor(pos / PAGE);
      const within = pos - p * PAGE;
      const n = Math.min(PAGE - within, length - done);
      let page = this.dirty.get(p);
      if (!page) {
        page = new Uint8Array(PAGE);
        if (n < PAGE) await this._read(Buffer.from(page.buffer), 0, PAGE, p * PAGE);
        this.dirty.set(p, page);
      }
      const part = buffer.subarray(bufferOffset + done, bufferOffset + done + n);
      page.set(part, within);
      const w = Math.floor(pos / WIN);
      const cached = this.win.get(w);
      if (cached) cached.set(part, pos - w * WIN);
      done += n;
    }
    if (this.dirty.size * PAGE >= MAXDIRTY) await this.writeBack();
    return { bytesWritten: length, buffer };
  }

  /** Send every dirty page to the owning thread, as runs of consecutive pages. */
  async writeBack(): Promise<void> {
    if (this.dirty.size === 0) return;
    const pages = [...this.dirty.keys()].sort((a, b) => a - b);
    let i = 0;
    while (i < pages.length) {
      let j = i + 1;
      while (j < pages.length && pages[j] === pages[j - 1] + 1 && (j - i) * PAGE < RUN) j++;
      const run = new Uint8Array((j - i) * PAGE);
      for (let k = i; k < j; k++) run.set(this.dirty.get(pages[k])!, (k - i) * PAGE);
      const off = pages[i] * PAGE;
      const len = Math.min(run.length, this.cap - off);
      const data = len === run.length ? run : run.slice(0, len);
      await this.io({ op: 'write', data, offset: off }, [data.buffer]);
      i = j;
    }
    this.dirty.clear();
  }

  protected async _flush(): Promise<void> {
    await this.writeBack();
    await this.io({ op: 'flush' });
  }

  override async discard(offset: number, length: number): Promise<void> {
    if (this.readOnly) return;
    await this.writeBack();
    await this.io({ op: 'discard', offset, length });
    for (const w of [...this.win.keys()]) if (w * WIN < offset + length && (w + 1) * WIN > offset) this.win.delete(w);
  }
}
