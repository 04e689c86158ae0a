/** trim, extend, space: managing a pool's space (issue 9). */
import { CliError, Progress, UsageError, q, writeStdout } from '../io.js';
import type { Ctx } from '../io.js';
import { humanSize, sizeArg, withPool } from '../pool.js';

export async function trim(ctx: Ctx, [dir]: string[]): Promise<number> {
  const { released, bs } = await withPool(ctx, dir, 'write', (pool) => {
    const progress = new Progress(ctx.io, 'trim', pool.status().dataBlocks.total * pool.blockSize);
    let warned = '';
    pool.on('warning', (w) => {
      warned = w.message;
    });
    const n = pool.trimSync((done, total) => progress.update((done / total) * pool.status().dataBlocks.total * pool.blockSize));
    progress.done();
    if (warned) throw new CliError(`${warned}: nothing was released`);
    return { released: n, bs: pool.blockSize };
  });
  await writeStdout(ctx.io, `released ${released} unused blocks (${humanSize(released * bs)}) of ${q(dir)}'s data file\n`);
  return 0;
}

export async function extend(ctx: Ctx, [dir]: string[], opts: Record<string, unknown>): Promise<number> {
  if (opts.size === undefined && opts.metadataSize === undefined) throw new UsageError('give --size and/or --metadata-size');
  const size = opts.size === undefined ? undefined : sizeArg(opts.size, '--size');
  const metadataSize = opts.metadataSize === undefined ? undefined : sizeArg(opts.metadataSize, '--metadata-size');
  const MAX_METADATA_BYTES = 4161600 * 4096;
  if (metadataSize !== undefined && metadataSize > MAX_METADATA_BYTES) {
    throw new UsageError(
      `--metadata-size ${humanSize(metadataSize)} is above the dm-thin maximum of ${humanSize(MAX_METADATA_BYTES)} (4161600 blocks)`,
    );
  }
  const st = await withPool(ctx, dir, 'write', (pool) => {
    const before = pool.status();
    if (size !== undefined && Math.floor(size / pool.blockSize) < before.dataBlocks.total) {
      throw new CliError(
        `--size ${humanSize(size)} is smaller than the data device (${humanSize(before.dataBlocks.total * pool.blockSize)}): shrinking is not supported`,
      );
    }
    if (metadataSize !== undefined && Math.floor(metadataSize / 4096) < before.metadataBlocks.total) {
      throw new CliError(
        `--metadata-size ${humanSize(metadataSize)} is smaller than the metadata device (${humanSize(before.metadataBlocks.total * 4096)}): shrinking is not supported`,
      );
    }
    pool.extendSync({ size, metadataSize });
    return { before, after: pool.status(), bs: pool.blockSize };
  });
  await writeStdout(
    ctx.io,
    `data: ${humanSize(st.before.dataBlocks.total * st.bs)} -> ${humanSize(st.after.dataBlocks.total * st.bs)}\n` +
      `metadata: ${humanSize(st.before.metadataBlocks.total * 4096)} -> ${humanSize(st.after.metadataBlocks.total * 4096)}\n`,
  );
  return 0;
}

function percents(text: unknown, option: string): number[] {
  const words = String(text)
    .split(',')
    .map((s) => s.trim());
  const parts = words.map((w) => (/^\d+(\.\d+)?$/.test(w) ? Number(w) : NaN));
  if (parts.length === 0 || parts.some((p) => !(p > 0 && p <= 100)))
    throw new UsageError(`${option} takes percentages in (0, 100], e.g. 80,90,95`);
  return parts;
}

function onePercent(text: unknown, option: string, max = 100): number {
  const w = String(text).trim();
  const n = /^\d+(\.\d+)?$/.test(w) ? Number(w) : NaN;
  if (!(n > 0 && n <= max)) throw new UsageError(`${option} takes one percentage in (0, ${max}], got ${q(w)}`);
  return n;
}

function onOff(text: unknown, option: string): boolean {
  if (text === 'on' || text === 'true' || text === 'yes') return true;
  if (text === 'off' || text === 'false' || text === 'no') return false;
  throw new UsageError(`${option} is on or off, got ${q(String(text))}`);
}

/** Show or change the pool's space policy. */
export async function space(ctx: Ctx, [dir]: string[], opts: Record<string, unknown>): Promise<number> {
  const changing = [
    'discardPassdown',
    'dataThresholds',
    'metadataThresholds',
    'autoExtend',
    'autoExtendAt',
    'autoExtendPercent',
    'autoExtendMax',
    'whenFull',
  ].some((k) => opts[k] !== undefined);
  const settings = await withPool(ctx, dir, changing ? 'write' : 'read', (pool) => {
    if (!changing) return pool.spaceSettings;
    const cur = pool.spaceSettings;
    const ae = { ...cur.autoExtend };
    if (opts.autoExtend !== undefined) ae.enabled = onOff(opts.autoExtend, '--auto-extend');
    if (opts.autoExtendAt !== undefined) ae.atPercent = onePercent(opts.autoExtendAt, '--auto-extend-at');
    if (opts.autoExtendPercent !== undefined) ae.percent = onePercent(opts.autoExtendPercent, '--auto-extend-percent', 1000);
    if (opts.autoExtendMax !== undefined) ae.maxBytes = sizeArg(opts.autoExtendMax, '--auto-extend-max');
    if (ae.enabled && ae.maxBytes <= pool.status().dataBlocks.total * pool.blockSize) {
      throw new UsageError('--auto-extend on needs --auto-extend-max larger than the data device');
    }
    const whenFull = opts.whenFull === undefined ? cur.whenFull : opts.whenFull;
    if (whenFull !== 'error' && whenFull !== 'wait') throw new UsageError('--when-full is error or wait');
    return pool.configureSpace({
      discardPassdown: opts.discardPassdown === undefined ? cur.discardPassdown : onOff(opts.discardPassdown, '--discard-passdown'),
      thresholds: {
        data: opts.dataThresholds === undefined ? cur.thresholds.data : percents(opts.dataThresholds, '--data-thresholds'),
        metadata:
          opts.metadataThresholds === undefined ? cur.thresholds.metadata : percents(opts.metadataThresholds, '--metadata-thresholds'),
      },
      autoExtend: ae,
      whenFull,
    });
  });
  if (opts.json) {
    await writeStdout(ctx.io, JSON.stringify(settings, null, 2) + '\n');
    return 0;
  }
  const ae = settings.autoExtend;
  await writeStdout(
    ctx.io,
    `discard passdown:    ${settings.discardPassdown ? 'on' : 'off'}\n` +
      `data thresholds:     ${settings.thresholds.data.join(', ')} %\n` +
      `metadata thresholds: ${settings.thresholds.metadata.join(', ')} %\n` +
      `auto-extend:         ${ae.enabled ? `on: at ${ae.atPercent}% grow by ${ae.percent}% up to ${humanSize(ae.maxBytes)}` : 'off'}\n` +
      `when full:           ${settings.whenFull}\n`,
  );
  return 0;
}
