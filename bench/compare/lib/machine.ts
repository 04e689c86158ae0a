/** The machine the figures come from. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';

export interface Machine {
  cpu: string;
  cores: number;
  memoryBytes: number;
  kernel: string;
  os: string;
  filesystem: string;
  node: string;
  qemu?: string;
  date: string;
}

function sh(cmd: string, args: string[]): string | undefined {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

export function machine(workDir: string): Machine {
  let osName = os.type();
  try {
    osName = /PRETTY_NAME="([^"]+)"/.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? osName;
  } catch {
    /* not Linux */
  }
  const df = sh('df', ['-T', workDir])?.split('\n')[1]?.split(/\s+/);
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    memoryBytes: os.totalmem(),
    kernel: os.release(),
    os: osName,
    filesystem: df ? `${df[1]} on ${df[0]}` : 'unknown',
    node: process.version,
    qemu: sh('qemu-img', ['--version'])?.split('\n')[0],
    date: new Date().toISOString(),
  };
}
