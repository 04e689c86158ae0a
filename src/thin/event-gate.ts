/**
 * When a pool's events reach their listeners: at the end of the operation that raised them, not in its middle.
 *
 * Events are synchronous, and a listener may act on the pool (commit, write, extend). Raised inside an
 * operation, such a listener ran between steps that must not be split by a commit: a data block allocated and
 * not yet mapped (a commit there leaks the block after a crash), or a block mapped whose copied bytes are still
 * held in memory (a commit there makes the mapping durable before its data: a crash then reads zeros). So:
 *
 * Contract:
 * - `emit(name, ...args)` delivers at once when no operation runs; inside one it queues the event.
 * - `operation(fn)` runs fn as an operation (they nest); when the outermost one ends (returning or throwing),
 *   the queued events are delivered in the order raised. A listener that itself runs an operation has its events
 *   delivered at that operation's end, after those queued before them. An error thrown by a listener reaches the
 *   caller of the operation, after the operation's work is done (it cannot abort a transaction half-way).
 * - The operations: every metadata change (commit.ts), a write's provisioning of a block or of a run of blocks
 *   from its allocation to its mapping (data-path.ts), a rollback from its tail's copy to its change
 *   (volumes.ts). Between two operations the pool is whole, so a listener may act there.
 * - Only synchronous sections are operations: an asynchronous write provisions synchronously (data-path.ts), so
 *   an operation never spans an await and events are never held back by I/O in flight.
 */
import type { EventEmitter } from 'node:events';

export class EventGate<E extends Record<keyof E, unknown[]>> {
  readonly #events: EventEmitter<E>;
  #depth = 0;
  readonly #queued: Array<() => void> = [];

  constructor(events: EventEmitter<E>) {
    this.#events = events;
  }

  /** Deliver now, or at the end of the operation running (see the contract). */
  emit<K extends keyof E & string>(name: K, ...args: E[K]): void {
    const deliver = (): void => {
      (this.#events.emit as (n: string, ...a: unknown[]) => boolean)(name, ...args);
    };
    if (this.#depth === 0) deliver();
    else this.#queued.push(deliver);
  }

  /** Run fn as an operation; the outermost one delivers what was queued when it ends. */
  operation<T>(fn: () => T): T {
    this.enter();
    try {
      return fn();
    } finally {
      this.leave();
    }
  }

  /**
   * The same as operation() without a closure, for the write path: `enter()` then, in a `finally`, `leave()`
   * (every enter must be left once).
   */
  enter(): void {
    this.#depth++;
  }

  leave(): void {
    this.#depth--;
    if (this.#depth === 0 && this.#queued.length !== 0) this.#flush();
  }

  #flush(): void {
    // A listener may raise more (delivered at once, depth being 0) or run an operation (which flushes on its
    // own end): take one at a time so the order raised is kept either way.
    for (let next = this.#queued.shift(); next !== undefined; next = this.#queued.shift()) next();
  }
}
