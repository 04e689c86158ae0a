/**
 * The start-up check of the WASM boundary's contract. The core exports every field of assembly/abi.ts in file
 * order (abiFieldCount, abiField); the host holds the same fields, generated from the same file
 * (src/core/abi.ts). A core compiled from another version of that file (a stale build/thinpool.wasm, or one
 * side edited by hand) would read and write the shared memory at other offsets or mean other things by the
 * same numbers: silent corruption. So the host compares every field before it uses a core and refuses, with
 * EABI naming the first field that differs, on any mismatch.
 */
import { ThinpoolError } from '../errors.js';
import { ABI_FIELDS } from './abi.js';

/** The core's exports that describe its contract. */
export interface AbiExports {
  abiFieldCount?: () => number;
  abiField?: (i: number) => number;
}

const REBUILD = 'rebuild the WASM core and the host together (npm run build)';

/** Throw EABI unless the core built into `core` (found at `where`) has exactly the host's fields. */
export function checkAbi(core: AbiExports, where: string, fields: readonly (readonly [string, number])[] = ABI_FIELDS): void {
  if (typeof core.abiFieldCount !== 'function' || typeof core.abiField !== 'function') {
    throw new ThinpoolError('EABI', `the WASM core ${where} exports no ABI layout (built before the layout check): ${REBUILD}`);
  }
  const n = core.abiFieldCount() >>> 0;
  const shared = Math.min(n, fields.length);
  for (let i = 0; i < shared; i++) {
    const [name, want] = fields[i];
    const have = core.abiField(i) >>> 0;
    if (have !== want >>> 0) {
      throw new ThinpoolError(
        'EABI',
        `the WASM core ${where} was built for another ABI: ${name} is ${have} in the core and ${want >>> 0} in the host; ${REBUILD}`,
      );
    }
  }
  if (n !== fields.length) {
    const extra = n > fields.length ? 'the core has more fields than the host' : `the core lacks ${fields[n][0]} and the fields after it`;
    throw new ThinpoolError(
      'EABI',
      `the WASM core ${where} was built for another ABI: ${n} fields in the core, ${fields.length} in the host (${extra}); ${REBUILD}`,
    );
  }
}
