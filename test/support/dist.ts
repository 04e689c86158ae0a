/**
 * Tests that run the built package (dist/, build/thinpool.wasm) instead of the TypeScript sources: the CLI in a
 * child process, `node --test` on the testing helpers. A stale build would test old code and pass, so those
 * tests call `requireFreshBuild()` first: it throws, naming the first source newer than its output, when
 * anything under src/ or bench/ is newer than its compiled file in dist/, or anything under assembly/ is newer
 * than build/thinpool.wasm, or the CLI's bundle (dist/src/cli/thinpool.cjs, which bin/thinpool.js runs) is
 * missing or older than a source under src/ or bench/. `npm test` builds first (package.json), so this only
 * bites a direct `vitest run` after an edit: run `npm run build`.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { projectRoot } from './oracle.js';

function* tsFiles(dir: string): Generator<string> {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) yield* tsFiles(p);
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) yield p;
  }
}

/** Why the build is stale or missing, or undefined when every output is at least as new as its source. */
export function staleBuild(): string | undefined {
  const bundle = path.join(projectRoot, 'dist/src/cli/thinpool.cjs');
  if (!existsSync(bundle)) return 'dist/src/cli/thinpool.cjs is missing';
  const bundled = statSync(bundle).mtimeMs;
  for (const top of ['src', 'bench']) {
    for (const src of tsFiles(path.join(projectRoot, top))) {
      const rel = path.relative(projectRoot, src);
      if (statSync(src).mtimeMs > bundled) return `${rel} is newer than dist/src/cli/thinpool.cjs`;
      const out = path.join(projectRoot, 'dist', rel.replace(/\.ts$/, '.js'));
      if (!existsSync(out)) return `${path.relative(projectRoot, out)} is missing`;
      if (statSync(out).mtimeMs < statSync(src).mtimeMs) return `${rel} is newer than ${path.relative(projectRoot, out)}`;
    }
  }
  const wasm = path.join(projectRoot, 'build/thinpool.wasm');
  if (!existsSync(wasm)) return 'build/thinpool.wasm is missing';
  const built = statSync(wasm).mtimeMs;
  for (const src of tsFiles(path.join(projectRoot, 'assembly'))) {
    if (statSync(src).mtimeMs > built) return `${path.relative(projectRoot, src)} is newer than build/thinpool.wasm`;
  }
  return undefined;
}

/** Throws unless the build is fresh (see the module comment). */
export function requireFreshBuild(): void {
  const why = staleBuild();
  if (why !== undefined) throw new Error(`the build is stale (${why}): run \`npm run build\` (npm test does it first)`);
}
