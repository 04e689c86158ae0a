/**
 * The `ext2fs` package with block I/O that may complete without Asyncify, for the worker thread (fs-thread.ts).
 *
 * The package compiles libext2fs to WASM with Asyncify: each block read or write calls into JavaScript
 * through `Asyncify.handleAsync(async () => ...)`, which always unwinds the whole WASM stack, waits for a
 * promise and rewinds it, even when the answer is already at hand. libext2fs does every I/O as one 4 KiB block
 * (about eight calls per data block written), and the worker's disk answers almost all of them from memory.
 *
 * So the package's WASM glue (lib/libext2fs.js) is loaded with one change in its block read and write imports:
 * when the WASM is not rewinding (Asyncify's state Normal), they first ask the mounted disk's
 * `readNow(buffer, offset)` / `writeNow(buffer, offset)`. A number (0, or EIO as the async path gives) is the
 * call's result at once, with no unwind; `undefined` (or a throw) means "not at hand" and the call goes the
 * package's way, unchanged, which reports a failure as EIO. A disk without those methods is served the
 * package's way throughout.
 *
 * Contract: the same answers, in the same order, as the unchanged package (the disk's sync and async paths
 * see and change the same state; libext2fs runs one call at a time). The change is made to the text of the
 * installed file, matched exactly: when the text differs (another version of the package), the package is
 * loaded unchanged and `syncIo` is false (test/images/ext2fs-sync-io.test.ts fails on the installed version,
 * so an upgrade that loses the fast path is seen).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import Module from 'node:module';

/** What the package's mount registers: its DiskWrapper around our disk, with the mount's byte offset. */
const IMPORTS = [
  {
    head: 'function __asyncjs__blk_read(disk_id,block_size,block,count,data){return Asyncify.handleAsync(',
    now: 'readNow',
  },
  {
    head: 'function __asyncjs__blk_write(disk_id,block_size,block,count,data){return Asyncify.handleAsync(',
    now: 'writeNow',
  },
];

function patched(text: string): string | null {
  let out = text;
  for (const { head, now } of IMPORTS) {
    if (out.split(head).length !== 2) return null;
    const body = head.slice(0, head.indexOf('{') + 1);
    out = out.replace(
      head,
      `${body}if(Asyncify.state===Asyncify.State.Normal){const w=Module.getObject(disk_id);const d=w&&w.disk;if(d&&typeof d.${now}==="function"){let r;try{r=d.${now}(Module.getBuffer(data,count<0?-count:count*block_size),block*block_size+w.offset)}catch(e){r=undefined}if(r!==undefined)return r}}return Asyncify.handleAsync(`,
    );
  }
  return out;
}

const require = createRequire(import.meta.url);
const glue = require.resolve('ext2fs/lib/libext2fs.js');
let applied = false;
if (require.cache[glue] === undefined) {
  const text = patched(readFileSync(glue, 'utf8'));
  if (text !== null) {
    // Compiled as the package's own module would be, and cached under its name: the package's
    // require('./libext2fs') gets this one.
    const M = Module as unknown as {
      new (id: string, parent?: unknown): { filename: string; paths: string[]; loaded: boolean; _compile(t: string, f: string): void };
      _nodeModulePaths(dir: string): string[];
    };
    const m = new M(glue);
    m.filename = glue;
    m.paths = M._nodeModulePaths(glue.slice(0, glue.lastIndexOf('/')));
    m._compile(text, glue);
    m.loaded = true;
    (require.cache as Record<string, unknown>)[glue] = m;
    applied = true;
  }
}

/** Whether block I/O may complete without Asyncify (the installed package's text matched). */
export const syncIo = applied;

/** The package, loaded after the change above. */
export const ext2fs = require('ext2fs') as {
  mount(disk: object, offset: number): Promise<unknown>;
  umount(fs: unknown): Promise<void>;
};

/**
 * The package's calls on an open descriptor (lib/binding.js, one WASM call each): the stat fields it reads one
 * by one. The package's own `lstat` opens the path, makes twelve such calls and closes it.
 */
export const ext2fsBinding = require('ext2fs/lib/binding.js') as {
  stat_ino(fd: number): Promise<number>;
  stat_i_mode(fd: number): Promise<number>;
};
