/** A random source returning floats in [0, 1), like Math.random. */
export type Rng = () => number;

/** A small seeded generator (mulberry32) for reproducible random tests. */
export function seededRng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `length` reproducible random bytes: each a whole value of seededRng(seed) scaled to 0-255. */
export function seededBytes(length: number, seed: number): Uint8Array {
  const rng = seededRng(seed);
  const b = new Uint8Array(length);
  for (let i = 0; i < length; i++) b[i] = Math.floor(rng() * 256);
  return b;
}
