/**
 * The device-details codec (spec 5.1): the 24-byte value of the device-details tree, keyed by thin device id:
 * mapped_blocks u64, transaction_id u64, creation_time u32, snapshotted_time u32, little-endian.
 *
 * Contract: for mappedBlocks and transactionId below 2^53 and times below 2^32, write then read gives the
 * same details back. Values sit 4-aligned in the core's memory (btree values do); no range checks here.
 */
import { RefKind } from '../core/abi.js';
import { readU64, writeU64, type ValueType } from '../pd/value-types.js';

export interface DeviceDetails {
  mappedBlocks: number;
  transactionId: number;
  creationTime: number;
  snapshottedTime: number;
}

/** The device-details tree's values (they reference nothing). */
export const DEVICE_DETAILS: ValueType<DeviceDetails> = {
  size: 24,
  ref: RefKind.None,
  read: (mem, a) => ({
    mappedBlocks: readU64(mem, a),
    transactionId: readU64(mem, a + 8),
    creationTime: mem[(a >>> 2) + 4],
    snapshottedTime: mem[(a >>> 2) + 5],
  }),
  write: (mem, a, d) => {
    writeU64(mem, a, d.mappedBlocks);
    writeU64(mem, a + 8, d.transactionId);
    mem[(a >>> 2) + 4] = d.creationTime >>> 0;
    mem[(a >>> 2) + 5] = d.snapshottedTime >>> 0;
  },
};
