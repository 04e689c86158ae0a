#!/usr/bin/env node
// Shim so `npx thinpool` and a global install run the built CLI.
// A reader that stops early (`thinpool --help | head -1`) is not a crash: a write that fails with EPIPE fails
// through its own callback (the data commands say so in one line); nothing is left to throw unhandled.
process.stdout.on('error', (e) => {
  if (e?.code !== 'EPIPE') throw e;
});
import('../dist/src/cli/main.js')
  .then((m) => m.main(process.argv.slice(2)))
  .then(
    (code) => {
      process.exitCode = code ?? 0;
    },
    (e) => {
      process.stderr.write(`thinpool: ${e?.message ?? e}\n`);
      process.exitCode = 1;
    },
  );
