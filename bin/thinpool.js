#!/usr/bin/env node
// Shim so `npx thinpool` and a global install run the built CLI. A CommonJS script (bin/package.json): an ES
// module entry would start Node's ES module loader, a cost on every run.
//
// Start-up (docs/benchmarks-engine.md, "Start-up"): the CLI and the engine are one bundled file,
// dist/src/cli/thinpool.cjs (scripts/bundle-cli.mjs), compiled with V8's code cache: the compiled code of a run
// is kept on disk and handed back to V8 by the next run of the same command, which then compiles nothing it
// already compiled. The cache is only an optimisation, never needed:
// - A cache file is named by the bundle's id (a hash of its text, on its first line), the Node version, the
//   architecture and the command word, so a cache made for another build or Node is never read; V8 checks
//   its own version, flags and the source again and rejects a cache that does not fit (then it compiles as
//   without one).
// - It lives in dist/.v8-cache/ of this package, or, where that cannot be written (a global install owned by
//   root), in $XDG_CACHE_HOME/thinpool (~/.cache/thinpool); where neither can, there is none. It is written
//   (to a temporary name, then renamed: never read half-written) only after a run that succeeded (exit 0)
//   without a cache V8 accepted; caches of other bundles or Node versions in that directory are removed then.
//   One file per command run (~250-400 KiB each). THINPOOL_CODE_CACHE=0 turns it off.
// Without the bundle (a build by `tsc` alone), the ES modules of dist/ run as they are.
//
// A reader that stops early (`thinpool --help | head -1`) is not a crash: a write that fails with EPIPE fails
// through its own callback (the data commands say so in one line); nothing is left to throw unhandled.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

// process.stdout is made on first use only (its stream modules cost a start-up ~5 ms; a command's lines go
// straight to fd 1): the EPIPE handler is attached when it is made.
const stdout = Object.getOwnPropertyDescriptor(process, 'stdout');
const onStdoutError = (e) => {
  if (e?.code !== 'EPIPE') throw e;
};
if (stdout?.get && stdout.configurable) {
  Object.defineProperty(process, 'stdout', {
    ...stdout,
    get() {
      Object.defineProperty(process, 'stdout', stdout);
      const s = process.stdout;
      s.on('error', onStdoutError);
      return s;
    },
  });
} else process.stdout.on('error', onStdoutError);

const argv = process.argv.slice(2);
const pkg = path.join(__dirname, '..');
const bundle = path.join(pkg, 'dist', 'src', 'cli', 'thinpool.cjs');

/** The bundle's exports with a code cache, or undefined when there is no bundle. */
function loadBundle() {
  let source;
  try {
    source = fs.readFileSync(bundle, 'latin1'); // ASCII only (checked when it is built)
  } catch (e) {
    if (e?.code === 'ENOENT') return undefined;
    throw e;
  }
  const vm = require('node:vm');
  const id = /^\/\/ thinpool-bundle ([0-9a-f]+)\n/.exec(source)?.[1];
  const word = /^[a-z][a-z0-9-]{0,31}$/.test(argv[0] ?? '') ? argv[0] : '-';
  const name = `${id}-${process.version}-${process.arch}-${word}.bin`;
  const enabled = id !== undefined && process.env.THINPOOL_CODE_CACHE !== '0';
  const dirs = enabled ? cacheDirs() : [];
  let cachedData;
  for (const d of dirs) {
    try {
      cachedData = fs.readFileSync(path.join(d, name));
      break;
    } catch {
      // not there: the next place, or none
    }
  }
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    filename: bundle,
    cachedData,
  });
  const mod = { exports: {} };
  script.runInThisContext()(mod.exports, require('node:module').createRequire(bundle), mod, bundle, path.dirname(bundle));
  const accepted = cachedData !== undefined && !script.cachedDataRejected;
  mod.exports.saveCodeCache = accepted || !enabled ? () => {} : () => saveCache(script, dirs, name);
  return mod.exports;
}

function cacheDirs() {
  const home = process.env.XDG_CACHE_HOME || (process.env.HOME ? path.join(process.env.HOME, '.cache') : undefined);
  const dirs = [path.join(pkg, 'dist', '.v8-cache')];
  if (home) dirs.push(path.join(home, 'thinpool'));
  return dirs;
}

function saveCache(script, dirs, name) {
  let data;
  try {
    data = script.createCachedData();
  } catch {
    return;
  }
  for (const d of dirs) {
    const tmp = path.join(d, `${name}.${process.pid}.tmp`);
    try {
      fs.mkdirSync(d, { recursive: true });
      fs.writeFileSync(tmp, data);
      fs.renameSync(tmp, path.join(d, name));
      // Caches of other builds or Node versions are of no more use here: remove them (only names made here).
      const mine = name.slice(0, name.indexOf('-'));
      for (const f of fs.readdirSync(d)) {
        if (/^[0-9a-f]{32}-v.*\.bin$/.test(f) && !f.startsWith(`${mine}-${process.version}-`)) fs.rmSync(path.join(d, f), { force: true });
      }
      return;
    } catch {
      try {
        fs.rmSync(tmp, { force: true });
      } catch {
        // nothing was written there
      }
    }
  }
}

async function run() {
  const m = loadBundle() ?? (await import('../dist/src/cli/main.js'));
  const code = (await m.main(argv)) ?? 0;
  if (code === 0) m.saveCodeCache?.();
  return code;
}

run().then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`thinpool: ${e?.message ?? e}\n`);
    process.exitCode = 1;
  },
);
