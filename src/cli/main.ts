/**
 * The `thinpool` command line.
 *
 * `main(argv, io?)` parses argv (without node and script), runs one command and resolves to its exit status:
 * 0 success, 1 failure, 2 usage error. Nothing is printed to stdout but the command's result; errors are one line
 * on stderr ("thinpool CMD: what is wrong: what to do"). Pass `io` to capture the streams (tests).
 *
 * Start-up matters: this module loads only commander, ./io.js and the command declarations (./define.ts and
 * ./commands-*.ts: flags and help, no engine); each command's module under ./commands/ (and through it the
 * engine and the WASM core) is loaded with a dynamic import() when that command runs, and only the command argv
 * names is declared to commander (registry() in ./define.ts). The shipped bin runs all of it as one bundled file
 * with V8's code cache (scripts/bundle-cli.mjs, bin/thinpool.js).
 */
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { CliError, type CliIO, type Ctx, processStdout } from './io.js';
import { explainError } from '../messages.js';
import { registry, SIZES, type RunState } from './define.js';
import { defineVolumeCommands } from './commands-volumes.js';
import { defineContentCommands } from './commands-content.js';
import { definePoolCommands } from './commands-pool.js';
import { defineServiceCommands } from './commands-services.js';
import { defineCommandGroups } from './commands-groups.js';

export type { CliIO } from './io.js';

/** Set by the bundle (scripts/bundle-cli.mjs) to package.json's version: no file read at start-up. */
declare const __THINPOOL_VERSION__: string | undefined;

function version(): string {
  if (typeof __THINPOOL_VERSION__ === 'string') return __THINPOOL_VERSION__;
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string };
    if (pkg.version) return pkg.version;
  } catch {
    // the source tree: one level less
  }
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function build(ctx: Ctx, state: RunState, only?: string): Command {
  const program = new Command('thinpool');
  const { io } = ctx;
  program
    .description(
      'Thin provisioning on plain files, byte-compatible with Linux dm-thin metadata.\nA POOL is a directory holding `metadata` (a dm-thin metadata device), `data` (sparse) and `catalog.json`,\nor rados://CEPH_POOL/NAME: the same as objects in a Ceph RADOS pool (cluster from --ceph-conf or CEPH_CONF).',
    )
    .option('--ceph-conf <FILE>', 'Ceph configuration for rados:// pools (default: CEPH_CONF, then /etc/ceph/ceph.conf)')
    .option('--ceph-id <ID>', 'Ceph client id for rados:// pools, without "client." (default: admin)')
    .version(version(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help for a command')
    .addHelpCommand('help [COMMAND]', 'show help for a command')
    .exitOverride()
    .showSuggestionAfterError(true)
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      outputError: () => undefined, // printed by main() as one line
    })
    .addHelpText(
      'after',
      `\nStart with:  thinpool demo\nEvery command has --help. Exit status: 0 success, 1 failure, 2 usage error.\n${SIZES}`,
    );

  const commands = registry(program, ctx, state, only);
  defineVolumeCommands(commands);
  defineContentCommands(commands);
  definePoolCommands(commands);
  defineServiceCommands(commands);
  defineCommandGroups(commands);

  program.hook('preAction', (p, action) => {
    state.cmd = action.name();
    const g = p.opts();
    ctx.ceph = { conf: g.cephConf as string | undefined, id: g.cephId as string | undefined };
  });
  return program;
}

/** Run the command line argv; resolves to the exit status. */
export async function main(argv: string[], io?: Partial<CliIO>): Promise<number> {
  const fullIo: CliIO = {
    // Made only when a command asks for the stream: writeStdout() writes a command's lines straight to fd 1.
    get stdout() {
      return io?.stdout ?? processStdout();
    },
    get stderr() {
      return io?.stderr ?? process.stderr; // made when something goes there (errors, warnings, progress)
    },
    // Looked up only when a command reads it: making process.stdin turns a pipe on fd 0 non-blocking.
    get stdin() {
      return io?.stdin ?? process.stdin;
    },
    stdinFd: io?.stdin === undefined ? 0 : undefined,
    stdoutFd: io?.stdout === undefined ? 1 : undefined,
    cwd: io?.cwd,
  };
  const ctx: Ctx = { io: fullIo, cwd: fullIo.cwd ?? process.cwd(), main };
  const state = { result: 0, cmd: '' };
  // The command (or "group subcommand") argv names, for error lines and help hints even when parsing fails.
  const named = (list: readonly Command[], word: string | undefined): Command | undefined =>
    list.find((c) => c.name() === word || c.aliases().includes(word ?? ''));
  // Only argv's command is declared when argv names one by its name (see registry()); otherwise (an option such
  // as --help, `help`, an alias, an unknown word) the whole tree, so help and suggestions list every command.
  let program = argv.length > 0 && /^[a-z]/.test(argv[0]) ? build(ctx, state, argv[0]) : undefined;
  if (program === undefined || named(program.commands, argv[0]) === undefined) program = build(ctx, state);
  const top = named(program.commands, argv[0]);
  const subCmd = top && top.commands.length > 0 ? named(top.commands, argv[1]) : undefined;
  const cmdName = top ? (subCmd ? `${top.name()} ${subCmd.name()}` : top.name()) : '';
  const prefix = (): string => `thinpool${state.cmd || cmdName ? ` ${state.cmd || cmdName}` : ''}`;
  if (argv.length === 0) {
    fullIo.stderr.write(program.helpInformation());
    return 2;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return state.result;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version') return 0;
      if (e.code === 'commander.help') return e.exitCode === 0 ? 0 : 2; // a group without its subcommand
      const msg = e.message
        .replace(/^error: /, '')
        .replace(/\s*\n\s*/g, ' ')
        .trim();
      const helpHint = cmdName ? `thinpool ${cmdName} --help` : 'thinpool --help';
      fullIo.stderr.write(`${prefix()}: ${msg} (see "${helpHint}")\n`);
      return 2;
    }
    if (e instanceof CliError) {
      fullIo.stderr.write(`${prefix()}: ${oneLine(e.message)}\n`);
      return e.exitCode;
    }
    const { message, exitCode } = explainError(e);
    fullIo.stderr.write(`${prefix()}: ${oneLine(message)}\n`);
    return exitCode;
  }
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}
