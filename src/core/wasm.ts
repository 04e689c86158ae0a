/**
 * The WASM core instance: one per open pool. Memory is created by the host with a fixed size
 * (initial == maximum), so every typed-array view made here stays valid for the life of the instance.
 *
 * Layout (bytes):  [0, 64 KiB) static data of the module | PARAM 4 KiB | SCRATCH 4 KiB | STATE 4 KiB
 *                  | WORK (tree deletion stack) | slots (n x 4 KiB)
 *                  | per metadata block: counts u32, committed u8, txflags u8, touched-list u32
 *                  | slot table (block -> slot, 16-byte entries, open addressing)
 *                  | per slot: reference bit u8, dirty u8, kind u8, op mark u32
 *                  | data space map table: 16 bytes per data bitmap, at most one per metadata block
 *
 * Hot exports are called raw (`instance.exports`), not through the loader's wrapper closures (toolchain notes:
 * 3 ns against 8-10 ns per call).
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { instantiateSync } from '@assemblyscript/loader';
import { ThinpoolError } from '../errors.js';
import { Status, MAX_DEPTH, S_RESULT, S_HIT, S_ERR_BLOCK, S_NR_META, S_D_NR_BLOCKS, S_D_REF_ROOT, DSM_ENTRY_BYTES } from './abi.js';
import { checkAbi } from './abi-check.js';
import { statusText } from './status.js';
import { TWO32 } from './u64.js';

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
  setCacheLayout(table: number, mask: number, slots: number, refs: number): void;
  setTxLayout(
    state: number,
    counts: number,
    committed: number,
    txflags: number,
    touched: number,
    dirty: number,
    kinds: number,
    marks: number,
    scratch: number,
    work: number,
    workBytes: number,
  ): void;
  txReset(): void;
  btreeLookup(rootLo: number, rootHi: number, keyLo: number, keyHi: number, leafVs: number): number;
  btreeInsert(rootLo: number, rootHi: number, keyLo: number, keyHi: number, src: number, leafVs: number, ref: number): number;
  btreeRemove(rootLo: number, rootHi: number, keyLo: number, keyHi: number, leafVs: number, ref: number): number;
  btreeDel(rootLo: number, rootHi: number, leafVs: number, ref: number): number;
  tmNewNode(flags: number, vs: number, leafVs: number): number;
  tmNewBlock(kind: number): number;
  tmDecRef(lo: number, hi: number): number;
  smInc(lo: number, hi: number): number;
  smDec(lo: number, hi: number): number;
  smAlloc(): number;
  smReserve(): number;
  smFreeBlocks(): number;
  setDataSpaceMapLayout(table: number, capacity: number): void;
  dsmCount(lo: number, hi: number): number;
  dsmInc(lo: number, hi: number): number;
  dsmDec(lo: number, hi: number): number;
  dsmAlloc(): number;
  dsmExtend(lo: number, hi: number): number;
  dsmLoad(nrLo: number, nrHi: number, refLo: number, refHi: number): number;
  dsmLoadBitmap(j: number, lo: number, hi: number): number;
  dsmAfterCommit(): void;
  abiFieldCount(): number;
  abiField(i: number): number;
}

/**
 * What the WASM core asks of the host (its imports). Each returns 0 after recording the error on the host's
 * side (WASM cannot carry it): node/block give the address of a validated resident block, create a zeroed
 * dirty slot for a newly allocated block, forget drops a freed block. dataFreed is told of every data block
 * whose count fell to 0 (it cannot fail).
 */
export interface CoreHost {
  node(blockLo: number, blockHi: number, leafVs: number): number;
  block(blockLo: number, blockHi: number, kind: number): number;
  create(blockLo: number, blockHi: number, kind: number, leafVs: number): number;
  forget(blockLo: number, blockHi: number): void;
  dataFreed(blockLo: number, blockHi: number): void;
}

const NO_HOST: CoreHost = {
  node: () => 0,
  block: () => 0,
  create: () => 0,
  forget: () => undefined,
  dataFreed: () => undefined,
};

const STATIC_BYTES = 64 * 1024;
/** Bytes of the work stack of tree deletions (16 per entry; 16 levels x 252 children per nested tree). */
const WORK_BYTES = 256 * 1024;
let compiled: WebAssembly.Module | undefined;
let compiledFrom = '';

function module(): WebAssembly.Module {
  if (!compiled) {
    // src/core (tests, tsx) and dist/src/core (built) sit at different depths below the package root.
    const candidates = ['../../build/thinpool.wasm', '../../../build/thinpool.wasm'].map((rel) =>
      fileURLToPath(new URL(rel, import.meta.url)),
    );
    const path = candidates.find((p) => existsSync(p));
    if (!path) throw new ThinpoolError('EABI', `WASM core not built (${candidates[0]}): run npm install`);
    compiled = new WebAssembly.Module(readFileSync(path));
    compiledFrom = path;
  }
  return compiled;
}

/**
 * The part of WebAssembly.Memory the host uses. Declared here so the published declarations do not need the
 * WebAssembly namespace, which @types/node (without lib "dom") does not provide to users' type checks.
 */
export interface CoreMemory {
  readonly buffer: ArrayBuffer;
}

export class Core {
  readonly x: CoreExports;
  readonly memory: CoreMemory;
  readonly u8: Uint8Array;
  readonly u32: Uint32Array;
  readonly dv: DataView;
  /** 4 KiB parameter area (values passed into node primitives). */
  readonly param: number;
  /** 4 KiB scratch block. */
  readonly scratch: number;
  /** 4 KiB state page shared with the transaction code (fields in src/core/abi.ts). */
  readonly state: number;
  readonly work: number;
  readonly slotBase: number;
  readonly nrSlots: number;
  readonly countsBase: number;
  readonly committedBase: number;
  readonly txflagsBase: number;
  readonly touchedBase: number;
  readonly nrMetaBlocks: number;
  readonly tableBase: number;
  readonly tableCap: number;
  readonly refBase: number;
  readonly dirtyBase: number;
  readonly kindBase: number;
  readonly marksBase: number;
  readonly dsmTableBase: number;
  /** Serves the core's imports: the block cache fills node/block/create/forget, the data space map dataFreed. */
  readonly host: CoreHost = { ...NO_HOST };
  /** The error behind the last import that returned 0 (WASM cannot carry it). */
  hostError: unknown;

  constructor(nrSlots: number, nrMetaBlocks: number) {
    this.nrSlots = nrSlots;
    this.nrMetaBlocks = nrMetaBlocks;
    this.param = STATIC_BYTES;
    this.scratch = STATIC_BYTES + 4096;
    this.state = STATIC_BYTES + 8192;
    this.work = STATIC_BYTES + 12288;
    this.slotBase = this.work + WORK_BYTES;
    this.countsBase = this.slotBase + nrSlots * 4096;
    this.committedBase = this.countsBase + nrMetaBlocks * 4;
    this.txflagsBase = this.committedBase + nrMetaBlocks;
    this.touchedBase = Math.ceil((this.txflagsBase + nrMetaBlocks) / 16) * 16;
    this.tableBase = this.touchedBase + Math.ceil(nrMetaBlocks / 4) * 16;
    let cap = 16;
    while (cap < nrSlots * 2) cap *= 2;
    this.tableCap = cap;
    this.refBase = this.tableBase + cap * 16;
    this.dirtyBase = this.refBase + nrSlots;
    this.kindBase = this.dirtyBase + nrSlots;
    this.marksBase = Math.ceil((this.kindBase + nrSlots) / 4) * 4;
    this.dsmTableBase = Math.ceil((this.marksBase + nrSlots * 4) / 16) * 16;
    const total = this.dsmTableBase + nrMetaBlocks * DSM_ENTRY_BYTES;
    const pages = Math.ceil(total / 65536);
    // Addresses cross the boundary as positive i32.
    if (total >= 2 ** 31) throw new ThinpoolError('EINVAL', `metadata cache and counts need ${total} bytes: above 2 GiB`);
    this.memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
    const imports = {
      env: {
        memory: this.memory,
        abort: (_m: number, _f: number, line: number, col: number) => {
          throw new ThinpoolError('EFAILED', `WASM core aborted at ${line}:${col}`);
        },
      },
      host: {
        // One signature for all, (i32, i32, i32, i32) -> i32 (assembly/block-access.ts): one wrapper to compile.
        node: (lo: number, hi: number, vs: number) => this.host.node(lo, hi, vs),
        block: (lo: number, hi: number, kind: number) => this.host.block(lo, hi, kind),
        create: (lo: number, hi: number, kind: number, vs: number) => this.host.create(lo, hi, kind, vs),
        forget: (lo: number, hi: number) => {
          this.host.forget(lo, hi);
          return 0;
        },
        dataFreed: (lo: number, hi: number) => {
          this.host.dataFreed(lo, hi);
          return 0;
        },
      },
    };
    const inst = instantiateSync<Record<string, unknown>>(module(), imports as never);
    checkAbi(inst.instance.exports, `at ${compiledFrom}`);
    this.x = inst.instance.exports as unknown as CoreExports;
    if (this.x.heapBase() > STATIC_BYTES) throw new ThinpoolError('EFAILED', 'WASM static data exceeds 64 KiB');
    this.u8 = new Uint8Array(this.memory.buffer);
    this.u32 = new Uint32Array(this.memory.buffer);
    this.dv = new DataView(this.memory.buffer);
    this.x.crcInit();
    this.x.setCacheLayout(this.tableBase, this.tableCap - 1, this.slotBase, this.refBase);
    this.x.setTxLayout(
      this.state,
      this.countsBase,
      this.committedBase,
      this.txflagsBase,
      this.touchedBase,
      this.dirtyBase,
      this.kindBase,
      this.marksBase,
      this.scratch,
      this.work,
      WORK_BYTES,
    );
    this.x.setDataSpaceMapLayout(this.dsmTableBase, nrMetaBlocks);
  }

  /** Record an import's error; returns the import's failure value. */
  hostFailed(e: unknown): 0 {
    this.hostError = e;
    return 0;
  }

  /** The u64 result of the last transaction call (a root or a block number). */
  get result(): number {
    return this.u64(this.state + S_RESULT);
  }

  get hit(): boolean {
    return this.u32[(this.state + S_HIT) >>> 2] === 1;
  }

  /**
   * Throw the error behind a failed transaction call: the host's own error when an import failed, otherwise a
   * typed error naming `structure` and the block the core reported.
   */
  throwStatus(status: number, structure: string): never {
    const mblock = this.u64(this.state + S_ERR_BLOCK);
    if (status === Status.HOST_ERROR) {
      const e = this.hostError;
      this.hostError = undefined;
      if (e instanceof Error) throw e;
      throw new ThinpoolError('EFAILED', `host failed during an update of ${structure} (block ${mblock})`);
    }
    switch (status) {
      case Status.NO_METADATA_SPACE:
        throw new ThinpoolError(
          'ENOSPC_METADATA',
          `out of metadata space (${this.u32[(this.state + S_NR_META) >>> 2]} blocks, the last ${this.x.smReserve()} reserved for commits)`,
        );
      case Status.METADATA_FULL:
        throw new ThinpoolError('ENOSPC_METADATA', `out of metadata space (all ${this.u32[(this.state + S_NR_META) >>> 2]} blocks in use)`);
      case Status.REF_UNDERFLOW:
        throw ThinpoolError.metadata('ECORRUPT', 'reference count underflow', 'space map', mblock);
      case Status.REF_BEYOND:
        throw ThinpoolError.metadata('EBADBLOCKNR', `reference to block ${mblock} beyond the metadata device`, structure, mblock);
      case Status.DATA_BEYOND:
        throw new ThinpoolError(
          'ECORRUPT',
          `data block ${mblock} beyond the data device (${this.u64(this.state + S_D_NR_BLOCKS)} blocks) in ${structure}`,
        );
      case Status.DATA_REF_MISSING:
        throw ThinpoolError.metadata(
          'ECORRUPT',
          `data block ${mblock} has bitmap value 3 but no ref-count entry`,
          'data ref-count tree',
          this.u64(this.state + S_D_REF_ROOT),
        );
      case Status.DATA_REF_UNDERFLOW:
        throw new ThinpoolError('ECORRUPT', `data block ${mblock} reference count underflow in ${structure}`);
      case Status.NO_DATA_SPACE:
        throw new ThinpoolError(
          'ENOSPC_DATA',
          `out of data space (${this.u64(this.state + S_D_NR_BLOCKS)} blocks in use or freed in this transaction)`,
        );
      case Status.DATA_SHRINK:
        throw new ThinpoolError('EINVAL', `data space map cannot shrink (${this.u64(this.state + S_D_NR_BLOCKS)} -> ${mblock} blocks)`);
      case Status.DATA_MAP_TOO_BIG:
        throw new ThinpoolError(
          'EINVAL',
          `a data device of ${mblock} blocks needs more space-map bitmaps than the metadata device has blocks (${this.nrMetaBlocks})`,
        );
      case Status.TOO_DEEP:
        throw new ThinpoolError('ECYCLE', `${structure} deeper than ${MAX_DEPTH} levels (block ${mblock}; cycle?)`, { structure, mblock });
      default:
        throw ThinpoolError.metadata('EFAILED', statusText(status), structure, mblock);
    }
  }

  slotAddr(slot: number): number {
    return this.slotBase + slot * 4096;
  }

  /** u64 at addr as a JS number (exact below 2^53). */
  u64(addr: number): number {
    return this.u32[addr >>> 2] + this.u32[(addr >>> 2) + 1] * TWO32;
  }

  setU64(addr: number, v: number): void {
    this.u32[addr >>> 2] = v >>> 0;
    this.u32[(addr >>> 2) + 1] = Math.floor(v / TWO32);
  }
}
