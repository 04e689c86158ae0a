/**
 * The four kinds of metadata block (spec 1.1): one validator each, keyed by salt. Btree nodes get the
 * structural checks of nodeCheck on top (flags, max_entries, nr_entries, value size, key order).
 */
import { BlockKind, Salt } from '../core/abi.js';

export { BlockKind };

/** Checksum salt per BlockKind. */
export const SALT: readonly number[] = [Salt.Superblock, Salt.Node, Salt.Bitmap, Salt.Index];

export const KIND_NAME: readonly string[] = ['superblock', 'btree node', 'space map bitmap', 'metadata index block'];

export const BLOCK_SIZE = 4096;
