/**
 * Output plumbing shared by every command: the streams a run writes to (so tests capture them), errors that carry
 * an exit status, tables, and a progress line that only draws on a terminal.
 *
 * This module must stay light: main.ts loads it on every start, so it imports nothing from the engine.
 */
import { writeSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { formatSize as humanBytes } from '../sizes.js';

export { q } from '../messages.js';

/** What every command runs with (kept here, not in main.ts, so commands need not import main.ts). */
export interface Ctx {
  io: CliIO;
  cwd: string;
  /** --ceph-conf / --ceph-id, for pools addressed rados://CEPH_POOL/NAME. */
  ceph?: { conf?: string; id?: string };
  /** Run another command line in this process (the demo drives the CLI through it); resolves to the exit status. */
  main: (argv: string[], io?: Partial<CliIO>) => Promise<number>;
}

export interface CliIO {
  stdout: Writable & { isTTY?: boolean };
  stderr: Writable & { isTTY?: boolean };
  stdin: Readable;
  /**
   * The descriptors behind stdin/stdout when they are the process's own (set by main when no streams are given):
   * the bulk commands (read, write) move bytes through them directly instead of through the streams.
   */
  stdinFd?: number;
  stdoutFd?: number;
  /** Working directory for relative paths (default process.cwd()). */
  cwd?: string;
}

/** A failure with a one-line message and an exit status (1: failed, 2: usage). */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

/** A bad command line: exit status 2. */
export class UsageError extends CliError {
  constructor(message: string) {
    super(message, 2);
    this.name = 'UsageError';
  }
}

/** Write text and wait until the stream accepted it (respects back-pressure). */
export function write(stream: Writable, text: string | Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    const ok = stream.write(text, (err) => {
      if (err) reject(err);
    });
    if (ok) resolve();
    else {
      const onDrain = (): void => {
        stream.off('error', onError);
        resolve();
      };
      const onError = (err: Error): void => {
        stream.off('drain', onDrain);
        reject(err);
      };
      stream.once('drain', onDrain);
      stream.once('error', onError);
    }
  });
}

let stdoutMade = false;

/**
 * process.stdout, noted as made: from then on writeStdout() writes through it (never around what it may have queued).
 * Making it costs a start-up its stream modules (~5 ms); a command that only prints a line never needs it.
 */
export function processStdout(): Writable & { isTTY?: boolean } {
  stdoutMade = true;
  return process.stdout;
}

/**
 * Write a command's output to its stdout: straight to the descriptor (io.stdoutFd) while process.stdout has not
 * been made, else through the stream (write()). A descriptor that refuses with EAGAIN (a pipe left non-blocking
 * by another process) gets the rest through the stream; any other error (EPIPE) rejects, as the stream's does.
 */
export function writeStdout(io: CliIO, text: string | Uint8Array): Promise<void> {
  const fd = io.stdoutFd;
  if (fd === undefined || stdoutMade) return write(io.stdout, text);
  const b = typeof text === 'string' ? Buffer.from(text) : text;
  let done = 0;
  try {
    while (done < b.length) done += writeSync(fd, b, done, b.length - done);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EAGAIN') return write(io.stdout, b.subarray(done));
    return Promise.reject(e);
  }
  return Promise.resolve();
}

export type Align = 'left' | 'right';

/** Plain aligned columns, headers in capitals, two spaces between columns, no trailing blanks. */
export function formatTable(headers: string[], rows: string[][], align: Align[] = []): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (align[i] === 'right' ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

/**
 * A progress line on stderr, drawn only when stderr is a terminal, at most every 100 ms, erased when done.
 * A total of Infinity (a pipe of unknown length) shows the bytes done only.
 */
export class Progress {
  private readonly stream: CliIO['stderr'];
  private readonly label: string;
  private readonly total: number;
  private readonly enabled: boolean;
  private last = 0;
  private drawn = false;

  constructor(io: CliIO, label: string, total: number) {
    this.stream = io.stderr;
    this.label = label;
    this.total = total;
    this.enabled = io.stderr.isTTY === true && total > 0;
  }

  update(done: number): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (now - this.last < 100 && done < this.total) return;
    this.last = now;
    if (this.total === Infinity) {
      this.stream.write(`\r${this.label}: ${humanBytes(done)}\x1b[K`);
    } else {
      const pct = Math.min(100, Math.floor((done / this.total) * 100));
      this.stream.write(`\r${this.label}: ${String(pct).padStart(3)}% (${humanBytes(done)} of ${humanBytes(this.total)})\x1b[K`);
    }
    this.drawn = true;
  }

  done(): void {
    if (this.drawn) this.stream.write('\r\x1b[K');
    this.drawn = false;
  }
}

/** IEC sizes (src/sizes.ts has no engine imports: cheap at start-up). */
export { humanBytes };
