// Turns of Node's event loop, for tests of code that defers work to the next turn (setImmediate) or is woken at a
// later one (a completion from another thread).

/** Resolves after `n` turns of the event loop (each a setImmediate, so I/O and timers due by then have run). */
export async function turns(n = 1): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
}
