/**
 * The binding of librados (Ceph's C client library, librados.so.2) through koffi's prebuilt FFI: loading the
 * library, the C signatures of the few calls thinpool uses, and the mapping of their negative return values to
 * ThinpoolErrors. Layer: io (below everything else; only librados.ts and librados-aio.ts use it).
 *
 * Contract:
 * - `load()` loads koffi and librados once, on first use (`RadosCluster.connect()`): file and memory pools never
 *   load either. Where either is missing the error (code ENOENT) names what to install: Debian package
 *   `librados2` (part of `ceph-common`), or npm package `koffi`.
 * - `radosError(rc, what)` turns a negative librados return value into a ThinpoolError with a stable code:
 *   ENOENT, EFENCED (this client is blocklisted), EBUSY, EEXIST, else EIO; a timeout or a permission error says
 *   so in the message.
 */
import { createRequire } from 'node:module';
import { ThinpoolError, type ErrorCode } from '../errors.js';

/* eslint-disable @typescript-eslint/no-explicit-any */
export type Fn = (...args: any[]) => any;

export interface Lib {
  koffi: any;
  create2: Fn;
  confReadFile: Fn;
  confSet: Fn;
  confParseEnv: Fn;
  connect: Fn;
  shutdown: Fn;
  instanceId: Fn;
  ioctxCreate: Fn;
  ioctxDestroy: Fn;
  setNamespace: Fn;
  write: Fn;
  writeFull: Fn;
  read: Fn;
  remove: Fn;
  trunc: Fn;
  stat: Fn;
  createWriteOp: Fn;
  releaseWriteOp: Fn;
  writeOpZero: Fn;
  writeOpOperate: Fn;
  lockExclusive: Fn;
  unlock: Fn;
  listLockers: Fn;
  breakLock: Fn;
  blocklistAdd: Fn;
  listOpen: Fn;
  listNext: Fn;
  listClose: Fn;
  aioCreate: Fn;
  aioRelease: Fn;
  aioWrite: Fn;
  aioRead: Fn;
  aioGetReturn: Fn;
  aioWaitComplete: Fn;
  aioIsComplete: Fn;
  /** `.async(comp, (err, rc) => ...)` runs it on a koffi worker thread. */
  aioWaitCompleteAsync: Fn;
}

let lib: Lib | null = null;

export const ENOENT = 2;
const ETIMEDOUT = 110;
const ESHUTDOWN = 108; // librados's EBLOCKLISTED
export const EBUSY = 16;
export const EEXIST = 17;
export const ERANGE = 34;

/** The library, loaded on first use (koffi and librados.so.2). */
export function load(): Lib {
  if (lib !== null) return lib;
  const require = createRequire(import.meta.url);
  let koffi: any;
  try {
    koffi = require('koffi');
  } catch (e) {
    throw new ThinpoolError(
      'ENOENT',
      'rados: pools need the npm package koffi (an optional dependency of thinpool): run "npm install koffi"',
      { cause: e },
    );
  }
  let so: any;
  try {
    so = koffi.load('librados.so.2');
  } catch (e) {
    throw new ThinpoolError(
      'ENOENT',
      'rados: pools need librados (librados.so.2): install the Debian package librados2 (it comes with ceph-common): apt-get install ceph-common',
      { cause: e },
    );
  }
  const f = (sig: string) => so.func(sig);
  const waitForComplete = f('int rados_aio_wait_for_complete(void *c)');
  lib = {
    koffi,
    create2: f('int rados_create2(_Out_ void **cluster, const char *clustername, const char *name, uint64_t flags)'),
    confReadFile: f('int rados_conf_read_file(void *cluster, const char *path)'),
    confSet: f('int rados_conf_set(void *cluster, const char *option, const char *value)'),
    confParseEnv: f('int rados_conf_parse_env(void *cluster, const char *var)'),
    connect: f('int rados_connect(void *cluster)'),
    shutdown: f('void rados_shutdown(void *cluster)'),
    instanceId: f('uint64_t rados_get_instance_id(void *cluster)'),
    ioctxCreate: f('int rados_ioctx_create(void *cluster, const char *pool, _Out_ void **ioctx)'),
    ioctxDestroy: f('void rados_ioctx_destroy(void *ioctx)'),
    setNamespace: f('void rados_ioctx_set_namespace(void *ioctx, const char *nspace)'),
    write: f('int rados_write(void *io, const char *oid, const uint8_t *buf, size_t len, uint64_t off)'),
    writeFull: f('int rados_write_full(void *io, const char *oid, const uint8_t *buf, size_t len)'),
    read: f('int rados_read(void *io, const char *oid, _Out_ uint8_t *buf, size_t len, uint64_t off)'),
    remove: f('int rados_remove(void *io, const char *oid)'),
    trunc: f('int rados_trunc(void *io, const char *oid, uint64_t size)'),
    stat: f('int rados_stat(void *io, const char *oid, _Out_ uint64_t *size, _Out_ int64_t *mtime)'),
    createWriteOp: f('void *rados_create_write_op()'),
    releaseWriteOp: f('void rados_release_write_op(void *op)'),
    writeOpZero: f('void rados_write_op_zero(void *op, uint64_t off, uint64_t len)'),
    writeOpOperate: f('int rados_write_op_operate(void *op, void *io, const char *oid, void *mtime, int flags)'),
    lockExclusive: f(
      'int rados_lock_exclusive(void *io, const char *oid, const char *name, const char *cookie, const char *desc, void *duration, uint8_t flags)',
    ),
    unlock: f('int rados_unlock(void *io, const char *oid, const char *name, const char *cookie)'),
    listLockers: f(
      'int64_t rados_list_lockers(void *io, const char *oid, const char *name, _Out_ int *exclusive, _Out_ uint8_t *tag, _Inout_ size_t *tagLen, _Out_ uint8_t *clients, _Inout_ size_t *clientsLen, _Out_ uint8_t *cookies, _Inout_ size_t *cookiesLen, _Out_ uint8_t *addrs, _Inout_ size_t *addrsLen)',
    ),
    breakLock: f('int rados_break_lock(void *io, const char *oid, const char *name, const char *client, const char *cookie)'),
    blocklistAdd: f('int rados_blocklist_add(void *cluster, const char *addr, uint32_t expireSeconds)'),
    listOpen: f('int rados_nobjects_list_open(void *io, _Out_ void **ctx)'),
    listNext: f('int rados_nobjects_list_next(void *ctx, _Out_ const char **entry, _Out_ const char **key, _Out_ const char **nspace)'),
    listClose: f('void rados_nobjects_list_close(void *ctx)'),
    aioCreate: f('int rados_aio_create_completion2(void *arg, void *cb, _Out_ void **completion)'),
    aioRelease: f('void rados_aio_release(void *c)'),
    aioWrite: f('int rados_aio_write(void *io, const char *oid, void *c, const uint8_t *buf, size_t len, uint64_t off)'),
    aioRead: f('int rados_aio_read(void *io, const char *oid, void *c, uint8_t *buf, size_t len, uint64_t off)'),
    aioGetReturn: f('int rados_aio_get_return_value(void *c)'),
    aioWaitComplete: waitForComplete,
    aioIsComplete: f('int rados_aio_is_complete(void *c)'),
    aioWaitCompleteAsync: (comp: unknown, cb: Fn) => waitForComplete.async(comp, cb),
  };
  return lib;
}

/** A ThinpoolError for a negative librados return value. */
export function radosError(rc: number, what: string): ThinpoolError {
  const errno = -rc;
  let code: ErrorCode = 'EIO';
  let why = `error ${errno}`;
  if (errno === ENOENT) {
    code = 'ENOENT';
    why = 'no such object or pool';
  } else if (errno === ETIMEDOUT) why = 'timed out (is the OSD or monitor down?)';
  else if (errno === ESHUTDOWN) {
    code = 'EFENCED';
    why = 'this client is blocklisted: another opener broke its lock, so nothing it sends lands';
  } else if (errno === EBUSY) {
    code = 'EBUSY';
    why = 'busy';
  } else if (errno === EEXIST) {
    code = 'EEXIST';
    why = 'exists';
  } else if (errno === 1 || errno === 13) why = 'permission denied (check --ceph-id and its keyring)';
  return new ThinpoolError(code, `rados: ${what}: ${why}`);
}
