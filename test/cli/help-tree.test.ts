// main() declares only the command argv names (start-up: see registry() in src/cli/define.ts) and the whole
// command tree otherwise. What is printed must not depend on that: each command's --help (one command declared)
// is byte for byte what `thinpool help COMMAND` prints (the whole tree), for every command (a group is declared
// with all its commands, each of which prints its help); an unknown option of a command is reported the same either way; an alias still finds its command.
import { describe, expect, test } from 'vitest';
import { cli } from './helpers.js';

/** The command names listed under "Commands:" of a help text. */
function listed(help: string): string[] {
  const i = help.indexOf('Commands:');
  if (i < 0) return [];
  return [...help.slice(i).matchAll(/^ {2}([a-z][a-z-]*)/gm)].map((m) => m[1]).filter((c) => c !== 'help');
}

describe('one command declared or the whole tree: the same output', () => {
  test('COMMAND --help equals help COMMAND, for every command; each command of a group has its help', async () => {
    const top = listed((await cli(['--help'])).stdout);
    expect(top).toContain('snapshot');
    expect(top).toContain('image');
    let groups = 0;
    for (const c of top) {
      const one = await cli([c, '--help']);
      const all = await cli(['help', c]);
      expect(one.code, c).toBe(0);
      expect(one.stdout, c).toBe(all.stdout);
      expect(one.stdout, c).toContain(`Usage: thinpool ${c}`);
      for (const s of listed(one.stdout)) {
        groups++;
        const subOne = await cli([c, s, '--help']);
        expect(subOne.code, `${c} ${s}`).toBe(0);
        expect(subOne.stdout, `${c} ${s}`).toContain(`Usage: thinpool ${c} ${s}`);
      }
    }
    expect(groups).toBeGreaterThan(0);
  });

  test('an unknown option is reported with the command and a suggestion', async () => {
    const r = await cli(['snapshot', '--read-onyl', 'p', 'a', 'b']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      'thinpool snapshot: unknown option \'--read-onyl\' (Did you mean --read-only?) (see "thinpool snapshot --help")\n',
    );
  });

  test('an alias and a mistyped command still see the whole tree', async () => {
    const rm = await cli(['rm', '--help']);
    expect(rm.code).toBe(0);
    expect(rm.stdout).toBe((await cli(['help', 'delete'])).stdout);
    const typo = await cli(['snapshott']);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toMatch(/Did you mean snapshot\?/);
  });
});
