/**
 * An open file of the merged view. Reads go to the branch holding the file; the first write copies the whole
 * file up into the writable branch (unless it is there already) and reopens it there.
 */
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { UnionError } from './errors.js';

/** Copy the file up (if needed) and return its host path in the writable branch. */
export type CopyUpHook = () => string;

export class UnionFile {
  private fd: number;
  private inUpper: boolean;
  private closed = false;

  /** @internal use Union.open() */
  constructor(
    hostPath: string,
    inUpper: boolean,
    private readonly writable: boolean,
    private readonly copyUp: CopyUpHook,
  ) {
    this.inUpper = inUpper;
    this.fd = openSync(hostPath, inUpper && writable ? 'r+' : 'r');
  }

  private live(): void {
    if (this.closed) throw new UnionError('EBADF', 'file is closed');
  }

  /** Read into buf at position; returns the bytes read (short at end of file). */
  read(buf: Uint8Array, position: number): number {
    this.live();
    return readSync(this.fd, buf, 0, buf.length, position);
  }

  write(buf: Uint8Array, position: number): number {
    this.live();
    if (!this.writable) throw new UnionError('EBADF', 'file is open read-only');
    if (!this.inUpper) {
      const host = this.copyUp();
      closeSync(this.fd);
      this.fd = openSync(host, 'r+');
      this.inUpper = true;
    }
    return writeSync(this.fd, buf, 0, buf.length, position);
  }

  get copiedUp(): boolean {
    return this.inUpper;
  }

  size(): number {
    this.live();
    return fstatSync(this.fd).size;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}
