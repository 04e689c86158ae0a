// containerd's own snapshotter conformance suite (snapshots/testsuite of containerd 1.6, 21 cases) against
// `thinpool snapshotter serve` through containerd's proxy client. The Go test (test/snapshotter/go) is built
// offline in GOPATH mode from Debian's golang-go and golang-github-containerd-containerd-dev; its factory gives
// every case a fresh pool and server, and its cleanup requires exit status 0 after SIGTERM and a clean
// `thinpool check`. Here: every case's PASS line (Rename is skipped by the 1.6 suite itself: `t.Skip("rename
// test still fails on some kernels with overlay")`), and nothing left under the run's directory afterwards (loop
// devices, FUSE mounts, processes). Needs root, /dev/fuse and loop devices.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { needPrerequisite, needTool } from '../support/tools.js';
import { CLI, ROOT, leaksUnder, run, snapshotterUnavailable, waitNoLeaks } from './support.js';

const GOSRC = '/usr/share/gocode';
const SUITE = `${GOSRC}/src/github.com/containerd/containerd/snapshots/testsuite/testsuite.go`;

const CASES = [
  'Basic',
  'StatActive',
  'StatComitted',
  'TransitivityTest',
  'PreareViewFailingtest',
  'Update',
  'Remove',
  'Walk',
  'LayerFileupdate',
  'RemoveDirectoryInLowerLayer',
  'Chown',
  'DirectoryPermissionOnCommit',
  'RemoveIntermediateSnapshot',
  'DeletedFilesInChildSnapshot',
  'MoveFileFromLowerLayer',
  'ViewReadonly',
  'StatInWalk',
  'CloseTwice',
  'RootPermission',
  '128LayersMount',
];

function whyNot(): string | null {
  if (!needTool('go', 'golang-go')) return 'go not installed (Debian package golang-go)';
  if (
    !needPrerequisite(
      "containerd's snapshots/testsuite sources",
      existsSync(SUITE) ? undefined : `${SUITE} not found (Debian package golang-github-containerd-containerd-dev)`,
    )
  )
    return 'containerd sources not installed (Debian package golang-github-containerd-containerd-dev)';
  const mounts = snapshotterUnavailable();
  return needPrerequisite("the snapshotter's mounts (loop devices, /dev/fuse, nbdfuse)", mounts) ? null : mounts;
}

const reason = whyNot();
if (reason) console.warn(`skipping containerd's snapshotter suite: ${reason}`);

describe("containerd's snapshotter conformance suite", () => {
  if (reason) {
    test.skipIf(reason !== null)(`snapshots/testsuite against thinpool (skipped: ${reason})`, () => {});
    return;
  }
  const work = mkdtempSync(join(tmpdir(), 'tp-ctrd-suite-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  test(
    'every case passes through the proxy snapshotter, thinpool check clean after each, nothing leaks',
    async () => {
      const pkg = join(work, 'go', 'src', 'thinpoolsuite');
      mkdirSync(pkg, { recursive: true });
      copyFileSync(join(ROOT, 'test', 'snapshotter', 'go', 'thinpool_test.go'), join(pkg, 'thinpool_test.go'));
      const bin = join(work, 'suite.test');
      const env = {
        ...process.env,
        GOPATH: `${join(work, 'go')}:${GOSRC}`,
        GO111MODULE: 'off',
        GOFLAGS: '',
        GOCACHE: process.env.GOCACHE ?? join(process.env.HOME ? homedir() : work, '.cache', 'go-build'),
      };
      const build = await run('go', ['test', '-c', '-o', bin, '.'], { env, cwd: pkg, timeoutMs: 600000 });
      expect(build.code, `go test -c:\n${build.stdout}${build.stderr}`).toBe(0);

      const tmp = join(work, 'tmp');
      mkdirSync(tmp);
      const r = await run(bin, ['-test.root', '-test.v', '-test.timeout', '25m'], {
        env: { ...process.env, TMPDIR: tmp, THINPOOL_NODE: process.execPath, THINPOOL_CLI: CLI },
        timeoutMs: 26 * 60000,
      });
      const out = r.stdout + r.stderr;
      const failed = out.split('\n').filter((l) => /--- FAIL/.test(l));
      expect(failed, out.slice(-20000)).toEqual([]);
      for (const c of CASES) expect(out, `case ${c}`).toMatch(new RegExp(`--- PASS: TestThinpool/${c} \\(`));
      expect(out).toMatch(/--- SKIP: TestThinpool\/Rename \(/);
      expect(r.code, out.slice(-5000)).toBe(0);
      expect(out).toMatch(/^PASS$/m);

      const left = await waitNoLeaks(tmp);
      expect(left).toEqual({ loops: [], fuseMounts: [], mounts: [], processes: [] });
      expect(leaksUnder(work).processes).toEqual([]);
    },
    40 * 60000,
  );
});
