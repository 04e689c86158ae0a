// The spin guard (src/nbd/spin-guard.ts) with a made-up process CPU clock: spinning that had a CPU to itself
// stays allowed, spinning that got less than 3/4 of its wall time turns off for 100 ms and is measured again
// after; short chains are summed until they make 2 ms; a disabled guard always allows.
import { describe, expect, test } from 'vitest';
import { SpinGuard } from '../../src/nbd/spin-guard.js';

const MS = 1_000_000n;

/** A guard whose process CPU time (µs) is whatever `cpu.us` says. */
function guard(): { g: SpinGuard; cpu: { us: number } } {
  const cpu = { us: 0 };
  const g = new SpinGuard(() => cpu.us);
  g.enabled = true;
  return { g, cpu };
}

describe('spin guard', () => {
  test('a spin that had the CPU to itself stays allowed, however long it runs', () => {
    const { g, cpu } = guard();
    let t = 1000n * MS;
    g.start(t);
    for (let i = 0; i < 50; i++) {
      t += MS;
      cpu.us += 990; // 99% of the wall time on a CPU
      expect(g.check(t, false)).toBe(true);
    }
    t += MS;
    cpu.us += 1000;
    expect(g.check(t, true)).toBe(true);
    expect(g.backoffs).toBe(0);
    expect(g.allowed(t)).toBe(true);
  });

  test('a spin that shared its CPU turns spinning off for 100 ms, then it is measured again', () => {
    const { g, cpu } = guard();
    let t = 1000n * MS;
    g.start(t);
    t += MS;
    cpu.us += 500;
    expect(g.check(t, false), 'judged only after 2 ms').toBe(true);
    t += MS;
    cpu.us += 500; // 1 ms of CPU in 2 ms: half
    expect(g.check(t, false)).toBe(false);
    expect(g.backoffs).toBe(1);
    g.check(t, true);
    expect(g.allowed(t + 99n * MS)).toBe(false);
    expect(g.allowed(t + 100n * MS)).toBe(true);
    // Measured again: a fair stretch keeps it on.
    t += 100n * MS;
    g.start(t);
    t += 3n * MS;
    cpu.us += 2900;
    expect(g.check(t, true)).toBe(true);
    expect(g.backoffs).toBe(1);
  });

  test('short chains are summed: only their own time counts, not the gaps between them', () => {
    const { g, cpu } = guard();
    let t = 1000n * MS;
    // 40 chains of 100 µs each, fully on a CPU, with 1 ms of sleep (no CPU) between them.
    for (let i = 0; i < 40; i++) {
      g.start(t);
      t += MS / 10n;
      cpu.us += 100;
      expect(g.check(t, true)).toBe(true);
      t += MS; // asleep in the event loop: neither wall nor CPU counted
    }
    expect(g.backoffs).toBe(0);
    // The same chains, preempted for half of each: the sum crosses 2 ms and is judged contended.
    let off = false;
    for (let i = 0; i < 40 && !off; i++) {
      g.start(t);
      t += MS / 10n;
      cpu.us += 50;
      off = !g.check(t, true);
      t += MS;
    }
    expect(off).toBe(true);
    expect(g.backoffs).toBe(1);
  });

  test('a disabled guard always allows and measures nothing', () => {
    const { g, cpu } = guard();
    g.enabled = false;
    let t = 1000n * MS;
    g.start(t);
    t += 10n * MS;
    cpu.us += 1; // hardly any CPU: would be contended
    expect(g.check(t, true)).toBe(true);
    expect(g.allowed(t)).toBe(true);
    expect(g.backoffs).toBe(0);
  });
});
