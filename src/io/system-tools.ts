/**
 * Where a system tool (mkfs.ext4, e2fsck, ...) is installed. Contract: `findTool(name)` returns the first
 * existing file of that name in $PATH, then in the sbin directories (which a non-login shell's PATH may lack:
 * e2fsprogs installs its tools there), or null; callers turn null into an error naming the Debian package.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const SBIN = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

export function findTool(name: string): string | null {
  for (const dir of [...(process.env.PATH ?? '').split(':').filter(Boolean), ...SBIN]) {
    const p = join(dir, name);
    if (existsSync(p)) return p;
  }
  return null;
}
