/**
 * Pools in Ceph RADOS: a pool addressed `rados://CEPH_POOL/NAME` is a set of objects in Ceph pool CEPH_POOL, all
 * named with the prefix NAME:
 *   NAME.header                 identity (JSON) and the writer's exclusive lock (cls_lock "thinpool")
 *   NAME.metadata, NAME.data    device descriptors; NAME.metadata.<16 hex>, NAME.data.<16 hex> their objects
 *   NAME.catalog(.next)         the catalog, published / staged (catalog.ts protocol; each write is atomic)
 *   NAME.catalog.held           the catalog of the held metadata root (while one is held)
 *   NAME.hwm                    the data high-water mark (high-water.ts)
 *
 * Contract:
 * - One writer, fenced: opening for write takes the exclusive lock on the header; a second opener (any host,
 *   any process, this one included) gets EBUSY naming the holder (host, pid, since) from the lock's cookie.
 *   `breakRadosLock` blocklists each holder's client address before removing its lock, so nothing the old
 *   holder still sends lands (its requests fail with EFENCED). Read-only opens take no lock and read one commit
 *   (or the held metadata root) through rados-reader.ts; `NAME.catalog.held` is the held root's catalog.
 * - The header's JSON is written last at format: a pool shows up in `listRadosPools` only once complete.
 * - The cluster comes from `conf` (else CEPH_CONF, else librados's default search) and client `id` (default
 *   "admin"), as the rbd tool; every OSD request is bounded by `osdTimeoutSeconds` (EIO "timed out").
 * - librados is loaded only here (through librados.ts): file pools never load it.
 */
import { createRequire } from 'node:module';
import { ThinpoolError } from '../errors.js';
import type { BlockDevice } from '../io/block-device.js';
import { RadosCluster, type RadosIoctx, type Locker } from '../io/librados.js';
import { RadosDevice } from '../io/rados-device.js';
import { type CatalogData, type CatalogStore, type Envelope, parseEnvelope } from './catalog.js';
import type { HighWaterStore } from './high-water.js';
import { OPEN_ATTEMPTS, openReaderView } from './rados-reader.js';

const RADOS_SCHEME = 'rados://';
const LOCK_NAME = 'thinpool';
const NAME_RULE = /^[A-Za-z0-9_-]{1,96}$/;

export interface CephOptions {
  /** ceph.conf path (default: CEPH_CONF, then /etc/ceph/ceph.conf). */
  conf?: string;
  /** Client id without "client." (default "admin"). */
  id?: string;
  /** Bound of each OSD request in seconds (default 30; 0: no bound). */
  osdTimeoutSeconds?: number;
  /** Bytes per data object at format: a power of two, 4 KiB to 64 MiB (default 4 MiB). */
  objectSize?: number;
  /**
   * Write-back for data written asynchronously (volume.write, the NBD server): up to this many bytes of such
   * writes are reported done before the cluster acknowledges them, as librbd's cache does; a commit (an NBD
   * FLUSH or FUA) waits for all of them, and a failure among them fails that commit and every later write
   * (rados-device.ts). Default 0: every write is acknowledged by the cluster before it is reported done.
   */
  writeBackBytes?: number;
}

export interface RadosAddress {
  cephPool: string;
  name: string;
}

export function isRadosAddress(s: string): boolean {
  return s.startsWith(RADOS_SCHEME);
}

/** Parse `rados://CEPH_POOL/NAME`; EINVAL with the expected form otherwise. */
export function parseRadosAddress(s: string): RadosAddress {
  const rest = s.slice(RADOS_SCHEME.length);
  const slash = rest.indexOf('/');
  const cephPool = slash < 0 ? rest : rest.slice(0, slash);
  const name = slash < 0 ? '' : rest.slice(slash + 1);
  if (!isRadosAddress(s) || cephPool === '' || !NAME_RULE.test(name)) {
    throw new ThinpoolError(
      'EINVAL',
      `bad RADOS pool address ${JSON.stringify(s)}: use rados://CEPH_POOL/NAME, NAME of 1-96 letters, digits, _ and -`,
    );
  }
  return { cephPool, name };
}

/** Who holds a pool's write lock. */
export interface RadosHolder {
  host: string;
  pid: number;
  since: string;
  client: string;
  addr: string;
}

function holderOf(l: Locker): RadosHolder {
  const [host = '?', pid = '0', since = '?'] = l.cookie.split(' ');
  return { host, pid: Number(pid), since, client: l.client, addr: l.addr };
}

function describeHolder(h: RadosHolder): string {
  return `process ${h.pid} on host ${h.host} since ${h.since} (${h.client})`;
}

export class RadosCatalogStore implements CatalogStore {
  constructor(
    readonly io: RadosIoctx,
    readonly name: string,
  ) {}
  get #published(): string {
    return `${this.name}.catalog`;
  }
  get #staged(): string {
    return `${this.name}.catalog.next`;
  }
  readPublished(): CatalogData | null {
    const raw = this.io.readAll(this.#published);
    return raw === null ? null : parseEnvelope(Buffer.from(raw).toString('utf8'), `RADOS object ${this.#published}`).catalog;
  }
  readStaged(): Envelope | null {
    const raw = this.io.readAll(this.#staged);
    if (raw === null) return null;
    try {
      return parseEnvelope(Buffer.from(raw).toString('utf8'), this.#staged);
    } catch {
      return null;
    }
  }
  stage(catalog: CatalogData, fingerprint: string): void {
    this.io.writeFull(this.#staged, Buffer.from(JSON.stringify({ fingerprint, catalog } satisfies Envelope)));
  }
  /** Copies staged over published (one atomic write), then drops staged: a crash between is rolled forward. */
  publish(): void {
    const raw = this.io.readAll(this.#staged);
    if (raw === null) return;
    this.io.writeFull(this.#published, raw);
    this.io.remove(this.#staged);
  }
  discardStaged(): void {
    this.io.remove(this.#staged);
  }
  /** Record the catalog of a held metadata root (read by read-only opens, rados-reader.ts), tagged with its roots. */
  hold(catalog: CatalogData, tag: string): void {
    this.io.writeFull(`${this.name}.catalog.held`, Buffer.from(JSON.stringify({ fingerprint: tag, catalog } satisfies Envelope)));
  }
  dropHeld(): void {
    this.io.remove(`${this.name}.catalog.held`);
  }
}

export class RadosHighWaterStore implements HighWaterStore {
  constructor(
    readonly io: RadosIoctx,
    readonly name: string,
  ) {}
  read(): number | null {
    const raw = this.io.readAll(`${this.name}.hwm`);
    if (raw === null) return null;
    const n = Number(Buffer.from(raw).toString('utf8').trim());
    return Number.isSafeInteger(n) && n >= 0 ? n : null;
  }
  write(dblock: number): void {
    this.io.writeFull(`${this.name}.hwm`, Buffer.from(`${dblock}\n`));
  }
}

/** What ThinPool needs of a RADOS pool (a PoolStorage). */
export interface RadosStorage {
  metadata: BlockDevice;
  data: BlockDevice;
  catalog: CatalogStore;
  highWater: HighWaterStore;
  release(): void;
  rados: { address: string; io: RadosIoctx };
  /** A read-only open: called once the pool is open (rados-reader.ts). */
  settle?(): void;
}

interface Header {
  format: 'thinpool-rados-pool';
  version: 1;
  created: string;
}

function connect(a: RadosAddress, opts: CephOptions): { cluster: RadosCluster; io: RadosIoctx } {
  const cluster = RadosCluster.connect({ conf: opts.conf, id: opts.id, osdTimeoutSeconds: opts.osdTimeoutSeconds });
  try {
    return { cluster, io: cluster.ioctx(a.cephPool) };
  } catch (e) {
    cluster.close();
    throw e;
  }
}

function readHeader(io: RadosIoctx, name: string): Header | null {
  const raw = io.readAll(`${name}.header`);
  if (raw === null || raw.length === 0) return null;
  try {
    const h = JSON.parse(Buffer.from(raw).toString('utf8')) as Header;
    return h.format === 'thinpool-rados-pool' ? h : null;
  } catch {
    return null;
  }
}

/** The host's name, from node:os loaded here only: every start-up of the CLI would load it for file pools too. */
function hostname(): string {
  return (createRequire(import.meta.url)('node:os') as typeof import('node:os')).hostname();
}

/** Take the write lock on the header (creating the object if needed); EBUSY naming the holder. */
function takeLock(io: RadosIoctx, address: string, name: string): () => void {
  const oid = `${name}.header`;
  const cookie = `${hostname()} ${process.pid} ${new Date().toISOString()} ${Math.random().toString(36).slice(2, 10)}`;
  try {
    io.lockExclusive(oid, LOCK_NAME, cookie, 'thinpool writer');
  } catch (e) {
    if ((e as ThinpoolError).code !== 'EBUSY') throw e;
    const holders = io.lockers(oid, LOCK_NAME).map(holderOf);
    const who = holders.length > 0 ? holders.map(describeHolder).join(', ') : 'another client';
    throw new ThinpoolError(
      'EBUSY',
      `pool ${address} is open for writing by ${who}; if that process is gone, run "thinpool lock break ${address}"`,
    );
  }
  return () => {
    try {
      io.unlock(oid, LOCK_NAME, cookie);
    } catch {
      /* fenced or cluster gone: the lock is broken or dies with the pool's next break */
    }
  };
}

function assemble(
  address: string,
  cluster: RadosCluster,
  io: RadosIoctx,
  name: string,
  readOnly: boolean,
  unlock: (() => void) | null,
  create?: { dataSize: number; metadataSize: number; objectSize?: number },
  writeBackBytes = 0,
): RadosStorage {
  const devices: RadosDevice[] = [];
  try {
    if (create) {
      devices.push(RadosDevice.create(io, `${name}.metadata`, create.metadataSize));
      devices.push(RadosDevice.create(io, `${name}.data`, create.dataSize, { objectSize: create.objectSize, writeBackBytes }));
    } else {
      devices.push(RadosDevice.open(io, `${name}.metadata`, { readOnly }));
      devices.push(RadosDevice.open(io, `${name}.data`, { readOnly, writeBackBytes }));
    }
  } catch (e) {
    unlock?.();
    cluster.close();
    throw e;
  }
  const highWater = new RadosHighWaterStore(io, name);
  if (create) highWater.write(0);
  const catalog = new RadosCatalogStore(io, name);
  const release = () => {
    unlock?.();
    cluster.close();
  };
  if (readOnly) {
    // No lock: a consistent view of one commit while the writer goes on (rados-reader.ts).
    try {
      const v = openReaderView(io, name, devices[0], devices[1], catalog);
      return { metadata: v.metadata, data: v.data, catalog: v.catalog, highWater, rados: { address, io }, release, settle: v.settle };
    } catch (e) {
      release();
      throw e;
    }
  }
  return { metadata: devices[0], data: devices[1], catalog, highWater, rados: { address, io }, release };
}

/**
 * New, empty devices for a pool at `address`, write-locked; the header is marked complete by `finish()` once
 * the pool is formatted on them. EEXIST when a pool (or part of one) is there.
 */
export function formatRadosStorage(
  address: string,
  sizes: { dataSize: number; metadataSize: number },
  opts: CephOptions = {},
): RadosStorage & { finish(): void } {
  const a = parseRadosAddress(address);
  const { cluster, io } = connect(a, opts);
  let unlock: (() => void) | null = null;
  try {
    unlock = takeLock(io, address, a.name);
    if (readHeader(io, a.name) !== null) throw new ThinpoolError('EEXIST', `${address} already holds a thin pool`);
  } catch (e) {
    unlock?.();
    cluster.close();
    throw e;
  }
  const s = assemble(address, cluster, io, a.name, false, unlock, { ...sizes, objectSize: opts.objectSize }, opts.writeBackBytes);
  return {
    ...s,
    finish: () => {
      const h: Header = { format: 'thinpool-rados-pool', version: 1, created: new Date().toISOString() };
      io.writeFull(`${a.name}.header`, Buffer.from(JSON.stringify(h)));
    },
  };
}

/** The devices of the pool at `address`; write-locked unless readOnly. ENOENT when no pool is there. */
export function openRadosStorage(address: string, opts: CephOptions & { readOnly?: boolean } = {}): RadosStorage {
  const a = parseRadosAddress(address);
  const { cluster, io } = connect(a, opts);
  let unlock: (() => void) | null = null;
  try {
    if (readHeader(io, a.name) === null) {
      throw new ThinpoolError(
        'ENOENT',
        `no thin pool at ${address}: list them with "thinpool ls-pools ${RADOS_SCHEME}${a.cephPool}", create one with "thinpool init ${address} --size SIZE"`,
      );
    }
    if (!opts.readOnly) unlock = takeLock(io, address, a.name);
  } catch (e) {
    cluster.close();
    throw e;
  }
  return assemble(address, cluster, io, a.name, opts.readOnly === true, unlock, undefined, opts.writeBackBytes);
}

/** Names of the thin pools in a Ceph pool (`rados://CEPH_POOL`, with or without a trailing slash). */
export function listRadosPools(
  cephPoolAddress: string,
  opts: CephOptions = {},
): Array<{ name: string; address: string; created: string; holder: RadosHolder | null }> {
  const cephPool = cephPoolAddress.slice(RADOS_SCHEME.length).replace(/\/$/, '');
  if (!isRadosAddress(cephPoolAddress) || cephPool === '' || cephPool.includes('/')) {
    throw new ThinpoolError('EINVAL', `bad Ceph pool address ${JSON.stringify(cephPoolAddress)}: use rados://CEPH_POOL`);
  }
  const { cluster, io } = connect({ cephPool, name: 'x' }, opts);
  try {
    const out = [];
    for (const oid of io.list().sort()) {
      if (!oid.endsWith('.header')) continue;
      const name = oid.slice(0, -'.header'.length);
      if (!NAME_RULE.test(name)) continue;
      const h = readHeader(io, name);
      if (h === null) continue;
      const holders = io.lockers(oid, LOCK_NAME).map(holderOf);
      out.push({ name, address: `${RADOS_SCHEME}${cephPool}/${name}`, created: h.created, holder: holders[0] ?? null });
    }
    return out;
  } finally {
    cluster.close();
  }
}

/**
 * Break the write lock of the pool at `address` (as `rbd lock remove`): blocklist each holder's client address,
 * so nothing it still sends lands, then remove its lock. Returns the holders fenced (empty: nobody held it).
 */
export function breakRadosLock(address: string, opts: CephOptions = {}): RadosHolder[] {
  const a = parseRadosAddress(address);
  const { cluster, io } = connect(a, opts);
  try {
    if (readHeader(io, a.name) === null) throw new ThinpoolError('ENOENT', `no thin pool at ${address}`);
    const oid = `${a.name}.header`;
    const lockers = io.lockers(oid, LOCK_NAME);
    for (const l of lockers) {
      cluster.blocklist(l.addr);
      io.breakLock(oid, LOCK_NAME, l.client, l.cookie);
    }
    return lockers.map(holderOf);
  } finally {
    cluster.close();
  }
}

/** Remove every object of the pool at `address` (it must not be open for writing). */
export function destroyRadosPool(address: string, opts: CephOptions = {}): void {
  const a = parseRadosAddress(address);
  const { cluster, io } = connect(a, opts);
  try {
    const unlock = takeLock(io, address, a.name);
    try {
      RadosDevice.destroy(io, `${a.name}.data`);
      RadosDevice.destroy(io, `${a.name}.metadata`);
      for (const o of ['catalog', 'catalog.next', 'catalog.held', 'hwm']) io.remove(`${a.name}.${o}`);
    } finally {
      unlock();
    }
    io.remove(`${a.name}.header`);
  } finally {
    cluster.close();
  }
}

/**
 * Copy the committed metadata device of the pool at `address` (no lock taken) to `sink`, in chunks of at most
 * 4 MiB, in order, then reads block 0 again: when the writer committed meanwhile (the copy may mix two commits)
 * the copy starts over from offset 0 (the sink writes each chunk at its offset, so the next copy replaces it),
 * up to OPEN_ATTEMPTS times, then ESTALE. Returns the device size.
 */
export function readRadosMetadata(address: string, opts: CephOptions, sink: (chunk: Uint8Array, offset: number) => void): number {
  const a = parseRadosAddress(address);
  const { cluster, io } = connect(a, opts);
  try {
    if (readHeader(io, a.name) === null) throw new ThinpoolError('ENOENT', `no thin pool at ${address}`);
    const md = RadosDevice.open(io, `${a.name}.metadata`, { readOnly: true });
    try {
      const size = md.sizeBytes;
      const buf = new Uint8Array(Math.min(size, 4 * 1024 * 1024));
      const first = new Uint8Array(4096);
      const last = new Uint8Array(4096);
      for (let attempt = 0; attempt < OPEN_ATTEMPTS; attempt++) {
        md.read(first, 0);
        for (let off = 0; off < size; off += buf.length) {
          const part = buf.subarray(0, Math.min(buf.length, size - off));
          md.read(part, off);
          sink(part, off);
        }
        md.read(last, 0);
        if (Buffer.compare(first, last) !== 0) continue;
        return size;
      }
      throw new ThinpoolError('ESTALE', `the writer of ${address} committed during each of ${OPEN_ATTEMPTS} attempts to copy its metadata`);
    } finally {
      md.close();
    }
  } finally {
    cluster.close();
  }
}
