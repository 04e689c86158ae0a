// Bundles the command line (dist/src/cli/main.js, the engine it loads and commander) into one CommonJS file,
// dist/src/cli/thinpool.cjs, which bin/thinpool.js runs with V8's code cache (see the comment there).
// Start-up cost is mostly Node's module loader and V8's compiler: one file compiled once and cached replaces ~60
// ES modules resolved, read and compiled on every run (docs/benchmarks-engine.md, "Start-up").
//
// - Input is tsc's output (npm run build:ts first), so the bundle runs the code the tests run.
// - npm dependencies other than commander and @assemblyscript/loader stay outside (require()d from node_modules
//   when a command needs them): the native helper, koffi, grpc, ext2fs are found where npm installed them.
// - `import.meta.url` in each file becomes the URL of that file in dist/, so every path built from it (the WASM
//   core, package.json, the native helper, the .proto files, worker scripts) is the one the ES modules use.
// - commander's `require('node:child_process')` (used only for executable subcommands, which thinpool has none
//   of) is made lazy: child_process pulls in net and dgram, a cost on every start.
// - The first line names the bundle by a hash of its text: the code cache is keyed by it, so a cache made for
//   another build is never offered to V8.
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const entry = resolve(root, 'dist/src/cli/main.js');
const outfile = resolve(root, 'dist/src/cli/thinpool.cjs');
const inside = new Set(['commander', '@assemblyscript/loader']);
const CHILD_PROCESS = "const childProcess = require('node:child_process');";

let patchedCommander = false;
const result = await build({
  entryPoints: [entry],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  charset: 'ascii',
  minifyWhitespace: true,
  write: false,
  metafile: true,
  // What import.meta.url becomes (a function named so that no bundled file shadows it, as `require` can be).
  banner: { js: "const __thinpoolFileUrl = (rel) => require('node:url').pathToFileURL(require('node:path').join(__dirname, rel)).href;" },
  logLevel: 'warning',
  // main.ts's version(): the package's version as a constant, rather than package.json read on every start.
  define: { __THINPOOL_VERSION__: JSON.stringify(JSON.parse(await readFile(resolve(root, 'package.json'), 'utf8')).version) },
  plugins: [
    {
      name: 'thinpool',
      setup(b) {
        b.onResolve({ filter: /^[^./]/ }, (a) => {
          if (a.path.startsWith('node:')) return { external: true };
          const name = a.path.startsWith('@') ? a.path.split('/').slice(0, 2).join('/') : a.path.split('/')[0];
          return inside.has(name) ? undefined : { external: true };
        });
        b.onLoad({ filter: /\.(js|mjs|cjs)$/ }, async (a) => {
          let text = await readFile(a.path, 'utf8');
          if (a.path.endsWith('/commander/lib/command.js')) {
            if (!text.includes(CHILD_PROCESS)) throw new Error(`commander changed: ${CHILD_PROCESS} not found in ${a.path}`);
            text = text.replace(
              CHILD_PROCESS,
              "let childProcess_; const childProcess = { get spawn() { return (childProcess_ ??= require('node:child_process')).spawn; } };",
            );
            patchedCommander = true;
          }
          if (text.includes('import.meta.url')) {
            const rel = relative(dirname(outfile), a.path);
            text = text.replaceAll('import.meta.url', `__thinpoolFileUrl(${JSON.stringify(rel)})`);
          }
          return { contents: text, loader: 'js' };
        });
      },
    },
  ],
});
if (!patchedCommander) throw new Error('commander/lib/command.js was not bundled');
const code = result.outputFiles[0].contents;
if (code.some((c) => c > 0x7f)) throw new Error('the bundle is not ASCII (bin/thinpool.js reads it as latin1)');
const text = Buffer.from(code).toString('latin1');
// Nothing may be left to the ES module loader: the bundle runs as a script, without import().
for (const [file, input] of Object.entries(result.metafile.inputs)) {
  for (const i of input.imports)
    if (i.kind === 'dynamic-import' && i.external) throw new Error(`${file}: import('${i.path}') left in the bundle`);
}
if (/\bimport\.meta\b/.test(text)) throw new Error('the bundle still has import.meta');
const id = createHash('sha256').update(code).digest('hex').slice(0, 32);
await writeFile(outfile, `// thinpool-bundle ${id}\n${text}`, 'latin1');
console.log(`${relative(root, outfile)}: ${(code.length / 1024).toFixed(0)} KiB, bundle ${id}`);
