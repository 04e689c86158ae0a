#!/usr/bin/env node
// Shim so `npx thinpool` and a global install run the built CLI.
import('../dist/src/cli/main.js').then((m) => m.main(process.argv.slice(2))).then(
  (code) => { process.exitCode = code ?? 0; },
  (e) => { process.stderr.write(`thinpool: ${e?.message ?? e}\n`); process.exitCode = 1; },
);
