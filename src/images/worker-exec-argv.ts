/**
 * The Node options a worker thread is started with: this process's own (`process.execArgv`), less what a worker
 * refuses. Node throws ERR_WORKER_INVALID_EXEC_ARGV for a worker given a V8 option (`--max-old-space-size`,
 * `--expose-gc`, `--stack-size`, ...) or `--input-type`; V8 options are process-wide, so the worker has them
 * anyway, and `--input-type`/`-e`/`-p` only make sense for a main script given as a string. Without this,
 * `node --max-old-space-size=8192 thinpool image import ...` failed before the import began.
 *
 * Contract: the result keeps every option a worker accepts, in order, each with its separate value if it has
 * one (`--import URL`); an option is dropped only when a worker refuses it. Node is asked (a throwaway worker
 * constructed with that option alone, terminated at once) only when the whole list is refused, once per process.
 */
import { Worker } from 'node:worker_threads';

/** Options whose value is the next argument when not given with `=`. */
const TAKES_VALUE = new Set(['--import', '--require', '-r', '--loader', '--experimental-loader', '--conditions', '-C', '--env-file']);

/** Options only a main script given as a string uses (`node --input-type=module -e CODE`), with their value. */
const STRING_MAIN = new Set(['--input-type', '-e', '--eval', '-p', '--print']);

let cached: { from: readonly string[]; args: string[] } | undefined;

/** Whether a worker accepts these options (Node checks them when the Worker is constructed). */
function accepted(args: string[]): boolean {
  try {
    void new Worker('', { eval: true, execArgv: args }).terminate();
    return true;
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_WORKER_INVALID_EXEC_ARGV') return false;
    throw e;
  }
}

/** execArgv (this process's options by default) less what a worker refuses; see the module comment. */
export function workerExecArgv(execArgv: readonly string[] = process.execArgv): string[] {
  if (cached !== undefined && cached.from === execArgv) return [...cached.args];
  const groups: string[][] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const a = execArgv[i];
    if (STRING_MAIN.has(a)) i++;
    else if (/^--(input-type|eval|print)=/.test(a)) continue;
    else if (TAKES_VALUE.has(a) && i + 1 < execArgv.length) groups.push([a, execArgv[++i]]);
    else groups.push([a]);
  }
  const all = groups.flat();
  const args = all.length === 0 || accepted(all) ? all : groups.filter(accepted).flat();
  cached = { from: execArgv, args };
  return [...args];
}
