// Optional native helpers: what node:fs lacks (fallocate punch hole, SEEK_DATA/SEEK_HOLE for file devices and
// sparse sources; blocking mode and pipe size of the standard streams for the CLI's bulk reads and writes;
// ranges copied inside the kernel with copy_file_range(2), or shared with the FICLONERANGE ioctl (reflink) where
// the file system can share extents, for copy-on-write; bytes sent from a file to any descriptor with sendfile(2)
// (the CLI's read to a pipe, a file or /dev/null: no copy through user space); write-back of a range started
// early with sync_file_range(2) (bulk writes, so that the commit's fdatasync finds little left to write); pread/pwrite of a typed array, one
// system call with no argument checks beyond the call's own (the file device's per-request path: fs.readSync
// validates and converts its five arguments on every call, about 1 µs of a 4 KiB page-cache read measured on
// the test machine). Built at install by
// scripts/build-native.mjs; the TypeScript side falls back when it is absent. Every function returns -errno on
// failure and never throws.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/fs.h>
#include <node_api.h>

static int64_t arg_i64(napi_env env, napi_value v) {
  int64_t out = 0;
  napi_get_value_int64(env, v, &out);
  return out;
}

// punchHole(fd, offset, length) -> 0 or -errno
static napi_value punch_hole(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t fd = arg_i64(env, argv[0]), off = arg_i64(env, argv[1]), len = arg_i64(env, argv[2]);
  int r = fallocate((int)fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len);
  napi_value out;
  napi_create_int32(env, r == 0 ? 0 : -errno, &out);
  return out;
}

// startWriteBack(fd, offset, length) -> 0 or -errno: sync_file_range(SYNC_FILE_RANGE_WRITE), which starts the
// write-back of the range's dirty pages and returns without waiting for it (no durability: that stays fdatasync's).
static napi_value start_write_back(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t fd = arg_i64(env, argv[0]), off = arg_i64(env, argv[1]), len = arg_i64(env, argv[2]);
  int r = sync_file_range((int)fd, (off64_t)off, (off64_t)len, SYNC_FILE_RANGE_WRITE);
  napi_value out;
  napi_create_int32(env, r == 0 ? 0 : -errno, &out);
  return out;
}

// seekData(fd, offset, whence 0=DATA 1=HOLE) -> offset, or -errno (-ENXIO past the last data)
static napi_value seek(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t fd = arg_i64(env, argv[0]), off = arg_i64(env, argv[1]), which = arg_i64(env, argv[2]);
  off_t r = lseek((int)fd, (off_t)off, which == 0 ? SEEK_DATA : SEEK_HOLE);
  napi_value out;
  napi_create_int64(env, r < 0 ? -(int64_t)errno : (int64_t)r, &out);
  return out;
}

// setBlocking(fd, on) -> the previous O_NONBLOCK state (1 non-blocking, 0 blocking), or -errno
static napi_value set_blocking(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t fd = arg_i64(env, argv[0]), on = arg_i64(env, argv[1]);
  int flags = fcntl((int)fd, F_GETFL);
  int r = flags;
  if (flags >= 0) r = fcntl((int)fd, F_SETFL, on ? (flags & ~O_NONBLOCK) : (flags | O_NONBLOCK));
  napi_value out;
  napi_create_int32(env, flags < 0 || r < 0 ? -errno : ((flags & O_NONBLOCK) ? 1 : 0), &out);
  return out;
}

// pipeSize(fd, bytes) -> the pipe's capacity after the call (F_SETPIPE_SZ, best effort), or -errno (not a pipe)
static napi_value pipe_size(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t fd = arg_i64(env, argv[0]), bytes = arg_i64(env, argv[1]);
  int r = fcntl((int)fd, F_SETPIPE_SZ, (int)bytes);
  if (r < 0 && errno != EBADF) r = fcntl((int)fd, F_GETPIPE_SZ);
  napi_value out;
  napi_create_int32(env, r < 0 ? -errno : r, &out);
  return out;
}

// copyRange(fdIn, offIn, fdOut, offOut, length) -> bytes copied (0 at the end of the input), or -errno.
// One copy_file_range(2) call: the caller loops over short copies.
static napi_value copy_range(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t fd_in = arg_i64(env, argv[0]), off_in = arg_i64(env, argv[1]);
  int64_t fd_out = arg_i64(env, argv[2]), off_out = arg_i64(env, argv[3]), len = arg_i64(env, argv[4]);
  int64_t in = off_in, out = off_out; // loff_t: 64-bit on every Linux ABI
  ssize_t r = syscall(SYS_copy_file_range, (int)fd_in, &in, (int)fd_out, &out, (size_t)len, 0u);
  napi_value v;
  napi_create_int64(env, r < 0 ? -(int64_t)errno : (int64_t)r, &v);
  return v;
}

// cloneRange(fdSrc, offSrc, fdDst, offDst, length) -> 0, or -errno (EOPNOTSUPP / ENOTTY / EXDEV: the file
// system cannot share extents between these files; EINVAL: offsets or length not aligned to its block size).
static napi_value clone_range(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct file_clone_range arg;
  arg.src_fd = arg_i64(env, argv[0]);
  arg.src_offset = (uint64_t)arg_i64(env, argv[1]);
  int64_t fd_dst = arg_i64(env, argv[2]);
  arg.dest_offset = (uint64_t)arg_i64(env, argv[3]);
  arg.src_length = (uint64_t)arg_i64(env, argv[4]);
  int r = ioctl((int)fd_dst, FICLONERANGE, &arg);
  napi_value v;
  napi_create_int32(env, r == 0 ? 0 : -errno, &v);
  return v;
}

// sendFile(fdOut, fdIn, offIn, length) -> bytes sent (0 at the end of the input), or -errno. One sendfile(2)
// call from fdIn at offIn (its file position is left alone) to fdOut at its current position: the caller loops.
static napi_value send_file(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t fd_out = arg_i64(env, argv[0]), fd_in = arg_i64(env, argv[1]), off_in = arg_i64(env, argv[2]);
  int64_t len = arg_i64(env, argv[3]);
  off_t off = (off_t)off_in;
  ssize_t r = sendfile((int)fd_out, (int)fd_in, &off, (size_t)len);
  napi_value v;
  napi_create_int64(env, r < 0 ? -(int64_t)errno : (int64_t)r, &v);
  return v;
}

// pread(fd, view, position) / pwrite(fd, view, position) -> bytes transferred or -errno. One system call over
// the whole of the typed array `view` (napi gives its data pointer with the view's byte offset applied); the
// caller loops over short transfers and checks the range.
static napi_value rw(napi_env env, napi_callback_info info, int write) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1;
  int64_t pos = 0;
  void *data = NULL;
  size_t len = 0;
  napi_value v;
  if (argc < 3 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_typedarray_info(env, argv[1], NULL, &len, &data, NULL, NULL) != napi_ok ||
      napi_get_value_int64(env, argv[2], &pos) != napi_ok) {
    napi_create_int32(env, -EINVAL, &v);
    return v;
  }
  ssize_t r = write ? pwrite(fd, data, len, (off_t)pos) : pread(fd, data, len, (off_t)pos);
  napi_create_int64(env, r < 0 ? -(int64_t)errno : (int64_t)r, &v);
  return v;
}

static napi_value pread_view(napi_env env, napi_callback_info info) {
  return rw(env, info, 0);
}

static napi_value pwrite_view(napi_env env, napi_callback_info info) {
  return rw(env, info, 1);
}

napi_value rados_aio_register(napi_env env, napi_value exports);  // rados_aio.c

static napi_value init(napi_env env, napi_value exports) {
  napi_value f;
  napi_create_function(env, "pread", NAPI_AUTO_LENGTH, pread_view, NULL, &f);
  napi_set_named_property(env, exports, "pread", f);
  napi_create_function(env, "pwrite", NAPI_AUTO_LENGTH, pwrite_view, NULL, &f);
  napi_set_named_property(env, exports, "pwrite", f);
  napi_create_function(env, "copyRange", NAPI_AUTO_LENGTH, copy_range, NULL, &f);
  napi_set_named_property(env, exports, "copyRange", f);
  napi_create_function(env, "cloneRange", NAPI_AUTO_LENGTH, clone_range, NULL, &f);
  napi_set_named_property(env, exports, "cloneRange", f);
  napi_create_function(env, "sendFile", NAPI_AUTO_LENGTH, send_file, NULL, &f);
  napi_set_named_property(env, exports, "sendFile", f);
  napi_create_function(env, "punchHole", NAPI_AUTO_LENGTH, punch_hole, NULL, &f);
  napi_set_named_property(env, exports, "punchHole", f);
  napi_create_function(env, "startWriteBack", NAPI_AUTO_LENGTH, start_write_back, NULL, &f);
  napi_set_named_property(env, exports, "startWriteBack", f);
  napi_create_function(env, "seek", NAPI_AUTO_LENGTH, seek, NULL, &f);
  napi_set_named_property(env, exports, "seek", f);
  napi_create_function(env, "setBlocking", NAPI_AUTO_LENGTH, set_blocking, NULL, &f);
  napi_set_named_property(env, exports, "setBlocking", f);
  napi_create_function(env, "pipeSize", NAPI_AUTO_LENGTH, pipe_size, NULL, &f);
  napi_set_named_property(env, exports, "pipeSize", f);
  return rados_aio_register(env, exports);
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
