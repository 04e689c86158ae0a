/**
 * The messages between an `FsSession` (this thread, owner of the pool) and its ext2fs worker thread
 * (fs-thread.ts), and the shapes of what the worker returns. Both sides import only types and constants from
 * here, so the protocol is checked by the compiler on both ends.
 *
 * Invariants: every `call` gets exactly one `reply` with the same id (alone or in a `replies` group, in the
 * order the calls were sent), and calls run one at a time in the order sent; every `io` request from the worker gets exactly one `io-reply`; file data moves at most CHUNK bytes
 * per call (a write-back `io` request names up to 16 MiB of blocks in shared memory).
 */

/** Most file data one call moves (libext2fs aborts at ~16 MiB per operation). */
export const CHUNK = 1024 * 1024;

export type EntryType = 'file' | 'dir' | 'symlink' | 'other';

export interface FsStat {
  path: string;
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeMs: number;
  ino: number;
  nlink: number;
  target?: string;
  /** What an 'other' entry is. */
  special?: 'char' | 'block' | 'fifo' | 'socket';
}

export interface PutEntry {
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'link';
  mode: number;
  uid: number;
  gid: number;
  /** symlink target, or the hard link's existing path */
  linkname?: string;
  /** Whole content of a small file (else: returns an fd for write()/close()). */
  data?: Uint8Array;
  /**
   * Instead of `data`: the content is `dataLength` bytes at `dataAt` in the session's data ring (memory shared
   * with the worker, given by its `attachData` call; fs-batch.ts).
   */
  dataAt?: number;
  dataLength?: number;
  /** Refuse parents that are symlinks (paths of layer tars). Default true. */
  noSymlinkParents?: boolean;
  /** Also return the inode number of the parent directory. */
  wantParent?: boolean;
}

/** What put() made: a handle to fill (a file without data), its inode, and the parent's when asked. */
export interface PutResult {
  fd: number | null;
  ino: number;
  parent?: number;
}

/** This thread asks the worker to run one filesystem operation. */
export interface CallMsg {
  t: 'call';
  id: number;
  op: string;
  args: unknown[];
  /** Skipped (ECANCELED) when an earlier chained call failed since the last unchained one (fs-batch.ts). */
  chain?: boolean;
}
/** The worker's answer to a call: a value or an error with an errno-like code. */
export interface ReplyMsg {
  t: 'reply';
  id: number;
  value?: unknown;
  error?: { code: string; message: string; stack?: string };
}
/**
 * The worker's block I/O, served by this thread over the volume, in the order posted. The data moves through
 * memory both threads share (fs-proxy-disk.ts), given once by `attach` (`shared`) before any other request:
 * `read` length bytes at offset into the shared memory at `at`; `write` the `runs`, (volume offset, place in
 * the shared memory, length) triples; `discard` length bytes at offset; `flush`.
 */
export interface IoReq {
  t: 'io';
  id: number;
  op: 'attach' | 'read' | 'write' | 'flush' | 'discard';
  length?: number;
  offset?: number;
  at?: number;
  shared?: SharedArrayBuffer;
  runs?: number[];
}
/**
 * The answer to an I/O request: for a read, `n` bytes were placed (zeroes past the end of the volume), and
 * the `zeros` bytes that follow them on the volume are unprovisioned (read as zeroes) when it is answered.
 */
export interface IoReply {
  t: 'io-reply';
  id: number;
  n?: number;
  zeros?: number;
  error?: { code: string; message: string };
}
/** Replies posted together (while more calls wait to run, the worker posts its replies in groups). */
export interface RepliesMsg {
  t: 'replies';
  list: ReplyMsg[];
}
/** The worker posts this once, when libext2fs is loaded and it listens for calls. */
export interface ReadyMsg {
  t: 'ready';
}

export type ToWorker = CallMsg | IoReply;
export type FromWorker = ReplyMsg | RepliesMsg | IoReq | ReadyMsg;
