// Asynchronous librados requests whose completions reach Node's event loop straight from librados's own
// thread: the completion callback (plain C, never JavaScript) records (token, return value) in a queue and wakes
// the main thread through one N-API thread-safe function; the main thread drains the queue in batches and hands
// them to one JavaScript callback. Without this, a koffi worker thread had to block on the oldest completion and
// then wake the main thread: one more thread hand-off per batch (measured in bench/rados).
//
// librados is not linked: its five aio functions are found with dlopen(RTLD_NOLOAD) once koffi has loaded
// librados.so.2, so the helper loads (and file pools work) on machines without Ceph.
//
// Contract (all entry points run on the main thread):
// - radosAioInit(fn) -> 0 or -errno: finds the functions (-ENOENT without librados loaded) and registers fn,
//   called as fn(Int32Array [token, rc, token, rc, ...]) with every request completed since the last call.
// - radosAioStart(write 0|1, ioctx bigint, oid string, view, offset, token) -> 0 or librados's -errno (then
//   nothing is in flight for that token and fn will not see it). The view must stay alive until fn reports it.
// - radosAioDrain() -> Int32Array of the same pairs, after blocking until every request started has completed
//   (a flush that must not return before the cluster acknowledged everything).
// - The event loop is kept alive exactly while requests are in flight.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <node_api.h>

typedef void *completion_t;
typedef void (*callback_t)(completion_t c, void *arg);

static int (*create_completion)(void *arg, callback_t complete, completion_t *out);
static int (*aio_read)(void *io, const char *oid, completion_t c, char *buf, size_t len, uint64_t off);
static int (*aio_write)(void *io, const char *oid, completion_t c, const char *buf, size_t len, uint64_t off);
static int (*get_return)(completion_t c);
static void (*release)(completion_t c);

// Completed requests not yet handed to JavaScript: pairs (token, rc). Guarded by mu. Capacity is raised on the
// main thread before each start, so the callback never allocates.
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;
static int32_t *queue;
static size_t queued, capacity;
static int wake_pending;  // a thread-safe call is queued and its drain has not run yet
static int64_t started;   // main thread: requests started and not yet handed over (in flight or queued)
static napi_threadsafe_function tsfn;
static napi_ref js_fn;
static napi_env owner;  // the environment (main thread or one worker) that registered: the only one served

static void on_complete(completion_t c, void *arg) {
  int32_t rc = (int32_t)get_return(c);
  release(c);
  pthread_mutex_lock(&mu);
  queue[queued * 2] = (int32_t)(intptr_t)arg;
  queue[queued * 2 + 1] = rc;
  queued++;
  int wake = !wake_pending;
  wake_pending = 1;
  pthread_cond_broadcast(&done_cv);
  pthread_mutex_unlock(&mu);
  if (wake) napi_call_threadsafe_function(tsfn, NULL, napi_tsfn_nonblocking);
}

// Move the queued pairs into a new Int32Array (main thread). Returns NULL when nothing was queued.
static napi_value take(napi_env env, int wait_all) {
  pthread_mutex_lock(&mu);
  if (wait_all)
    while ((int64_t)queued < started) pthread_cond_wait(&done_cv, &mu);
  size_t n = queued;
  wake_pending = 0;
  napi_value out = NULL;
  if (n > 0 || wait_all) {
    void *data = NULL;
    napi_value ab;
    if (napi_create_arraybuffer(env, n * 8, &data, &ab) == napi_ok) {
      if (n > 0) memcpy(data, queue, n * 8);
      napi_create_typedarray(env, napi_int32_array, n * 2, ab, 0, &out);
      queued = 0;
      started -= (int64_t)n;
    }
  }
  pthread_mutex_unlock(&mu);
  if (started == 0) napi_unref_threadsafe_function(env, tsfn);
  return out;
}

static void call_js(napi_env env, napi_value fn, void *context, void *data) {
  (void)fn;
  (void)context;
  (void)data;
  if (env == NULL) return;  // shutting down
  napi_value batch = take(env, 0);
  if (batch == NULL) return;
  napi_value f, undefined;
  napi_get_reference_value(env, js_fn, &f);
  napi_get_undefined(env, &undefined);
  napi_call_function(env, undefined, f, 1, &batch, NULL);
}

static napi_value int32(napi_env env, int32_t v) {
  napi_value out;
  napi_create_int32(env, v, &out);
  return out;
}

static napi_value init(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (tsfn != NULL) return int32(env, env == owner ? 0 : -EBUSY);
  void *so = dlopen("librados.so.2", RTLD_NOW | RTLD_NOLOAD);
  if (so == NULL) return int32(env, -ENOENT);
  create_completion = (int (*)(void *, callback_t, completion_t *))dlsym(so, "rados_aio_create_completion2");
  aio_read = (int (*)(void *, const char *, completion_t, char *, size_t, uint64_t))dlsym(so, "rados_aio_read");
  aio_write = (int (*)(void *, const char *, completion_t, const char *, size_t, uint64_t))dlsym(so, "rados_aio_write");
  get_return = (int (*)(completion_t))dlsym(so, "rados_aio_get_return_value");
  release = (void (*)(completion_t))dlsym(so, "rados_aio_release");
  if (!create_completion || !aio_read || !aio_write || !get_return || !release) return int32(env, -ENOENT);
  napi_value name;
  napi_create_string_utf8(env, "thinpool rados completions", NAPI_AUTO_LENGTH, &name);
  if (napi_create_reference(env, argv[0], 1, &js_fn) != napi_ok) return int32(env, -EINVAL);
  if (napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, NULL, NULL, NULL, call_js, &tsfn) != napi_ok) {
    tsfn = NULL;
    return int32(env, -ENOMEM);
  }
  napi_unref_threadsafe_function(env, tsfn);
  owner = env;
  return int32(env, 0);
}

static napi_value start(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (tsfn == NULL || env != owner) return int32(env, -EINVAL);
  int32_t write = 0, token = 0;
  uint64_t io = 0;
  int64_t off = 0;
  bool lossless;
  napi_get_value_int32(env, argv[0], &write);
  napi_get_value_bigint_uint64(env, argv[1], &io, &lossless);
  char oid[1024];
  size_t oid_len = 0;
  napi_get_value_string_utf8(env, argv[2], oid, sizeof oid, &oid_len);
  if (oid_len >= sizeof oid - 1) return int32(env, -ENAMETOOLONG);
  napi_typedarray_type type;
  size_t length = 0;
  void *data = NULL;
  if (napi_get_typedarray_info(env, argv[3], &type, &length, &data, NULL, NULL) != napi_ok || type != napi_uint8_array)
    return int32(env, -EINVAL);
  napi_get_value_int64(env, argv[4], &off);
  napi_get_value_int32(env, argv[5], &token);
  pthread_mutex_lock(&mu);
  if ((size_t)started + 1 > capacity) {
    size_t want = capacity == 0 ? 256 : capacity * 2;
    int32_t *q = realloc(queue, want * 8);
    if (q == NULL) {
      pthread_mutex_unlock(&mu);
      return int32(env, -ENOMEM);
    }
    queue = q;
    capacity = want;
  }
  pthread_mutex_unlock(&mu);
  completion_t c = NULL;
  int rc = create_completion((void *)(intptr_t)token, on_complete, &c);
  if (rc < 0) return int32(env, rc);
  if (started++ == 0) napi_ref_threadsafe_function(env, tsfn);
  rc = write ? aio_write((void *)(uintptr_t)io, oid, c, (const char *)data, length, (uint64_t)off)
             : aio_read((void *)(uintptr_t)io, oid, c, (char *)data, length, (uint64_t)off);
  if (rc < 0) {
    // Not started: librados never calls back.
    release(c);
    if (--started == 0) napi_unref_threadsafe_function(env, tsfn);
  }
  return int32(env, rc);
}

static napi_value drain(napi_env env, napi_callback_info info) {
  (void)info;
  if (tsfn == NULL || env != owner) return int32(env, -EINVAL);
  return take(env, 1);
}

napi_value rados_aio_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"radosAioInit", NULL, init, NULL, NULL, NULL, napi_enumerable, NULL},
    {"radosAioStart", NULL, start, NULL, NULL, NULL, napi_enumerable, NULL},
    {"radosAioDrain", NULL, drain, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
