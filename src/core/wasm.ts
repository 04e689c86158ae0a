/**
 * The WASM core instance: one per open pool. Memory is created by the host with a fixed size
 * (initial == maximum), so every typed-array view made here stays valid for the life of the instance.
 *
 * Layout (bytes):  [0, 64 KiB) static data of the module | PARAM 4 KiB | SCRATCH 4 KiB | slots (n x 4 KiB)
 *                  | metadata counts (u32 x nrMetaBlocks) | committed flags (u8 x nrMetaBlocks)
 *                  | slot table (block -> slot, 16-byte entries, open addressing) | slot reference bits (u8 x n)
 *
 * Hot exports are called raw (`instance.exports`), not through the loader's wrapper closures (toolchain notes:
 * 3 ns against 8-10 ns per call).
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { instantiateSync } from '@assemblyscript/loader';
import { ThinpoolError } from '../errors.js';

export interface CoreExports {
  crcInit(): void;
  crc32c(crc: number, p: number, len: number): number;
  blockChecksum(p: number, salt: number): number;
  blockPrepare(p: number, salt: number): void;
  blockCheck(p: number, salt: number, lo: number, hi: number): number;
  heapBase(): number;
  maxEntriesFor(vs: number): number;
  nodeInit(p: number, lo: number, hi: number, flags: number, vs: number): void;
  nodeCheck(p: number, lo: number, hi: number, leafVs: number): number;
  nodeLowerBound(p: number, keyLo: number, keyHi: number): number;
  nodeInsertAt(p: number, i: number, keyLo: number, keyHi: number, src: number): void;
  nodeRemoveAt(p: number, i: number): void;
  nodeSplitInto(src: number, dst: number, keep: number): void;
  nodeMergeInto(dst: number, src: number): void;
  nodeRedistribute(left: number, right: number, target: number): void;
  bitmapGet(p: number, i: number): number;
  bitmapSet(p: number, i: number, v: number): void;
  bitmapFindFree(cur: number, com: number, from: number, to: number): number;
  bitmapCountFree(p: number, n: number): number;
  bitmapFillFromCounts(p: number, counts: number, base: number, n: number): void;
  countsFindFree(counts: number, committed: number, from: number, to: number): number;
  setCacheLayout(table: number, mask: number, slots: number, refs: number): void;
  btreeLookup(rootLo: number, rootHi: number, keyLo: number, keyHi: number, leafVs: number): number;
}

/** Host callback behind the `host.node` import: address of a validated node, or 0 after recording an error. */
export type NodeProvider = (blockLo: number, blockHi: number, leafVs: number) => number;

const STATIC_BYTES = 64 * 1024;
let compiled: WebAssembly.Module | undefined;

function module(): WebAssembly.Module {
  if (!compiled) {
    // src/core (tests, tsx) and dist/src/core (built) sit at different depths below the package root.
    const candidates = ['../../build/thinpool.wasm', '../../../build/thinpool.wasm']
      .map((rel) => fileURLToPath(new URL(rel, import.meta.url)));
    const path = candidates.find((p) => existsSync(p));
    if (!path) throw new ThinpoolError('EFAILED', `WASM core not built (${candidates[0]}): run npm install`);
    compiled = new WebAssembly.Module(readFileSync(path));
  }
  return compiled;
}

export class Core {
  readonly x: CoreExports;
  readonly memory: WebAssembly.Memory;
  readonly u8: Uint8Array;
  readonly u32: Uint32Array;
  readonly dv: DataView;
  /** 4 KiB parameter area (values passed into node primitives). */
  readonly param: number;
  /** 4 KiB scratch block. */
  readonly scratch: number;
  readonly slotBase: number;
  readonly nrSlots: number;
  readonly countsBase: number;
  readonly committedBase: number;
  readonly nrMetaBlocks: number;
  readonly tableBase: number;
  readonly tableCap: number;
  readonly refBase: number;
  /** Set by the block cache: serves `host.node`. */
  nodeProvider: NodeProvider = () => 0;

  constructor(nrSlots: number, nrMetaBlocks: number) {
    this.nrSlots = nrSlots;
    this.nrMetaBlocks = nrMetaBlocks;
    this.param = STATIC_BYTES;
    this.scratch = STATIC_BYTES + 4096;
    this.slotBase = STATIC_BYTES + 8192;
    this.countsBase = this.slotBase + nrSlots * 4096;
    this.committedBase = this.countsBase + nrMetaBlocks * 4;
    this.tableBase = Math.ceil((this.committedBase + nrMetaBlocks) / 16) * 16;
    let cap = 16;
    while (cap < nrSlots * 2) cap *= 2;
    this.tableCap = cap;
    this.refBase = this.tableBase + cap * 16;
    const total = this.refBase + nrSlots;
    const pages = Math.ceil(total / 65536);
    if (pages > 65536) throw new ThinpoolError('EINVAL', `metadata cache and counts need ${total} bytes: above 4 GiB`);
    this.memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
    const imports = {
      env: {
        memory: this.memory,
        abort: (_m: number, _f: number, line: number, col: number) => {
          throw new ThinpoolError('EFAILED', `WASM core aborted at ${line}:${col}`);
        },
      },
      host: { node: (lo: number, hi: number, vs: number) => this.nodeProvider(lo, hi, vs) },
    };
    const inst = instantiateSync<Record<string, unknown>>(module(), imports as never);
    this.x = inst.instance.exports as unknown as CoreExports;
    if (this.x.heapBase() > STATIC_BYTES) throw new ThinpoolError('EFAILED', 'WASM static data exceeds 64 KiB');
    this.u8 = new Uint8Array(this.memory.buffer);
    this.u32 = new Uint32Array(this.memory.buffer);
    this.dv = new DataView(this.memory.buffer);
    this.x.crcInit();
    this.x.setCacheLayout(this.tableBase, this.tableCap - 1, this.slotBase, this.refBase);
  }

  slotAddr(slot: number): number {
    return this.slotBase + slot * 4096;
  }

  /** u64 at addr as a JS number (exact below 2^53). */
  u64(addr: number): number {
    return this.u32[addr >>> 2] + this.u32[(addr >>> 2) + 1] * 4294967296;
  }

  setU64(addr: number, v: number): void {
    this.u32[addr >>> 2] = v >>> 0;
    this.u32[(addr >>> 2) + 1] = Math.floor(v / 4294967296);
  }
}
