/*
 * dup/dup2 for file descriptor 2, which Node does not expose: libs/tf points stderr at /dev/null
 * while the TensorFlow C library loads (it logs during static initialisation) and back afterwards,
 * exactly, whatever stderr is (terminal, pipe, socket, file). Built by tools/setup/stderr-addon.mjs.
 */
#include <fcntl.h>
#include <node_api.h>
#include <unistd.h>

/* silence(): fd 2 -> /dev/null; returns a duplicate of the old fd 2 (or -1 on failure). */
static napi_value silence(napi_env env, napi_callback_info info) {
  (void)info;
  int saved = dup(2);
  int nul = open("/dev/null", O_WRONLY);
  if (saved >= 0 && nul >= 0) dup2(nul, 2);
  if (nul >= 0) close(nul);
  napi_value out;
  napi_create_int32(env, saved, &out);
  return out;
}

/* restore(saved): fd 2 <- saved, then closes saved. */
static napi_value restore(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t saved = -1;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc >= 1) napi_get_value_int32(env, argv[0], &saved);
  if (saved >= 0) {
    dup2(saved, 2);
    close(saved);
  }
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"silence", NULL, silence, NULL, NULL, NULL, napi_default, NULL},
      {"restore", NULL, restore, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, 2, props);
  return exports;
}
