/**
 * send, receive: a volume (or its changes since a base) as an rbd export-diff stream, and back.
 *
 * send writes to standard output (refused when that is a terminal) or to -o FILE, which appears only once the
 * whole stream is written (a temporary file renamed at the end). receive reads standard input or -i FILE and
 * changes the pool only if the whole stream arrived intact (see src/stream/receive.ts); a FILE is checked whole
 * before the pool is opened, so a damaged one leaves the pool byte-identical. Progress goes to stderr when it is
 * a terminal.
 */
import { closeSync, createReadStream, existsSync, fstatSync, fsyncSync, openSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { decodeDiff } from '../../stream/rbd-diff.js';
import { receive as receiveStream } from '../../stream/receive.js';
import { planSend, sendStream } from '../../stream/send.js';
import { CliError, Progress, UsageError, q, writeStdout } from '../io.js';
import type { Ctx } from '../io.js';
import { parseLabels } from '../labels.js';
import { checkName, explained, humanSize, requirePoolDir, resolvePath, withPool } from '../pool.js';

function streamVersion(v: unknown): 1 | 2 {
  if (v === undefined || v === '1') return 1;
  if (v === '2') return 2;
  throw new UsageError(`--stream-version ${String(v)} must be 1 or 2`);
}

function writeAll(fd: number, b: Uint8Array): void {
  for (let done = 0; done < b.length; ) done += writeSync(fd, b, done, b.length - done);
}

export async function send(ctx: Ctx, [dir, snapshot]: string[], opts: Record<string, unknown>): Promise<number> {
  const version = streamVersion(opts.streamVersion);
  const out = typeof opts.output === 'string' && opts.output !== '-' ? resolvePath(ctx, opts.output) : undefined;
  if (out === undefined && ctx.io.stdout.isTTY)
    throw new UsageError(
      'refusing to write a binary stream to a terminal: pipe it (thinpool send POOL SNAP | thinpool receive ...) or give -o FILE',
    );
  if (opts.json && out === undefined)
    throw new UsageError('--json prints a summary on standard output, which carries the stream: give -o FILE with --json');
  if (out !== undefined) {
    if (existsSync(out) && statSync(out).isDirectory())
      throw new UsageError(`-o ${q(opts.output as string)} is a directory: give a file name`);
    if (!existsSync(dirname(out)))
      throw new CliError(`cannot write ${q(opts.output as string)}: directory ${q(dirname(opts.output as string))} does not exist`);
  }
  requirePoolDir(ctx, dir);
  const tmp = out === undefined ? undefined : `${out}.partial-${process.pid}`;
  const res = await withPool(ctx, dir, 'read', async (pool) => {
    const plan = planSend(pool, snapshot, { from: opts.from as string | undefined });
    const progress = new Progress(ctx.io, `sending ${plan.snapshot}`, plan.dataBytes);
    const fd = tmp === undefined ? -1 : openSync(tmp, 'w');
    let bytes = 0;
    try {
      for await (const chunk of sendStream(pool, snapshot, { from: opts.from as string | undefined, version }, (d) => progress.update(d))) {
        if (fd >= 0) writeAll(fd, chunk);
        else await writeStdout(ctx.io, chunk);
        bytes += chunk.length;
      }
      progress.done();
      if (fd >= 0) {
        fsyncSync(fd);
        closeSync(fd);
        renameSync(tmp!, out!);
      }
    } catch (e) {
      progress.done();
      if (fd >= 0) {
        try {
          closeSync(fd);
        } catch {
          /* already closed */
        }
        rmSync(tmp!, { force: true });
      }
      throw e;
    }
    return { plan, bytes };
  });
  if (out !== undefined) {
    const p = res.plan;
    if (opts.json) {
      await writeStdout(
        ctx.io,
        JSON.stringify(
          {
            snapshot: p.snapshot,
            base: p.base ?? null,
            sizeBytes: p.sizeBytes,
            streamVersion: version,
            streamBytes: res.bytes,
            dataBytes: p.dataBytes,
            zeroBytes: p.zeroBytes,
            file: opts.output,
          },
          null,
          2,
        ) + '\n',
      );
    } else {
      await writeStdout(
        ctx.io,
        `sent ${q(p.snapshot)}${p.base !== undefined ? ` since ${q(p.base)}` : ''} to ${q(opts.output as string)}: ${humanSize(res.bytes)} stream, ${humanSize(p.dataBytes)} of data, ${humanSize(p.zeroBytes)} zeroed\n`,
      );
    }
  }
  return 0;
}

export async function receive(ctx: Ctx, [dir, name]: string[], opts: Record<string, unknown>): Promise<number> {
  checkName(name);
  const labels = parseLabels(opts.label);
  const file = typeof opts.input === 'string' && opts.input !== '-' ? resolvePath(ctx, opts.input) : undefined;
  const stdin = ctx.io.stdin as typeof ctx.io.stdin & { isTTY?: boolean };
  if (file === undefined && stdin.isTTY)
    throw new UsageError(
      'refusing to read a stream from a terminal: pipe one in (thinpool send ... | thinpool receive POOL NAME) or give -i FILE',
    );
  let total = Infinity;
  let fd = -1;
  if (file !== undefined) {
    try {
      fd = openSync(file, 'r');
    } catch (e) {
      throw new CliError(
        `cannot open ${q(opts.input as string)}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`,
      );
    }
    const st = fstatSync(fd);
    if (st.isDirectory()) {
      closeSync(fd);
      throw new UsageError(`-i ${q(opts.input as string)} is a directory: give a stream file`);
    }
    if (st.isFile()) total = st.size;
  }
  requirePoolDir(ctx, dir);
  if (file !== undefined && total !== Infinity) {
    // A file can be read twice: check the whole stream before the pool is opened, so a damaged file changes
    // nothing at all. (A pipe is checked as it is applied; see src/stream/receive.ts.)
    const check = new Progress(ctx.io, `checking ${basename(file)}`, total);
    try {
      for await (const _rec of decodeDiff(createReadStream(file, { highWaterMark: 1024 * 1024 }), { onBytes: (n) => check.update(n) })) {
        /* decode only */
      }
    } catch (e) {
      closeSync(fd);
      throw explained(e, dir);
    } finally {
      check.done();
    }
  }
  const input = fd >= 0 ? createReadStream('', { fd, autoClose: true, highWaterMark: 1024 * 1024 }) : ctx.io.stdin;
  const label = file !== undefined ? basename(file) : 'standard input';
  try {
    const res = await withPool(ctx, dir, 'write', async (pool) => {
      const progress = new Progress(ctx.io, `receiving ${label}`, total);
      try {
        return await receiveStream(pool, name, input, {
          from: opts.from as string | undefined,
          labels,
          readOnly: opts.readOnly === true,
          onProgress: (n) => progress.update(n),
        });
      } finally {
        progress.done();
      }
    });
    if (opts.json) {
      await writeStdout(
        ctx.io,
        JSON.stringify(
          {
            name: res.name,
            id: res.id,
            sizeBytes: res.sizeBytes,
            base: res.base ?? null,
            fromSnap: res.fromSnap ?? null,
            toSnap: res.toSnap ?? null,
            dataBytes: res.dataBytes,
            zeroBytes: res.zeroBytes,
          },
          null,
          2,
        ) + '\n',
      );
    } else {
      await writeStdout(
        ctx.io,
        `received ${q(res.name)} (id ${res.id}, ${humanSize(res.sizeBytes)})${res.base !== undefined ? ` as a snapshot of ${q(res.base)}` : ''}: ${humanSize(res.dataBytes)} of data, ${humanSize(res.zeroBytes)} zeroed\n`,
      );
    }
  } finally {
    if (fd >= 0 && !(input as { destroyed?: boolean }).destroyed) (input as { destroy(): void }).destroy();
  }
  return 0;
}
