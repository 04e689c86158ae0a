/**
 * The Ceph client API thinpool uses: a connection to a cluster (`RadosCluster`, rados_t) and an I/O context on one
 * Ceph pool (`RadosIoctx`, rados_ioctx_t) with object reads, writes, listing and cls locks, every failure a
 * ThinpoolError. Layer: io. The library binding is librados-ffi.ts; asynchronous requests are librados-aio.ts.
 *
 * Contract:
 * - librados is loaded lazily, on the first `RadosCluster.connect()`: file and memory pools never load koffi or
 *   librados. Where either is missing the error (code ENOENT) names what to install: Debian package `librados2`
 *   (part of `ceph-common`), or npm package `koffi`.
 * - All calls are synchronous (they block the event loop for one round trip to the cluster) except `aioWrite` /
 *   `aioRead`, which run on librados's own threads and resolve when the cluster acknowledges; completions are
 *   collected in batches (librados-aio.ts). Requests of one client to one object are applied in the order they
 *   were sent, synchronous or not (RADOS's ordering).
 * - `osdTimeoutSeconds` bounds every OSD request (`rados_osd_op_timeout`): a request to a dead OSD fails with
 *   EIO "timed out" instead of waiting for the OSD to come back.
 * - A client blocklisted by another (lock break, see rados-pool.ts) gets EFENCED on every later request: its
 *   writes never land.
 */
import { ThinpoolError } from '../errors.js';
import {
  completionPath,
  inFlightCount,
  requestsStarted,
  submit,
  useCompletionPath,
  waitAll as waitForAllRequests,
} from './librados-aio.js';
import { EBUSY, EEXIST, ENOENT, ERANGE, type Lib, load, radosError } from './librados-ffi.js';

export interface RadosConnectOptions {
  /** ceph.conf path; default: CEPH_CONF, then librados's search (/etc/ceph/ceph.conf, ...). */
  conf?: string;
  /** Client id without "client." (default: CEPH_ARGS / "admin", as the rbd tool). */
  id?: string;
  /** Bound of each OSD request in seconds (0: wait forever). Default 30. */
  osdTimeoutSeconds?: number;
  /** Bound of each monitor request and of connecting, in seconds. Default 30. */
  monTimeoutSeconds?: number;
}

/** A connection to a cluster (rados_t). */
export class RadosCluster {
  #h: unknown;
  readonly lib: Lib;
  readonly id: string;
  #ioctxs = new Set<RadosIoctx>();

  private constructor(l: Lib, h: unknown, id: string) {
    this.lib = l;
    this.#h = h;
    this.id = id;
  }

  static connect(opts: RadosConnectOptions = {}): RadosCluster {
    const l = load();
    const id = opts.id ?? 'admin';
    const out = [null];
    let rc = l.create2(out, 'ceph', `client.${id}`, 0);
    if (rc < 0) throw radosError(rc, `cannot create a client for client.${id}`);
    const h = out[0];
    const shutdownAndThrow = (e: ThinpoolError): never => {
      l.shutdown(h);
      throw e;
    };
    const conf = opts.conf ?? process.env.CEPH_CONF;
    rc = l.confReadFile(h, conf ?? null);
    if (rc < 0)
      shutdownAndThrow(
        new ThinpoolError(
          rc === -ENOENT ? 'ENOENT' : 'EIO',
          `rados: cannot read the Ceph configuration ${conf ?? '(default search path: /etc/ceph/ceph.conf, ~/.ceph/config, ./ceph.conf)'}: error ${-rc}; pass --ceph-conf or set CEPH_CONF`,
        ),
      );
    l.confParseEnv(h, null);
    const osdT = String(opts.osdTimeoutSeconds ?? 30);
    const monT = String(opts.monTimeoutSeconds ?? 30);
    for (const [k, v] of [
      ['rados_osd_op_timeout', osdT],
      ['rados_mon_op_timeout', monT],
      ['client_mount_timeout', monT],
    ]) {
      rc = l.confSet(h, k, v);
      if (rc < 0) shutdownAndThrow(radosError(rc, `cannot set ${k}`));
    }
    rc = l.connect(h);
    if (rc < 0) shutdownAndThrow(radosError(rc, `cannot connect to the cluster of ${conf ?? 'the default configuration'} as client.${id}`));
    return new RadosCluster(l, h, id);
  }

  get handle(): unknown {
    if (this.#h === null) throw new ThinpoolError('ECLOSED', 'rados: the cluster connection is closed');
    return this.#h;
  }

  /** This client's global id: lockers show it as "client.N". */
  get instanceId(): bigint {
    return BigInt(this.lib.instanceId(this.handle));
  }

  ioctx(pool: string): RadosIoctx {
    const out = [null];
    const rc = this.lib.ioctxCreate(this.handle, pool, out);
    if (rc < 0)
      throw rc === -ENOENT
        ? new ThinpoolError('ENOENT', `rados: no Ceph pool ${JSON.stringify(pool)}: create it with "ceph osd pool create ${pool}"`)
        : radosError(rc, `cannot open Ceph pool ${pool}`);
    const io = new RadosIoctx(this, out[0], () => this.#ioctxs.delete(io));
    this.#ioctxs.add(io);
    return io;
  }

  /** Blocklist a client address (as `ceph osd blocklist add`); waits until this client has the new OSD map. */
  blocklist(addr: string, expireSeconds = 0): void {
    const rc = this.lib.blocklistAdd(this.handle, addr, expireSeconds);
    if (rc < 0) throw radosError(rc, `cannot blocklist ${addr}`);
  }

  close(): void {
    if (this.#h === null) return;
    for (const io of [...this.#ioctxs]) io.close();
    this.lib.shutdown(this.#h);
    this.#h = null;
  }
}

export interface Locker {
  client: string;
  cookie: string;
  addr: string;
}

/** An I/O context on one Ceph pool (rados_ioctx_t). Object names are strings; offsets are bytes. */
export class RadosIoctx {
  #h: unknown;
  /** The rados_ioctx_t's address (the native completion path takes it as a number). */
  readonly #address: bigint;
  readonly cluster: RadosCluster;
  readonly #onClose: () => void;

  constructor(cluster: RadosCluster, h: unknown, onClose: () => void) {
    this.cluster = cluster;
    this.#h = h;
    this.#address = cluster.lib.koffi.address(h) as bigint;
    this.#onClose = onClose;
  }

  get handle(): unknown {
    if (this.#h === null) throw new ThinpoolError('ECLOSED', 'rados: the I/O context is closed');
    return this.#h;
  }

  get #l(): Lib {
    return this.cluster.lib;
  }

  write(oid: string, buf: Uint8Array, off: number): void {
    const rc = this.#l.write(this.handle, oid, buf, buf.length, off);
    if (rc < 0) throw radosError(rc, `write of ${buf.length} bytes at ${off} to object ${oid}`);
  }

  /** Replace the object's contents atomically. */
  writeFull(oid: string, buf: Uint8Array): void {
    const rc = this.#l.writeFull(this.handle, oid, buf, buf.length);
    if (rc < 0) throw radosError(rc, `write of object ${oid}`);
  }

  /** Reads into buf; returns the bytes the object had there (0 for a missing object). The rest is untouched. */
  read(oid: string, buf: Uint8Array, off: number): number {
    if (buf.length === 0) return 0;
    const rc = this.#l.read(this.handle, oid, buf, buf.length, off);
    if (rc === -ENOENT) return 0;
    if (rc < 0) throw radosError(rc, `read of ${buf.length} bytes at ${off} from object ${oid}`);
    return rc;
  }

  /** The whole object, or null when it does not exist. */
  readAll(oid: string): Uint8Array | null {
    const size = this.size(oid);
    if (size === null) return null;
    const buf = new Uint8Array(size);
    const n = this.read(oid, buf, 0);
    return buf.subarray(0, n);
  }

  /** Object size, or null when it does not exist. */
  size(oid: string): number | null {
    const size = [0n];
    const mtime = [0n];
    const rc = this.#l.stat(this.handle, oid, size, mtime);
    if (rc === -ENOENT) return null;
    if (rc < 0) throw radosError(rc, `stat of object ${oid}`);
    return Number(size[0]);
  }

  /** Remove an object; false when it did not exist. */
  remove(oid: string): boolean {
    const rc = this.#l.remove(this.handle, oid);
    if (rc === -ENOENT) return false;
    if (rc < 0) throw radosError(rc, `remove of object ${oid}`);
    return true;
  }

  /** Truncate (or extend with zeros) an existing object; false when it did not exist. */
  trunc(oid: string, size: number): boolean {
    if (this.size(oid) === null) return false;
    const rc = this.#l.trunc(this.handle, oid, size);
    if (rc < 0) throw radosError(rc, `truncate of object ${oid} to ${size}`);
    return true;
  }

  /** Zero a range of an object (a missing object stays missing). */
  zero(oid: string, off: number, len: number): void {
    const l = this.#l;
    const op = l.createWriteOp();
    try {
      l.writeOpZero(op, off, len);
      const rc = l.writeOpOperate(op, this.handle, oid, null, 0);
      if (rc < 0 && rc !== -ENOENT) throw radosError(rc, `zero of ${len} bytes at ${off} in object ${oid}`);
    } finally {
      l.releaseWriteOp(op);
    }
  }

  /** Every object name in the pool (default namespace). */
  list(): string[] {
    const l = this.#l;
    const out = [null];
    let rc = l.listOpen(this.handle, out);
    if (rc < 0) throw radosError(rc, 'listing objects');
    const ctx = out[0];
    const names: string[] = [];
    try {
      for (;;) {
        const entry: Array<string | null> = [null];
        rc = l.listNext(ctx, entry, [null], [null]);
        if (rc === -ENOENT) break;
        if (rc < 0) throw radosError(rc, 'listing objects');
        if (entry[0] !== null) names.push(entry[0]);
      }
    } finally {
      l.listClose(ctx);
    }
    return names;
  }

  /** Take the exclusive cls_lock `name` on oid with cookie; EBUSY when someone else holds it. */
  lockExclusive(oid: string, name: string, cookie: string, desc: string): void {
    const rc = this.#l.lockExclusive(this.handle, oid, name, cookie, desc, null, 0);
    if (rc === -EBUSY || rc === -EEXIST) throw new ThinpoolError('EBUSY', `rados: lock ${name} on ${oid} is held`);
    if (rc < 0) throw radosError(rc, `lock ${name} on object ${oid}`);
  }

  unlock(oid: string, name: string, cookie: string): void {
    const rc = this.#l.unlock(this.handle, oid, name, cookie);
    if (rc < 0 && rc !== -ENOENT) throw radosError(rc, `unlock ${name} on object ${oid}`);
  }

  /** Holders of lock `name` on oid. */
  lockers(oid: string, name: string): Locker[] {
    let cap = 4096;
    for (;;) {
      const bufs = [new Uint8Array(cap), new Uint8Array(cap), new Uint8Array(cap), new Uint8Array(cap)];
      const lens = [[cap], [cap], [cap], [cap]];
      const rc = Number(
        this.#l.listLockers(this.handle, oid, name, [0], bufs[0], lens[0], bufs[1], lens[1], bufs[2], lens[2], bufs[3], lens[3]),
      );
      if (rc === -ERANGE) {
        cap *= 4;
        continue;
      }
      if (rc === -ENOENT) return [];
      if (rc < 0) throw radosError(rc, `list lockers of ${name} on object ${oid}`);
      const split = (i: number) => Buffer.from(bufs[i].subarray(0, lens[i][0])).toString('utf8').split('\0');
      const clients = split(1);
      const cookies = split(2);
      const addrs = split(3);
      const out: Locker[] = [];
      for (let i = 0; i < rc; i++) out.push({ client: clients[i], cookie: cookies[i], addr: addrs[i] });
      return out;
    }
  }

  /** Requests of this process in flight (any I/O context). */
  static get inFlight(): number {
    return inFlightCount();
  }

  /**
   * How completions reach the event loop: 'native' (the helper's C callback, one thread hand-off) or 'koffi'
   * (a koffi worker waits, two hand-offs). See librados-aio.ts.
   */
  static get completionPath(): 'native' | 'koffi' {
    return completionPath();
  }

  /** Asynchronous requests this process has started on each completion path (refused ones included). */
  static get requestsStarted(): { native: number; koffi: number } {
    return requestsStarted();
  }

  /** Choose the completion path (false: the native one is not built); EBUSY while requests are in flight. */
  static useCompletionPath(path: 'native' | 'koffi'): boolean {
    return useCompletionPath(path);
  }

  /**
   * Write through librados aio; resolves when the cluster acknowledges (the write is then durable). `settle`,
   * when given, sees the result synchronously as soon as the completion is found (by the waiter or `waitAll`).
   */
  aioWrite(oid: string, buf: Uint8Array, off: number, settle?: (e: ThinpoolError | null) => void): Promise<void> {
    const s = settle && ((rc: number) => settle(rc < 0 ? radosError(rc, `write of ${buf.length} bytes at ${off} to object ${oid}`) : null));
    return this.#aio('write', oid, buf, off, s).then((rc) => {
      if (rc < 0) throw radosError(rc, `write of ${buf.length} bytes at ${off} to object ${oid}`);
    });
  }

  /** Read through librados aio; resolves to the bytes the object had there (0 for a missing object). */
  aioRead(oid: string, buf: Uint8Array, off: number): Promise<number> {
    return this.#aio('read', oid, buf, off).then((rc) => {
      if (rc === -ENOENT) return 0;
      if (rc < 0) throw radosError(rc, `read of ${buf.length} bytes at ${off} from object ${oid}`);
      return rc;
    });
  }

  /**
   * Block until every asynchronous request of this process has completed; their `settle` hooks have run when
   * this returns (their promises settle later).
   */
  waitAll(): void {
    waitForAllRequests(this.#l);
  }

  #aio(kind: 'read' | 'write', oid: string, buf: Uint8Array, off: number, settle?: (rc: number) => void): Promise<number> {
    const io = this.handle;
    return submit(this.#l, { write: kind === 'write', io, ioAddress: this.#address, oid, buf, off }, settle);
  }

  breakLock(oid: string, name: string, client: string, cookie: string): void {
    const rc = this.#l.breakLock(this.handle, oid, name, client, cookie);
    if (rc < 0 && rc !== -ENOENT) throw radosError(rc, `break lock ${name} of ${client} on object ${oid}`);
  }

  close(): void {
    if (this.#h === null) return;
    this.#l.ioctxDestroy(this.#h);
    this.#h = null;
    this.#onClose();
  }
}
