/**
 * Node internals behind net.Socket's user-buffer input (the `onread` option), found once: the symbols that
 * net.Socket keeps its read buffer and callbacks under, and the libuv handle of a socket.
 *
 * Contract: `userBufferKeys` is null when this Node does not expose the hook (SocketIO then uses 'data' events);
 * `socketHandle` returns undefined once the socket's handle is closed. Nothing here reads or writes a socket.
 */
import net, { type Socket } from 'node:net';

/** Node's symbols behind net.Socket's `onread` option, found once (absent: the 'data' event path is used). */
export const userBufferKeys = ((): { buf: symbol; cb: symbol; gen: symbol } | null => {
  try {
    const probe = new net.Socket();
    const syms = Object.getOwnPropertySymbols(probe);
    const find = (d: string) => syms.find((x) => x.description === d);
    const buf = find('kBuffer');
    const cb = find('kBufferCb');
    const gen = find('kBufferGen');
    probe.destroy();
    return buf && cb && gen ? { buf, cb, gen } : null;
  } catch {
    return null;
  }
})();
/** Whether this Node exposes the user-buffer input hook (the fast path; tests assert it on supported versions). */
export const FAST_IO_AVAILABLE = userBufferKeys !== null;

export interface SocketHandle {
  fd?: number;
  reading?: boolean;
  useUserBuffer?: (b: Uint8Array) => void;
  readStart?: () => number;
}

/** The libuv handle behind a net.Socket (Node internal `_handle`; undefined once closed). */
export function socketHandle(socket: Socket): SocketHandle | undefined {
  return (socket as unknown as { _handle?: SocketHandle | null })._handle ?? undefined;
}
