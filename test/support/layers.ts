/**
 * The shape rules of src/, as a function over a source tree (so a test can run it on the real tree and on a
 * planted one): every file at most MAX_LINES lines, every import going down the layer order of
 * docs/architecture.md (or staying inside its own layer), no import cycle between files.
 *
 * assembly/ is not checked for cycles: its btree update, space maps and transaction manager call each other
 * (shadowing a shared leaf adds data references, which may insert into the data space map's ref-count btree,
 * which shadows and allocates through the transaction manager). The kernel has the same recursion and breaks
 * the import cycle with an ops table: the transaction manager and btree hold a `struct dm_space_map *` and call
 * through its function pointers (sm->inc, sm->new_block), and sm_metadata guards re-entry with its recursion
 * count. The WASM core's modules call each other directly instead; this check looks at src/ only.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, posix, relative } from 'node:path';

export const MAX_LINES = 500;

/**
 * The layers of src/, lowest first: a file may import from a lower layer or from its own. Paths are relative to
 * src/; a pattern ending in '/' names a folder. Keep in step with the diagram in docs/architecture.md.
 */
export const LAYERS: Array<{ name: string; files: string[] }> = [
  { name: 'base (errors, sizes, messages, sha256)', files: ['errors.ts', 'sizes.ts', 'messages.ts', 'sha256.ts'] },
  { name: 'io', files: ['io/'] },
  { name: 'core', files: ['core/'] },
  { name: 'block cache', files: ['pd/block-cache.ts', 'pd/block-kinds.ts', 'pd/slot-table.ts'] },
  { name: 'metadata space map', files: ['pd/space-map-metadata.ts'] },
  { name: 'transaction manager', files: ['pd/transaction-manager.ts'] },
  { name: 'btree', files: ['pd/btree.ts', 'pd/value-types.ts'] },
  { name: 'data space map', files: ['pd/space-map-data.ts'] },
  {
    name: 'thin metadata',
    files: [
      'thin/block-time.ts',
      'thin/device-details.ts',
      'thin/superblock.ts',
      'thin/metadata-inspect.ts',
      'thin/metadata-engine.ts',
      'thin/mapping-cache.ts',
      'thin/metadata-devices.ts',
      'thin/metadata.ts',
      'thin/check-state.ts',
      'thin/check-space-maps.ts',
      'thin/check.ts',
      'thin/dump.ts',
      'thin/restore.ts',
      'thin/thin-xml.ts',
      'thin/xml-tokenizer.ts',
      'thin/xml-bytes.ts',
      'thin/usage.ts',
    ],
  },
  { name: 'pool and volumes', files: ['thin/'] },
  { name: 'test store', files: ['testing/'] },
  { name: 'NBD', files: ['nbd/'] },
  { name: 'send/receive', files: ['stream/'] },
  { name: 'union', files: ['union/'] },
  { name: 'images and snapshotter', files: ['images/'] },
  { name: 'containerd snapshotter', files: ['snapshotter/'] },
  { name: 'package entry', files: ['index.ts'] },
  { name: 'CLI', files: ['cli/'] },
];

export interface Violation {
  kind: 'size' | 'layer' | 'cycle' | 'unplaced' | 'contract';
  file: string;
  message: string;
}

/** The layer index of a path relative to src/ (the most specific pattern wins), or -1. */
export function layerOf(rel: string): number {
  let best = -1;
  let bestLen = -1;
  LAYERS.forEach((layer, i) => {
    for (const p of layer.files) {
      const hit = p.endsWith('/') ? rel.startsWith(p) : rel === p;
      if (hit && p.length > bestLen) {
        best = i;
        bestLen = p.length;
      }
    }
  });
  return best;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out.sort();
}

/** Relative module specifiers a file imports or re-exports (static and dynamic), comments left out. */
export function importsOf(text: string): string[] {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const out: string[] = [];
  const patterns = [
    /\b(?:import|export)\s[^;'"]*?\bfrom\s*['"]([^'"]+)['"]/g,
    /\bimport\s*['"]([^'"]+)['"]/g,
    /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const re of patterns) for (const m of code.matchAll(re)) if (m[1].startsWith('.')) out.push(m[1]);
  return out;
}

/** Check the tree under srcDir; `oversized` lists files (relative to srcDir) allowed over MAX_LINES for now. */
export function checkTree(srcDir: string, oversized: Record<string, number> = {}): Violation[] {
  const files = sourceFiles(srcDir).map((f) => relative(srcDir, f).split('\\').join('/'));
  const known = new Set(files);
  const out: Violation[] = [];
  const edges = new Map<string, string[]>();
  for (const rel of files) {
    const text = readFileSync(join(srcDir, rel), 'utf8');
    const lines = text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
    const allowed = oversized[rel];
    if (lines > MAX_LINES && !(allowed !== undefined && lines <= allowed)) {
      out.push({ kind: 'size', file: rel, message: `${rel} has ${lines} lines (limit ${MAX_LINES}): split it by concept` });
    }
    if (!opensWithContract(text)) {
      out.push({
        kind: 'contract',
        file: rel,
        message: `${rel} does not open with its contract: start it with a comment saying what it owns and promises`,
      });
    }
    const from = layerOf(rel);
    if (from < 0)
      out.push({
        kind: 'unplaced',
        file: rel,
        message: `${rel} is in no layer: place it in LAYERS (test/support/layers.ts) and docs/architecture.md`,
      });
    const targets: string[] = [];
    for (const spec of importsOf(text)) {
      const target = posix.normalize(posix.join(dirname(rel), spec)).replace(/\.js$/, '.ts');
      if (target.startsWith('..')) continue; // outside src/ (not done by src files today)
      const resolved = known.has(target) ? target : known.has(`${target}/index.ts`) ? `${target}/index.ts` : target;
      targets.push(resolved);
      const to = layerOf(resolved);
      if (from >= 0 && to > from) {
        out.push({
          kind: 'layer',
          file: rel,
          message: `${rel} (${LAYERS[from].name}) imports ${resolved} (${LAYERS[to].name}), a higher layer`,
        });
      }
    }
    edges.set(rel, targets);
  }
  for (const cycle of cycles(edges)) {
    out.push({
      kind: 'cycle',
      file: cycle[0],
      message: `import cycle among ${cycle.join(', ')}: make one of them depend on an interface instead`,
    });
  }
  return out;
}

/** The minimum words of the opening comment that can pass for a contract. */
export const MIN_CONTRACT_CHARS = 40;

/** Whether a file's first line opens a comment (`//` lines or a block) of at least MIN_CONTRACT_CHARS characters. */
export function opensWithContract(text: string): boolean {
  const t = text.replace(/^#!.*\n/, '');
  let body: string;
  if (t.startsWith('/*')) {
    const end = t.indexOf('*/');
    if (end < 0) return false;
    body = t.slice(2, end).replace(/^\s*\*+/gm, '');
  } else if (t.startsWith('//')) {
    const m = /^(?:\/\/.*\n?)+/.exec(t);
    body = (m ? m[0] : '').replace(/^\/\/+/gm, '');
  } else return false;
  return body.replace(/\s+/g, ' ').trim().length >= MIN_CONTRACT_CHARS;
}

/** Strongly connected components with more than one file (or a file importing itself), each as a path. */
function cycles(edges: Map<string, string[]>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter);
    counter++;
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!edges.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (edges.get(v) ?? []).includes(v)) out.push(comp.sort());
    }
  };
  for (const v of edges.keys()) if (!index.has(v)) visit(v);
  return out;
}
