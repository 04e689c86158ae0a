/**
 * Reusable reply buffers for large READs. A fresh multi-MiB buffer costs page faults (the kernel zeroes every page
 * on first touch) and garbage-collector pressure; a buffer goes back to its free list once the socket has taken
 * the reply (the write callback). Sizes are powers of two from 128 KiB; at most FREE_CAP bytes are kept.
 */
const MIN_POOLED = 128 * 1024;
const FREE_CAP = 64 * 1024 * 1024;

const POOLING = process.env.NBD_POOL !== '0';
const free = new Map<number, Buffer[]>();
let freeBytes = 0;

function sizeClass(n: number): number {
  let c = MIN_POOLED;
  while (c < n) c *= 2;
  return c;
}

/**
 * Small replies (a 4 KiB read) are cut from a shared slab, like Buffer.allocUnsafe does below 4 KiB: one
 * allocation per SLAB bytes instead of one ArrayBuffer per reply. A slab is freed when its last reply is.
 */
const SLAB = 256 * 1024;
let slab = Buffer.allocUnsafeSlow(SLAB);
let slabPos = 0;

/** A buffer of at least n bytes (exactly n when it is not pooled). */
export function takeBuffer(n: number): Buffer {
  if (n <= 16 * 1024) {
    if (slabPos + n > SLAB) {
      slab = Buffer.allocUnsafeSlow(SLAB);
      slabPos = 0;
    }
    const b = slab.subarray(slabPos, slabPos + n);
    slabPos = (slabPos + n + 7) & ~7;
    return b;
  }
  if (n < MIN_POOLED / 2 || !POOLING) return Buffer.allocUnsafe(n);
  const c = sizeClass(n);
  const list = free.get(c);
  const b = list?.pop();
  if (b) {
    freeBytes -= c;
    return b;
  }
  return Buffer.allocUnsafeSlow(c);
}

/** Is b a pooled buffer (to hand back with giveBuffer when the socket is done with it)? */
function isPooled(b: Buffer): boolean {
  return b.length >= MIN_POOLED && (b.length & (b.length - 1)) === 0 && b.byteOffset === 0 && b.buffer.byteLength === b.length;
}

export function giveBuffer(b: Buffer): void {
  if (!isPooled(b) || freeBytes + b.length > FREE_CAP) return;
  let list = free.get(b.length);
  if (!list) free.set(b.length, (list = []));
  list.push(b);
  freeBytes += b.length;
}
