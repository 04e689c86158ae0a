#!/usr/bin/env node
// Generates the two sides of the WASM boundary's contract from its one source, assembly/abi.ts:
// - src/core/abi.ts: the host's constants (a namespace becomes a const enum) and ABI_FIELDS, every value in
//   file order;
// - assembly/abi-layout.ts: the core's exports abiFieldCount/abiField, the same values in the same order, which
//   the host compares with ABI_FIELDS when it instantiates the core (src/core/abi-check.ts).
// Both outputs are checked in and rewritten only when they change. `--check` writes nothing and exits 1 when
// either is out of date. Run by `npm run build` before the WASM and TypeScript compiles.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const SOURCE = 'assembly/abi.ts';
const HOST_OUT = 'src/core/abi.ts';
const CORE_OUT = 'assembly/abi-layout.ts';

function fail(message) {
  console.error(`gen-abi: ${SOURCE}: ${message}`);
  process.exit(2);
}

const text = readFileSync(join(root, SOURCE), 'utf8');
const sf = ts.createSourceFile(SOURCE, text, ts.ScriptTarget.ES2022, true);

/** The comments right above a node (none after a blank line), verbatim, each line trimmed of its indentation. */
function comments(node) {
  const ranges = ts.getLeadingCommentRanges(text, node.getFullStart()) ?? [];
  let end = node.getStart();
  const kept = [];
  for (let i = ranges.length - 1; i >= 0; i--) {
    if ((text.slice(ranges[i].end, end).match(/\n/g) ?? []).length > 1) break;
    kept.unshift(ranges[i]);
    end = ranges[i].pos;
  }
  return kept.flatMap((r) =>
    text
      .slice(r.pos, r.end)
      .split('\n')
      .map((l) => l.trim()),
  );
}

function isExported(node) {
  return (ts.getCombinedModifierFlags(node) & ts.ModifierFlags.Export) !== 0;
}

/** [name, literal text, value, comments] of an `export const NAME: type = literal;` statement. */
function constant(stmt, where) {
  const line = sf.getLineAndCharacterOfPosition(stmt.getStart()).line + 1;
  if (!ts.isVariableStatement(stmt) || !isExported(stmt) || !(stmt.declarationList.flags & ts.NodeFlags.Const)) {
    fail(`line ${line}: only \`export const NAME: type = literal;\` is allowed ${where}`);
  }
  const [decl, ...more] = stmt.declarationList.declarations;
  const literal = decl?.initializer && ts.isNumericLiteral(decl.initializer);
  if (more.length || !ts.isIdentifier(decl.name) || !decl.type || !literal) {
    fail(`line ${line}: one constant per statement, with a type and a numeric literal value`);
  }
  const value = Number(decl.initializer.text);
  if (!Number.isInteger(value) || value < -(2 ** 31) || value > 2 ** 32 - 1) {
    fail(`line ${line}: ${decl.name.text} does not fit 32 bits`);
  }
  return { name: decl.name.text, literal: decl.initializer.getText(), value, comments: comments(stmt) };
}

/** Top-level items in file order: constants and namespaces of constants. */
const items = [];
for (const stmt of sf.statements) {
  if (ts.isModuleDeclaration(stmt)) {
    const line = sf.getLineAndCharacterOfPosition(stmt.getStart()).line + 1;
    if (!isExported(stmt) || !stmt.body || !ts.isModuleBlock(stmt.body)) {
      fail(`line ${line}: a namespace must be exported and hold constants`);
    }
    const members = stmt.body.statements.map((s) => constant(s, `inside namespace ${stmt.name.text}`));
    items.push({ namespace: stmt.name.text, members, comments: comments(stmt) });
  } else {
    items.push(constant(stmt, 'at the top level'));
  }
}
if (items[0]?.name !== 'ABI_VERSION') fail('the first field must be ABI_VERSION');

/** Every field in order, as the host names it. */
const fields = items.flatMap((it) => (it.namespace ? it.members.map((m) => `${it.namespace}.${m.name}`) : [it.name]));
const seen = new Set();
for (const f of fields) {
  if (seen.has(f)) fail(`${f} is defined twice`);
  seen.add(f);
}

const host = [
  '/**',
  ` * GENERATED from ${SOURCE} by scripts/gen-abi.mjs (run by \`npm run build\`): do not edit; change`,
  ` * ${SOURCE} and rebuild. The numbers the host shares with the WASM core; the core exports the same values in`,
  ' * the same order (abiField), compared with ABI_FIELDS when the host instantiates it (src/core/abi-check.ts).',
  ' */',
];
for (const it of items) {
  host.push('', ...it.comments);
  if (it.namespace) {
    host.push(`export const enum ${it.namespace} {`);
    for (const m of it.members) host.push(...m.comments.map((c) => `  ${c}`), `  ${m.name} = ${m.literal},`);
    host.push('}');
  } else {
    host.push(`export const ${it.name} = ${it.literal};`);
  }
}
host.push(
  '',
  "/** Every field of the contract in the core's order: [name, value]. */",
  'export const ABI_FIELDS: readonly (readonly [string, number])[] = [',
  ...fields.map((f) => `  ['${f}', ${f}],`),
  '];',
  '',
);

/** Comma-separated names in lines of at most 116 characters. */
function wrap(list, indent) {
  const lines = [];
  let line = indent;
  for (const n of list) {
    if (line.length + n.length + 2 > 116 && line !== indent) {
      lines.push(line.trimEnd());
      line = indent;
    }
    line += `${n}, `;
  }
  lines.push(line.trimEnd());
  return lines;
}

const names = items.map((it) => it.namespace ?? it.name);
const core = [
  `// GENERATED from ${SOURCE} by scripts/gen-abi.mjs (run by \`npm run build\`): do not edit; change`,
  `// ${SOURCE} and rebuild. Every field of the contract in file order, for the host to compare with its own`,
  '// copy (src/core/abi-check.ts) before it uses the core.',
  'import {',
  ...wrap(names, '  '),
  "} from './abi';",
  '',
  '/** Number of fields of the contract. */',
  'export function abiFieldCount(): u32 {',
  `  return ${fields.length};`,
  '}',
  '',
  '/** Value of field i (file order of assembly/abi.ts); 0 beyond the last. */',
  'export function abiField(i: u32): u32 {',
  '  switch (i) {',
  ...fields.map((f, i) => `    case ${i}: return <u32>${f};`),
  '  }',
  '  return 0;',
  '}',
  '',
];

const check = process.argv.includes('--check');
const stale = [];
for (const [path, lines] of [
  [HOST_OUT, host],
  [CORE_OUT, core],
]) {
  const full = join(root, path);
  const want = lines.join('\n');
  const have = existsSync(full) ? readFileSync(full, 'utf8') : '';
  if (have === want) continue;
  if (check) stale.push(path);
  else writeFileSync(full, want);
}
if (stale.length) {
  console.error(`gen-abi: ${stale.join(' and ')} out of date with ${SOURCE}: run npm run build`);
  process.exit(1);
}
