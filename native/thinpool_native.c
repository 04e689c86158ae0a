// Optional native helpers for file devices: what node:fs lacks (fallocate punch hole, SEEK_DATA/SEEK_HOLE).
// Built at install by scripts/build-native.mjs; the TypeScript side falls back when it is absent.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
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

static napi_value init(napi_env env, napi_value exports) {
  napi_value f;
  napi_create_function(env, "punchHole", NAPI_AUTO_LENGTH, punch_hole, NULL, &f);
  napi_set_named_property(env, exports, "punchHole", f);
  napi_create_function(env, "seek", NAPI_AUTO_LENGTH, seek, NULL, &f);
  napi_set_named_property(env, exports, "seek", f);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
