/** write, read, import, export: moving bytes in and out of volumes. */
import { closeSync, existsSync, fstatSync, ftruncateSync, openSync, realpathSync, statSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { isZero, readFull, writeFull, zeros } from '../../io/sparse.js';
import { CHUNK, COPY_BUFFER, Input, Output, VolumeSink, eachFileChunk, fileLayout } from '../bulk.js';
import { BULK_WRITE_BEHIND } from '../../io/block-device.js';
import { CliError, Progress, UsageError, q, writeStdout } from '../io.js';
import type { Ctx } from '../io.js';
import type { ThinPool } from '../../thin/pool.js';
import type { Volume } from '../../thin/volume.js';
import { blocksNeeded, checkName, checkpoint, humanSize, preflightSpace, requirePoolDir, resolvePath, sizeArg, withPool } from '../pool.js';

/** Batch of whole blocks read at once (at least one block, about CHUNK bytes). */
function batchSize(bs: number, bytes = CHUNK): number {
  return bs >= bytes ? bs : Math.floor(bytes / bs) * bs;
}

function readFully(fd: number, buf: Uint8Array, pos: number): number {
  return readFull(fd, buf, pos);
}

export async function write(ctx: Ctx, [dir, name, file]: string[], opts: Record<string, unknown>): Promise<number> {
  const offset = sizeArg(opts.offset, '--offset', { allowZero: true });
  const commitEvery = opts.commitEvery === undefined ? Infinity : sizeArg(opts.commitEvery, '--commit-every');
  const fromStdin = file === undefined || file === '-';
  let fd = -1;
  let inputSize = 0;
  if (!fromStdin) {
    const path = resolvePath(ctx, file);
    try {
      fd = openSync(path, 'r');
      const st = fstatSync(fd);
      if (!st.isFile()) throw new CliError(`${q(file)} is not a regular file: give a file, or - to read standard input`);
      inputSize = st.size;
    } catch (e) {
      if (fd >= 0) closeSync(fd);
      throw e;
    }
  }
  const input = fromStdin ? new Input(ctx.io.stdinFd, () => ctx.io.stdin) : null;
  // Set once bytes of this command are in the data file: a failure after that releases them again.
  let wroteData = false;
  let committed = 0;
  try {
    requirePoolDir(ctx, dir);
    const written = await withPool(
      ctx,
      dir,
      'write',
      async (pool) => {
        const vol = pool.volume(name);
        if (vol.readOnly) throw new CliError(`volume ${q(vol.label)} is read-only`);
        const size = vol.sizeBytes;
        if (offset > size)
          throw new UsageError(`--offset ${opts.offset as string} is beyond the end of volume ${q(vol.label)} (${humanSize(size)})`);
        if (!fromStdin && offset + inputSize > size) {
          throw new CliError(
            `${q(file)} (${humanSize(inputSize)}) does not fit in volume ${q(vol.label)} at offset ${offset} (${humanSize(size)}); nothing was written: resize the volume first ("thinpool resize")`,
          );
        }
        const bs = pool.blockSize;
        const shared = (v: number): boolean => pool.metadata.lookup(vol.id, v)?.shared === true;
        const sink = new VolumeSink(vol, offset, (fromStdin ? size : offset + inputSize) - offset, false, shared);
        pool.storage.data.writeBehind?.(BULK_WRITE_BEHIND);
        const buf = Buffer.allocUnsafe(batchSize(bs, COPY_BUFFER));
        const progress = new Progress(ctx.io, `writing ${vol.label}`, fromStdin ? Infinity : inputSize);
        let sinceCommit = 0;
        const commitIfDue = (n: number): void => {
          sinceCommit += n;
          if (sinceCommit < commitEvery) return;
          pool.commitSync();
          committed += sinceCommit;
          sinceCommit = 0;
        };
        try {
          if (!fromStdin) {
            // Preflight from the file's layout (data ranges may hold zeros: only when that bound does not fit is
            // the data read twice, to count exactly).
            let bound = 0;
            const layout = fileLayout(fd, inputSize);
            for (const r of layout)
              bound += r.hole
                ? sink.planHole(offset + r.start, r.end - r.start)
                : blocksNeeded(pool, vol.id, offset + r.start, r.end - r.start);
            try {
              preflightSpace(pool, dir, bound);
            } catch (e) {
              let exact = 0;
              await eachFileChunk(fd, file, inputSize, offset, bs, buf, {
                data: (chunk, pos) => {
                  exact += sink.plan(chunk, offset + pos);
                },
                hole: (pos, len) => {
                  exact += sink.planHole(offset + pos, len);
                },
              });
              if (exact === bound) throw e;
              preflightSpace(pool, dir, exact);
            }
            let done = 0;
            await eachFileChunk(fd, file, inputSize, offset, bs, buf, {
              data: async (chunk, pos) => {
                wroteData = true;
                sink.data(chunk, offset + pos);
                done += chunk.length;
                commitIfDue(chunk.length);
                progress.update(done);
                await checkpoint();
              },
              hole: async (pos, len) => {
                wroteData = true;
                sink.hole(offset + pos, len);
                done += len;
                commitIfDue(len);
                progress.update(done);
                await checkpoint();
              },
            });
          } else {
            // Standard input, chunk by chunk (each ends at a volume block boundary); each chunk is preflighted
            // before it is written. The first chunk is large (about CHUNK bytes), so input that fits in it fails
            // with the pool untouched; the rest go in COPY_BUFFER batches, which copy faster.
            const head = Buffer.allocUnsafe(batchSize(bs));
            for (let pos = offset; ; ) {
              // The first chunk ends at a block boundary; every later one starts at one.
              const b = pos === offset ? head : buf;
              const want = Math.min(b.length - (pos % bs), size - pos);
              const n = want === 0 ? 0 : await input!.fill(b.subarray(0, want));
              if (n === want && pos + n === size) {
                // The volume is full: any further byte does not fit.
                const extra = await input!.fill(Buffer.alloc(1));
                if (extra > 0)
                  throw new CliError(
                    `standard input is longer than the ${humanSize(size - offset)} left in the volume; nothing was written: write less or resize the volume first`,
                  );
              }
              if (n === 0) break;
              const chunk = b.subarray(0, n);
              preflightSpace(pool, dir, sink.plan(chunk, pos));
              wroteData = true;
              sink.data(chunk, pos);
              pos += n;
              inputSize += n;
              commitIfDue(n);
              progress.update(inputSize);
              await checkpoint();
              if (n < want) break;
            }
          }
        } catch (e) {
          if (committed > 0 && e instanceof CliError) {
            throw new CliError(
              `${e.message.replace(/; nothing was written/, '')}; the first ${committed} bytes of the input were written and committed (--commit-every), the rest was not`,
              e.exitCode,
            );
          }
          throw e;
        }
        progress.done();
        return { n: inputSize, label: vol.label };
      },
      { interruptible: true, releaseOnError: () => wroteData },
    );
    await writeStdout(ctx.io, `wrote ${written.n} bytes to ${q(written.label)} at offset ${offset}\n`);
  } finally {
    input?.close();
    if (fd >= 0) closeSync(fd);
  }
  return 0;
}

export async function read(ctx: Ctx, [dir, name]: string[], opts: Record<string, unknown>): Promise<number> {
  const offset = sizeArg(opts.offset, '--offset', { allowZero: true });
  const length = opts.length === undefined ? undefined : sizeArg(opts.length, '--length', { allowZero: true });
  await withPool(ctx, dir, 'read', async (pool) => {
    const vol = pool.volume(name);
    const size = vol.sizeBytes;
    if (offset > size)
      throw new UsageError(`--offset ${opts.offset as string} is beyond the end of volume ${q(vol.label)} (${humanSize(size)})`);
    const len = length ?? size - offset;
    if (offset + len > size)
      throw new UsageError(`--offset ${offset} + --length ${len} runs past the end of volume ${q(vol.label)} (${size} bytes)`);
    const out = new Output(ctx.io.stdoutFd, ctx.io.stdout);
    try {
      const end = offset + len;
      const buf = Buffer.allocUnsafe(batchSize(pool.blockSize));
      // Holes (unprovisioned blocks) are written from a buffer of zeros, never read; provisioned runs are sent
      // (sendfile) or read in batches.
      let pos = offset;
      const hole = async (to: number): Promise<void> => {
        while (pos < to) {
          const z = zeros(to - pos);
          await out.write(z, false);
          pos += z.length;
        }
      };
      const data = pool.storage.data;
      const bs = pool.blockSize;
      const dataEnd = pool.metadata.nrDataBlocks * bs;
      for (const e of vol.extents(offset, len)) {
        await hole(Math.max(pos, Math.min(end, e.offsetBytes)));
        const stop = Math.min(end, e.offsetBytes + e.lengthBytes);
        // An extent is a run of consecutive data blocks: sent from the data file inside the kernel where the
        // output takes it (a mapping past the data device is left to readSync, which reports it).
        if (pos < stop && e.dblock * bs + e.lengthBytes <= dataEnd) {
          const sent = out.send(data, e.dblock * bs + (pos - e.offsetBytes), stop - pos);
          if (sent !== null) {
            pos += sent;
            await hole(stop);
            continue;
          }
        }
        while (pos < stop) {
          const n = Math.min(buf.length, stop - pos);
          const chunk = buf.subarray(0, n);
          vol.readSync(chunk, pos);
          await out.write(chunk, true);
          pos += n;
        }
      }
      await hole(end);
    } finally {
      out.close();
    }
  });
  return 0;
}

/** Formats `import` recognises by their magic numbers (none of them is a raw disk image). */
function imageFormat(fd: number, size: number): { format: string; qemu: string } | null {
  const head = Buffer.alloc(512);
  const n = readFully(fd, head, 0);
  const at = (off: number, magic: string): boolean => n >= off + magic.length && head.toString('latin1', off, off + magic.length) === magic;
  if (at(0, 'QFI\xfb')) return { format: 'qcow2', qemu: 'qcow2' };
  if (at(0, 'KDMV') || at(0, 'COWD') || at(0, '# Disk DescriptorFile')) return { format: 'VMDK', qemu: 'vmdk' };
  if (n >= 68 && head.readUInt32LE(64) === 0xbeda107f) return { format: 'VDI (VirtualBox)', qemu: 'vdi' };
  if (at(0, 'vhdxfile')) return { format: 'VHDX', qemu: 'vhdx' };
  if (at(0, 'conectix')) return { format: 'VHD', qemu: 'vpc' };
  if (size >= 1024) {
    // A fixed-size VHD is raw data followed by a 512-byte footer.
    const foot = Buffer.alloc(8);
    if (readFully(fd, foot, size - 512) === 8 && foot.toString('latin1') === 'conectix') return { format: 'VHD (fixed)', qemu: 'vpc' };
  }
  return null;
}

export async function importImage(ctx: Ctx, [dir, name, image]: string[], opts: Record<string, unknown>): Promise<number> {
  checkName(name);
  if (opts.format !== undefined && opts.format !== 'raw') {
    throw new UsageError(
      `--format ${q(String(opts.format))} is not supported: import takes raw images (--format raw); convert others with "qemu-img convert -O raw IMAGE IMAGE.raw"`,
    );
  }
  const path = resolvePath(ctx, image);
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'no such file: check the path'
        : code === 'ENOTDIR'
          ? 'a part of the path is a file, not a directory: check the path'
          : code === 'EACCES' || code === 'EPERM'
            ? 'permission denied: make it readable for this user'
            : (e as Error).message;
    throw new CliError(`cannot open image ${q(image)}: ${why}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new CliError(`image ${q(image)} is not a regular file`);
    const imageSize = st.size;
    const rounded = Math.ceil(imageSize / 512) * 512;
    const size = opts.size === undefined ? rounded : sizeArg(opts.size, '--size');
    if (size % 512 !== 0) throw new UsageError(`--size ${opts.size as string} must be a multiple of 512 bytes`);
    if (size < imageSize) throw new UsageError(`--size ${opts.size as string} is smaller than the image (${imageSize} bytes)`);
    if (size === 0) throw new CliError(`image ${q(image)} is empty: nothing to import`);
    const known = opts.format === 'raw' ? null : imageFormat(fd, imageSize);
    if (known !== null) {
      throw new CliError(
        `${q(image)} is a ${known.format} image, not a raw disk image: convert it with "qemu-img convert -f ${known.qemu} -O raw ${image} ${image}.raw" and import that (or give --format raw to import the file's bytes as they are)`,
      );
    }
    requirePoolDir(ctx, dir);
    let wroteData = false;
    let createdId: number | null = null;
    const res = await withPool(
      ctx,
      dir,
      'write',
      async (pool) => {
        if (pool.has(name)) throw new CliError(`a volume named ${q(name)} already exists in ${q(dir)}: choose another name`);
        const bs = pool.blockSize;
        const buf = Buffer.allocUnsafe(batchSize(bs, COPY_BUFFER));
        // Only the image's data ranges are read (SEEK_DATA/SEEK_HOLE); the write must fit before anything is
        // written: the blocks under the data ranges bound it, and only when that bound does not fit are the data
        // ranges read twice, to count the blocks that are not all zeros.
        const layout = fileLayout(fd, imageSize);
        let bound = 0;
        for (const r of layout) if (!r.hole) bound += Math.ceil(r.end / bs) - Math.floor(r.start / bs);
        try {
          preflightSpace(pool, dir, bound, { freshAscending: true });
        } catch (e) {
          const scan = new Progress(ctx.io, `scanning ${basename(image)}`, imageSize);
          let nonZero = 0;
          await eachFileChunk(fd, image, imageSize, 0, bs, buf, {
            data: async (chunk, pos) => {
              for (let o = 0; o < chunk.length; o += bs) if (!isZero(chunk.subarray(o, Math.min(chunk.length, o + bs)))) nonZero++;
              scan.update(pos + chunk.length);
              await checkpoint();
            },
            hole: () => undefined,
          });
          scan.done();
          if (nonZero === bound) throw e;
          preflightSpace(pool, dir, nonZero, { freshAscending: true });
        }
        const vol = pool.createThinSync(name, { size });
        createdId = vol.id;
        const sink = new VolumeSink(vol, 0, size, true, () => false);
        pool.storage.data.writeBehind?.(BULK_WRITE_BEHIND);
        const progress = new Progress(ctx.io, `importing ${basename(image)}`, imageSize);
        await eachFileChunk(fd, image, imageSize, 0, bs, buf, {
          data: async (chunk, pos) => {
            wroteData = true;
            sink.data(chunk, pos);
            progress.update(pos + chunk.length);
            await checkpoint();
          },
          hole: () => undefined,
        });
        progress.done();
        const written = vol.extents(0, size).reduce((n, e) => n + e.lengthBytes / bs, 0);
        return { id: vol.id, written, bs, blocks: Math.ceil(imageSize / bs) };
      },
      {
        interruptible: true,
        releaseOnError: () => wroteData,
        // The volume is this command's own (the name was free): the engine may have committed part of it when
        // metadata ran low, and a failed import keeps nothing.
        // (the id too: between this failure and the undo another command may have made a volume of that name).
        undoOnError: (pool) => {
          if (createdId !== null && pool.has(name) && pool.volume(name).id === createdId) pool.deleteSync(name);
        },
      },
    );
    await writeStdout(
      ctx.io,
      `imported ${q(image)} as volume ${name} (id ${res.id}, ${humanSize(size)}): ${res.written} of ${res.blocks} blocks provisioned (${humanSize(res.written * res.bs)}), all-zero blocks left unprovisioned\n`,
    );
  } finally {
    closeSync(fd);
  }
  return 0;
}

function samePath(a: string, b: string): boolean {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return false;
  }
}

export async function exportImage(ctx: Ctx, [dir, name, file]: string[]): Promise<number> {
  return exportVolume(ctx, dir, file, (pool) => pool.volume(name));
}

/**
 * Write the volume `pick` chooses in the opened pool to FILE as a raw image (holes for unprovisioned and all-zero
 * blocks). Used by `export` (a volume) and by `container export` / `image export` (a container's or an image's
 * volume, by its name).
 */
export async function exportVolume(ctx: Ctx, dir: string, file: string, pick: (pool: ThinPool) => Volume): Promise<number> {
  const out = resolvePath(ctx, file);
  const poolAbs = requirePoolDir(ctx, dir);
  for (const f of ['metadata', 'data', 'catalog.json']) {
    if (existsSync(out) && samePath(out, join(poolAbs, f)))
      throw new UsageError(`refusing to export over the pool's own ${f} file: choose another output file`);
  }
  if (existsSync(out) && statSync(out).isDirectory()) throw new UsageError(`${q(file)} is a directory: give a file name`);
  if (!existsSync(dirname(out))) throw new CliError(`cannot write ${q(file)}: directory ${q(dirname(file))} does not exist`);
  if (!statSync(dirname(out)).isDirectory())
    throw new CliError(`cannot write ${q(file)}: ${q(dirname(file))} is a file, not a directory: check the path`);
  const res = await withPool(ctx, dir, 'read', (pool) => {
    const vol = pick(pool);
    const size = vol.sizeBytes;
    const bs = pool.blockSize;
    const extents = vol.map();
    const total = extents.reduce((s, e) => s + e.lengthBytes, 0);
    const fd = openSync(out, 'w');
    let dataBlocks = 0;
    try {
      // Holes by ftruncate; only provisioned runs are read (in large reads), and only their blocks that are
      // not all zeros are written (consecutive ones in one write).
      ftruncateSync(fd, size);
      const buf = Buffer.allocUnsafe(batchSize(bs, COPY_BUFFER));
      const progress = new Progress(ctx.io, `exporting ${vol.label}`, total);
      let done = 0;
      for (const e of extents) {
        const end = Math.min(e.offsetBytes + e.lengthBytes, size);
        for (let pos = e.offsetBytes; pos < end; pos += buf.length) {
          const n = Math.min(buf.length, end - pos);
          const chunk = buf.subarray(0, n);
          vol.readSync(chunk, pos);
          let run = -1;
          for (let o = 0; ; o = Math.min(n, o + bs)) {
            if (o < n && !isZero(chunk.subarray(o, Math.min(n, o + bs)))) {
              dataBlocks++;
              if (run < 0) run = o;
              continue;
            }
            if (run >= 0) {
              writeFull(fd, chunk.subarray(run, o), pos + run);
              run = -1;
            }
            if (o === n) break;
          }
          done += n;
          progress.update(done);
        }
      }
      progress.done();
    } finally {
      closeSync(fd);
    }
    return { label: vol.label, size, dataBlocks, bs };
  });
  await writeStdout(
    ctx.io,
    `exported ${q(res.label)} to ${q(file)}: ${humanSize(res.size)}, ${res.dataBlocks} blocks of data (${humanSize(res.dataBlocks * res.bs)}), the rest sparse\n`,
  );
  return 0;
}
