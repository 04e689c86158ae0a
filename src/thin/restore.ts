/**
 * thin_restore (0.9.0): write metadata describing an `XmlSuperblock` onto a block device.
 *
 * - The device is formatted (its size fixes the number of metadata blocks), every device is created with its
 *   own, unshared level-1 tree (as thin_restore builds them), every mapping is inserted with its XML time and
 *   one data reference per mapping, the details (transaction, creation_time, snap_time) and the superblock's
 *   time / transaction / flags / version are set, and the whole is committed once.
 * - `mapped_blocks` of the XML is ignored and recounted, like thin_restore.
 * - The input is validated before anything is written, with thin_restore's wording where it has one:
 *   `mapping beyond end of data device (B >= N)`, `Device already exists`. All errors are ThinpoolError EINVAL.
 * - The XML `metadata_snap` attribute is ignored (thin_restore copies it verbatim as a held-root pointer, which
 *   can only produce a dangling reference).
 */
import type { BlockDevice } from '../io/block-device.js';
import { ThinpoolError } from '../errors.js';
import { MAX_DEVICE_ID, MAX_TIME, ThinMetadata } from './metadata.js';
import { parseThinXmlStream, type XmlDevice, type XmlMapping, type XmlSuperblock } from './thin-xml.js';

export interface RestoreOptions {
  /** Metadata cache size in 4 KiB blocks (see ThinMetadata). */
  cacheBlocks?: number;
  /** Overrides like thin_restore's --transaction-id / --data-block-size / --nr-data-blocks. */
  transactionId?: number;
  dataBlockSize?: number;
  nrDataBlocks?: number;
}

function invalid(msg: string): ThinpoolError {
  return new ThinpoolError('EINVAL', msg);
}

function validate(sb: XmlSuperblock, nrData: number, dataBlockSize: number): void {
  if (!Number.isSafeInteger(nrData) || nrData < 0) throw invalid(`bad nr_data_blocks ${nrData}`);
  if (!Number.isInteger(dataBlockSize) || dataBlockSize <= 0 || dataBlockSize > 0xffffffff) {
    throw invalid(`bad data_block_size ${dataBlockSize}`);
  }
  if (!Number.isInteger(sb.time) || sb.time < 0 || sb.time > 0xffffffff) throw invalid(`bad superblock time ${sb.time}`);
  const ids = new Set<number>();
  for (const dev of sb.devices) {
    if (!Number.isInteger(dev.devId) || dev.devId < 0 || dev.devId > MAX_DEVICE_ID) {
      throw invalid(`thin device id ${dev.devId} out of range 0..${MAX_DEVICE_ID}`);
    }
    if (ids.has(dev.devId)) throw invalid('Device already exists');
    ids.add(dev.devId);
    for (const m of dev.mappings) checkMapping(m, dev.devId, nrData);
  }
}

function checkMapping(m: XmlMapping, devId: number, nrData: number): void {
  if (m.length === 0) return;
  if (!(Number.isSafeInteger(m.vblock) && Number.isSafeInteger(m.dblock) && Number.isSafeInteger(m.length)) || m.length < 0) {
    throw invalid(`bad mapping at virtual block ${m.vblock} of thin device ${devId}`);
  }
  const last = m.dblock + m.length - 1;
  if (last >= nrData) throw invalid(`mapping beyond end of data device (${Math.max(m.dblock, nrData)} >= ${nrData})`);
  if (!Number.isInteger(m.time) || m.time < 0 || m.time > MAX_TIME) {
    throw invalid(`mapping time ${m.time} out of range (thin device ${devId}, virtual block ${m.vblock})`);
  }
}

export function restoreMetadata(dev: BlockDevice, sb: XmlSuperblock, opts: RestoreOptions = {}): void {
  const nrData = opts.nrDataBlocks ?? sb.nrDataBlocks;
  const dataBlockSize = opts.dataBlockSize ?? sb.dataBlockSize;
  const transactionId = opts.transactionId ?? sb.transaction;
  validate(sb, nrData, dataBlockSize);
  const md = ThinMetadata.format(dev, {
    nrDataBlocks: nrData,
    dataBlockSectors: dataBlockSize,
    cacheBlocks: opts.cacheBlocks,
  });
  const devices = [...sb.devices].sort((a, b) => a.devId - b.devId);
  for (const d of devices) {
    md.createThin(d.devId);
    const runs = [...d.mappings].sort((a, b) => a.vblock - b.vblock);
    for (const m of runs) {
      for (let i = 0; i < m.length; i++) md.insertMappingRaw(d.devId, m.vblock + i, m.dblock + i, m.time);
    }
    md.setDeviceDetails(d.devId, {
      transactionId: d.transaction,
      creationTime: d.creationTime,
      snapshottedTime: d.snapTime,
    });
  }
  md.setSuperblockFields({ time: sb.time, transactionId, flags: sb.flags, version: sb.version });
  md.commit();
}

/** What a streamed restore wrote. */
export interface RestoreStats {
  devices: number;
  mappings: number;
  nrDataBlocks: number;
  dataBlockSize: number;
}

/**
 * thin_restore from XML read piece by piece (`first`, then `more()` until null), inserting each mapping as it is
 * parsed: memory is the metadata cache and one piece, whatever the size of the XML. `device(sb)` is called once
 * the superblock tag is read (nr_data_blocks and data_block_size known, after the overrides) and returns the
 * metadata device to format. Same checks and messages as restoreMetadata, made as the input arrives: on an error
 * the device holds a partial, uncommitted restore (the caller discards it). Mappings are inserted in document
 * order (thin_restore's XML need not be sorted); the result is committed once, at the end.
 */
export function restoreMetadataStream(
  device: (sb: { nrDataBlocks: number; dataBlockSize: number }) => BlockDevice,
  first: string,
  more: () => string | null,
  opts: RestoreOptions = {},
): RestoreStats {
  let md: ThinMetadata | undefined;
  let top: XmlSuperblock | undefined;
  let cur: XmlDevice | undefined;
  const stats: RestoreStats = { devices: 0, mappings: 0, nrDataBlocks: 0, dataBlockSize: 0 };
  parseThinXmlStream(
    first,
    more,
    {
      superblock: (sb) => {
        const nrData = opts.nrDataBlocks ?? sb.nrDataBlocks;
        const dataBlockSize = opts.dataBlockSize ?? sb.dataBlockSize;
        validate({ ...sb, devices: [] }, nrData, dataBlockSize);
        stats.nrDataBlocks = nrData;
        stats.dataBlockSize = dataBlockSize;
        top = sb;
        md = ThinMetadata.format(device({ nrDataBlocks: nrData, dataBlockSize }), {
          nrDataBlocks: nrData,
          dataBlockSectors: dataBlockSize,
          cacheBlocks: opts.cacheBlocks,
        });
      },
      device: (d) => {
        validate({ ...top!, devices: [{ ...d, mappings: [] }] }, stats.nrDataBlocks, stats.dataBlockSize);
        md!.createThin(d.devId);
        stats.devices++;
        cur = d;
      },
      mapping: (m) => {
        checkMapping(m, cur!.devId, stats.nrDataBlocks);
        for (let i = 0; i < m.length; i++) md!.insertMappingRaw(cur!.devId, m.vblock + i, m.dblock + i, m.time);
        stats.mappings += m.length;
      },
      deviceEnd: () => {
        const d = cur!;
        md!.setDeviceDetails(d.devId, { transactionId: d.transaction, creationTime: d.creationTime, snapshottedTime: d.snapTime });
        cur = undefined;
      },
    },
    { checkDataBounds: opts.nrDataBlocks === undefined },
  );
  md!.setSuperblockFields({
    time: top!.time,
    transactionId: opts.transactionId ?? top!.transaction,
    flags: top!.flags,
    version: top!.version,
  });
  md!.commit();
  return stats;
}
