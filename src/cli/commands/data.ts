/** write, read, import, export: moving bytes in and out of volumes. */
import { closeSync, existsSync, fstatSync, ftruncateSync, openSync, readSync, realpathSync, statSync, writeSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import type { Readable } from 'node:stream';
import { CliError, Progress, UsageError, q, write as writeOut } from '../io.js';
import type { Ctx } from '../io.js';
import { blocksNeeded, checkName, checkpoint, humanSize, preflightSpace, requirePoolDir, resolvePath, sizeArg, withPool } from '../pool.js';

const CHUNK = 1024 * 1024;

/** Batch of whole blocks read at once (at least one block, about 1 MiB). */
function batchSize(bs: number): number {
  return bs >= CHUNK ? bs : Math.floor(CHUNK / bs) * bs;
}

function isZero(buf: Buffer, zero: Buffer): boolean {
  return buf.length <= zero.length && Buffer.compare(buf, zero.subarray(0, buf.length)) === 0;
}

function readFully(fd: number, buf: Uint8Array, pos: number): number {
  let done = 0;
  while (done < buf.length) {
    const n = readSync(fd, buf, done, buf.length - done, pos + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

async function readStream(stream: Readable, limit: number, what: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    total += b.length;
    if (total > limit) throw new CliError(`${what} is longer than the ${humanSize(limit)} left in the volume; nothing was written: write less or resize the volume first`);
    parts.push(b);
  }
  return Buffer.concat(parts);
}

export async function write(ctx: Ctx, [dir, name, file]: string[], opts: Record<string, unknown>): Promise<number> {
  const offset = sizeArg(opts.offset, '--offset', { allowZero: true });
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
  try {
    requirePoolDir(ctx, dir);
    const written = await withPool(ctx, dir, 'write', async (pool) => {
      const vol = pool.volume(name);
      if (vol.readOnly) throw new CliError(`volume ${q(vol.label)} is read-only`);
      const size = vol.sizeBytes;
      if (offset > size) throw new UsageError(`--offset ${opts.offset as string} is beyond the end of volume ${q(vol.label)} (${humanSize(size)})`);
      let data: Buffer | null = null;
      if (fromStdin) {
        data = await readStream(ctx.io.stdin, size - offset, 'standard input');
        inputSize = data.length;
      } else if (offset + inputSize > size) {
        throw new CliError(`${q(file)} (${humanSize(inputSize)}) does not fit in volume ${q(vol.label)} at offset ${offset} (${humanSize(size)}); nothing was written: resize the volume first ("thinpool resize")`);
      }
      preflightSpace(pool, dir, blocksNeeded(pool, vol.id, offset, inputSize));
      const progress = new Progress(ctx.io, `writing ${vol.label}`, inputSize);
      if (data !== null) {
        for (let done = 0; done < data.length; done += CHUNK) {
          vol.writeSync(data.subarray(done, Math.min(data.length, done + CHUNK)), offset + done);
          progress.update(done);
          await checkpoint();
        }
      } else {
        const buf = Buffer.alloc(CHUNK);
        for (let done = 0; done < inputSize;) {
          const n = readFully(fd, buf.subarray(0, Math.min(CHUNK, inputSize - done)), done);
          if (n === 0) break;
          vol.writeSync(buf.subarray(0, n), offset + done);
          done += n;
          progress.update(done);
          await checkpoint();
        }
      }
      progress.done();
      return { n: inputSize, label: vol.label };
    }, { interruptible: true });
    await writeOut(ctx.io.stdout, `wrote ${written.n} bytes to ${q(written.label)} at offset ${offset}\n`);
  } finally {
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
    if (offset > size) throw new UsageError(`--offset ${opts.offset as string} is beyond the end of volume ${q(vol.label)} (${humanSize(size)})`);
    const len = length ?? size - offset;
    if (offset + len > size) throw new UsageError(`--offset ${offset} + --length ${len} runs past the end of volume ${q(vol.label)} (${size} bytes)`);
    for (let done = 0; done < len;) {
      const n = Math.min(CHUNK, len - done);
      const buf = Buffer.alloc(n);
      vol.readSync(buf, offset + done);
      await writeOut(ctx.io.stdout, buf);
      done += n;
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
    throw new UsageError(`--format ${q(String(opts.format))} is not supported: import takes raw images (--format raw); convert others with "qemu-img convert -O raw IMAGE IMAGE.raw"`);
  }
  const path = resolvePath(ctx, image);
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file: check the path'
      : code === 'ENOTDIR' ? 'a part of the path is a file, not a directory: check the path'
        : code === 'EACCES' || code === 'EPERM' ? 'permission denied: make it readable for this user'
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
      throw new CliError(`${q(image)} is a ${known.format} image, not a raw disk image: convert it with "qemu-img convert -f ${known.qemu} -O raw ${image} ${image}.raw" and import that (or give --format raw to import the file's bytes as they are)`);
    }
    requirePoolDir(ctx, dir);
    const res = await withPool(ctx, dir, 'write', async (pool) => {
      if (pool.has(name)) throw new CliError(`a volume named ${q(name)} already exists in ${q(dir)}: choose another name`);
      const bs = pool.blockSize;
      const batch = batchSize(bs);
      const buf = Buffer.alloc(batch);
      const zero = Buffer.alloc(bs);
      // Pass 1: which blocks hold data (the write must fit before anything is written).
      const scan = new Progress(ctx.io, `scanning ${basename(image)}`, imageSize);
      let nonZero = 0;
      for (let pos = 0; pos < imageSize; pos += batch) {
        const n = readFully(fd, buf.subarray(0, Math.min(batch, imageSize - pos)), pos);
        for (let o = 0; o < n; o += bs) if (!isZero(buf.subarray(o, Math.min(n, o + bs)), zero)) nonZero++;
        scan.update(pos + n);
        await checkpoint();
      }
      scan.done();
      preflightSpace(pool, dir, nonZero);
      const vol = pool.createThinSync(name, { size });
      // Pass 2: write the blocks with data.
      const progress = new Progress(ctx.io, `importing ${basename(image)}`, imageSize);
      let written = 0;
      for (let pos = 0; pos < imageSize; pos += batch) {
        const n = readFully(fd, buf.subarray(0, Math.min(batch, imageSize - pos)), pos);
        for (let o = 0; o < n; o += bs) {
          const blk = buf.subarray(o, Math.min(n, o + bs));
          if (isZero(blk, zero)) continue;
          vol.writeSync(blk, pos + o);
          written++;
        }
        progress.update(pos + n);
        await checkpoint();
      }
      progress.done();
      return { id: vol.id, written, bs, blocks: Math.ceil(imageSize / bs) };
    }, { interruptible: true });
    await writeOut(ctx.io.stdout, `imported ${q(image)} as volume ${name} (id ${res.id}, ${humanSize(size)}): ${res.written} of ${res.blocks} blocks provisioned (${humanSize(res.written * res.bs)}), all-zero blocks left unprovisioned\n`);
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
  const out = resolvePath(ctx, file);
  const poolAbs = requirePoolDir(ctx, dir);
  for (const f of ['metadata', 'data', 'catalog.json']) {
    if (existsSync(out) && samePath(out, join(poolAbs, f))) throw new UsageError(`refusing to export over the pool's own ${f} file: choose another output file`);
  }
  if (existsSync(out) && statSync(out).isDirectory()) throw new UsageError(`${q(file)} is a directory: give a file name`);
  if (!existsSync(dirname(out))) throw new CliError(`cannot write ${q(file)}: directory ${q(dirname(file))} does not exist`);
  if (!statSync(dirname(out)).isDirectory()) throw new CliError(`cannot write ${q(file)}: ${q(dirname(file))} is a file, not a directory: check the path`);
  const res = await withPool(ctx, dir, 'read', (pool) => {
    const vol = pool.volume(name);
    const size = vol.sizeBytes;
    const bs = pool.blockSize;
    const extents = vol.map();
    const total = extents.reduce((s, e) => s + e.lengthBytes, 0);
    const fd = openSync(out, 'w');
    let dataBlocks = 0;
    try {
      ftruncateSync(fd, size);
      const batch = batchSize(bs);
      const buf = Buffer.alloc(batch);
      const zero = Buffer.alloc(bs);
      const progress = new Progress(ctx.io, `exporting ${vol.label}`, total);
      let done = 0;
      for (const e of extents) {
        const end = Math.min(e.offsetBytes + e.lengthBytes, size);
        for (let pos = e.offsetBytes; pos < end; pos += batch) {
          const n = Math.min(batch, end - pos);
          const chunk = buf.subarray(0, n);
          vol.readSync(chunk, pos);
          for (let o = 0; o < n; o += bs) {
            const blk = chunk.subarray(o, Math.min(n, o + bs));
            if (isZero(blk, zero)) continue;
            writeSync(fd, blk, 0, blk.length, pos + o);
            dataBlocks++;
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
  await writeOut(ctx.io.stdout, `exported ${q(res.label)} to ${q(file)}: ${humanSize(res.size)}, ${res.dataBlocks} blocks of data (${humanSize(res.dataBlocks * res.bs)}), the rest sparse\n`);
  return 0;
}
