/**
 * The four kinds of metadata block (spec 1.1): one validator each, keyed by salt. Btree nodes get the
 * structural checks of nodeCheck on top (flags, max_entries, nr_entries, value size, key order).
 */
export const enum BlockKind {
  Superblock = 0,
  Node = 1,
  Bitmap = 2,
  Index = 3,
}

export const SALT: readonly number[] = [160774, 121107, 240779, 160478];

export const KIND_NAME: readonly string[] = ['superblock', 'btree node', 'space map bitmap', 'metadata index block'];

export const BLOCK_SIZE = 4096;
