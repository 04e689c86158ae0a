/**
 * Whether the server may spend its poll window spinning: off for a while once spinning is seen to take the CPU
 * from someone else (docs/nbd.md, "The poll window on a busy machine").
 *
 * Contract and invariants:
 * - Spinning (SocketIO's hot event loop after answering) is measured while it runs: the process's CPU time
 *   (process.cpuUsage) against the wall-clock time the spin chains took, summed until they make CHECK_NS. A
 *   thread that spins and serves requests is on a CPU the whole time, so CPU time close to wall time means it had a CPU to
 *   itself; markedly less (below 3/4) means the kernel ran something else on it in between: the machine
 *   has no idle CPU, and spinning only takes time from other tasks (the client among them) while the kernel
 *   weighs the spinner down for the CPU it used. Spinning is then refused for BACKOFF_NS, after which one more
 *   stretch is measured.
 * - One guard per process (all connections share the CPU it measures). It only ever turns spinning off for a
 *   bounded time; a server that never spins never asks it. Nothing here reads or writes a socket.
 */

/** Spinning time gathered before it is judged (process CPU time has µs units and some jitter). */
const CHECK_NS = 2_000_000n;
/** Spinning stays off this long after a stretch that did not get a CPU to itself. */
const BACKOFF_NS = 100_000_000n;
/** CPU time / wall time of a stretch below which the CPU was shared (3/4). */
const FAIR_NUM = 3n;
const FAIR_DEN = 4n;

export class SpinGuard {
  /** hrtime (ns) until which spinning is refused. */
  private offUntil = 0n;
  /** The running chain's start (0: none) and the process CPU time (µs) then. */
  private chainNs = 0n;
  private chainCpu = 0;
  /** Spinning time (wall, ns) and CPU time (µs) gathered since the last judgement. */
  private wall = 0n;
  private cpu = 0;
  /** Judgements that turned spinning off (tests and diagnostics). */
  backoffs = 0;
  /** Off: spinning is always allowed (NBD_SPIN_GUARD=0 in the environment; tests). */
  enabled = process.env.NBD_SPIN_GUARD !== '0';

  constructor(private readonly cpuMicros: () => number = cpuNow) {}

  /** May a spin start (or go on) now? */
  allowed(now: bigint): boolean {
    return !this.enabled || now >= this.offUntil;
  }

  /** Forget what was measured and allow spinning again (tests). */
  reset(): void {
    this.offUntil = this.chainNs = this.wall = 0n;
    this.chainCpu = this.cpu = 0;
  }

  /** A spin chain starts. */
  start(now: bigint): void {
    if (!this.enabled) return;
    this.chainNs = now;
    this.chainCpu = this.cpuMicros();
  }

  /**
   * The running chain goes on at `now`, or ends there (`ending`). Its time is added to the stretch when it ends
   * or has run CHECK_NS; a stretch of CHECK_NS is judged. False when spinning must stop.
   */
  check(now: bigint, ending: boolean): boolean {
    if (this.chainNs === 0n) return this.allowed(now);
    if (!ending && now - this.chainNs < CHECK_NS) return this.allowed(now);
    const cpu = this.cpuMicros();
    this.wall += now - this.chainNs;
    this.cpu += cpu - this.chainCpu;
    this.chainNs = ending ? 0n : now;
    this.chainCpu = cpu;
    if (this.wall >= CHECK_NS) {
      const cpuNs = BigInt(Math.max(0, Math.round(this.cpu))) * 1000n;
      if (cpuNs * FAIR_DEN < this.wall * FAIR_NUM) {
        this.offUntil = now + BACKOFF_NS;
        this.backoffs++;
      }
      this.wall = 0n;
      this.cpu = 0;
    }
    return this.allowed(now);
  }
}

function cpuNow(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** The process's guard. */
export const spinGuard = new SpinGuard();
