// CRC-32C (Castagnoli), reflected, slice-by-8. `crc32c` takes and returns the raw register: dm-thin starts it at
// 0xFFFFFFFF and applies NO final XOR (spec 1.2).

const TABLE: usize = memory.data(8 * 256 * 4, 64);

export function crcInit(): void {
  for (let i: u32 = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = (c & 1) ? (c >>> 1) ^ 0x82F63B78 : c >>> 1;
    store<u32>(TABLE + (<usize>i << 2), c);
  }
  for (let i: u32 = 0; i < 256; i++) {
    let c = load<u32>(TABLE + (<usize>i << 2));
    for (let t: u32 = 1; t < 8; t++) {
      c = load<u32>(TABLE + (<usize>(c & 0xff) << 2)) ^ (c >>> 8);
      store<u32>(TABLE + (<usize>t << 10) + (<usize>i << 2), c);
    }
  }
}

// @ts-ignore: decorator
@inline function T(t: usize, x: u32): u32 {
  return load<u32>(TABLE + (t << 10) + (<usize>x << 2));
}

export function crc32c(crc: u32, p: usize, len: usize): u32 {
  const end = p + len;
  while (p + 8 <= end) {
    const a = load<u32>(p) ^ crc;
    const b = load<u32>(p, 4);
    crc = T(7, a & 0xff) ^ T(6, (a >>> 8) & 0xff) ^ T(5, (a >>> 16) & 0xff) ^ T(4, a >>> 24) ^
      T(3, b & 0xff) ^ T(2, (b >>> 8) & 0xff) ^ T(1, (b >>> 16) & 0xff) ^ T(0, b >>> 24);
    p += 8;
  }
  while (p < end) {
    crc = T(0, (crc ^ <u32>load<u8>(p)) & 0xff) ^ (crc >>> 8);
    p++;
  }
  return crc;
}

/** The stored checksum of a 4096-byte metadata block: crc32c(bytes 4..4095) ^ salt. */
export function blockChecksum(p: usize, salt: u32): u32 {
  return crc32c(0xFFFFFFFF, p + 4, 4092) ^ salt;
}
