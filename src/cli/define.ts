/**
 * How a command of the `thinpool` command line is declared: the registry the commands-*.ts files fill in.
 *
 * `registry(program, ctx, state)` gives `def` (a top-level command) and `sub` (a command of a group such as
 * `thinpool image import`). Each declaration names its flags and help only; the code that runs it lives in a
 * module of ./commands/, loaded with a dynamic import() when that command runs (never at start-up), and its
 * exported function is called as `fn(ctx, args, opts)`. What it resolves to (a number, or nothing for 0) becomes
 * `state.result`; `state.cmd` names a group's command ("image import") for error lines. Commands appear in
 * `--help` in the order they are declared. This module imports nothing but types at start-up.
 */
import type { Command } from 'commander';
import type { Ctx } from './io.js';

export type Action = (ctx: Ctx, args: string[], opts: Record<string, unknown>) => Promise<number | void>;

/** Lazily loaded command modules: each is imported only when its command runs. */
export const modules = {
  volumes: () => import('./commands/volumes.js'),
  info: () => import('./commands/info.js'),
  data: () => import('./commands/data.js'),
  meta: () => import('./commands/meta.js'),
  demo: () => import('./commands/demo.js'),
  space: () => import('./commands/space.js'),
  serve: () => import('./commands/serve.js'),
  image: () => import('./commands/image.js'),
  container: () => import('./commands/container.js'),
  fs: () => import('./commands/fs.js'),
  rados: () => import('./commands/rados.js'),
  bench: () => import('./commands/bench.js'),
  stream: () => import('./commands/stream.js'),
  verbs: () => import('./commands/verbs.js'),
  snapshotter: () => import('./commands/snapshotter.js'),
  metaSnap: () => import('./commands/metadata-snap.js'),
} as const;

/** A module of ./commands/ that implements commands. */
export type CommandModule = keyof typeof modules;

/** The help text on sizes, shared by every command that takes one. */
export const SIZES =
  'Sizes are bytes or a number with a suffix: 64K, 64KiB, 10M, 10G, 1TiB (IEC, powers of 1024), 1GB (SI, powers of 1000), 8s (512-byte sectors).';

/** What a command declaration sets on its commander Command: arguments, options, description, alias. */
export type Configure = (c: Command) => Command;

/** The result of the run, filled in by the command that runs. */
export interface RunState {
  result: number;
  cmd: string;
}

export interface Registry {
  /** Declare top-level command NAME, run by export FN of commands/MOD; HELP is printed after its options. */
  def(name: string, mod: CommandModule, fn: string, configure: Configure, help?: string): void;
  /** Declare command NAME of GROUP (`thinpool GROUP NAME`), made on first use with its description below. */
  sub(group: string, name: string, mod: CommandModule, fn: string, configure: Configure, help?: string): void;
}

const GROUPS: Record<string, string> = {
  image: 'images: stacks of read-only layers (import, ls, history, rm, export)',
  container: 'containers: writable snapshots of an image (create, ls, rm, commit, diff, export)',
  fs: 'files inside a volume, image or container (ls, cat, put, rm), no mount',
  lock: 'the write lock of a pool in Ceph RADOS (break)',
  snapshotter: "containerd's storage: a proxy snapshotter on the pool (serve)",
  'metadata-snap': 'the held metadata snapshot: a consistent view for dump -m and readers (reserve, release)',
};

/**
 * `only`: declare just the command (or group) of that name and skip the rest (start-up: commander's objects for
 * ~45 commands cost more than the snapshot command's own work). main() falls back to the whole tree when that
 * leaves argv's command undeclared (an alias, `help`, a typo), so what is printed never depends on it.
 */
export function registry(program: Command, ctx: Ctx, state: RunState, only?: string): Registry {
  const def = (name: string, mod: CommandModule, fn: string, configure: Configure, help?: string): void => {
    if (only !== undefined && name !== only) return;
    const c = program.command(name);
    configure(c);
    c.helpOption('-h, --help', 'show this help');
    if (help) c.addHelpText('after', `\n${help}`);
    c.action(async (...all: unknown[]) => {
      const command = all[all.length - 1] as Command;
      const opts = command.opts();
      const args = command.processedArgs.map((a) => a as string);
      const m = (await modules[mod]()) as unknown as Record<string, Action>;
      const code = await m[fn](ctx, args, opts);
      state.result = typeof code === 'number' ? code : 0;
    });
  };

  // Command groups (image, container, fs, snapshotter, lock): `thinpool GROUP COMMAND ...`, same lazy loading as def().
  const groups = new Map<string, Command>();
  const sub = (group: string, name: string, mod: CommandModule, fn: string, configure: Configure, help?: string): void => {
    if (only !== undefined && group !== only) return;
    let g = groups.get(group);
    if (!g) {
      g = program
        .command(group)
        .description(GROUPS[group] ?? group)
        .helpOption('-h, --help', 'show this help');
      groups.set(group, g);
    }
    const c = g.command(name);
    configure(c);
    c.helpOption('-h, --help', 'show this help');
    if (help) c.addHelpText('after', `\n${help}`);
    c.action(async (...all: unknown[]) => {
      const command = all[all.length - 1] as Command;
      state.cmd = `${group} ${name}`; // error lines say "thinpool image import: ..."
      const m = (await modules[mod]()) as unknown as Record<string, Action>;
      const code = await m[fn](
        ctx,
        command.processedArgs.flat().map((a) => a as string),
        command.opts(),
      );
      state.result = typeof code === 'number' ? code : 0;
    });
  };
  return { def, sub };
}
