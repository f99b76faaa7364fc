/* Counts the GPU work a CUDA program asks for, independently of what the program prints.
 *
 * Loaded by the CUDA driver through CUDA_INJECTION64_PATH, it subscribes to CUPTI's API
 * callbacks and counts kernel launches (runtime and driver API) and host<->device copies with
 * their bytes (cudaMemcpy / cudaMemcpyAsync). At exit it writes one JSON object to the file named
 * by LASSI_WORK_COUNTS. One atomic add per call: cheap enough to leave on during measured runs.
 * A refactor that deletes measured work launches fewer kernels, whatever its output claims.
 *
 * It also records every kernel's start and end on the GPU (CUPTI activity records of kind
 * CONCURRENT_KERNEL, which do not serialise kernels) and writes the kernels' summed time and
 * their busy time (the union of the intervals, overlaps counted once): the GPU-side cost that the
 * differential runs compare, where host CPU time mostly counts waiting and copies.
 */
#include <cupti.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The kernel record of this toolkit's CUPTI (start and end sit in the same place in all of them). */
#if defined(CUPTI_API_VERSION) && CUPTI_API_VERSION >= 130000
typedef CUpti_ActivityKernel10 KernelRecord;
#elif defined(CUPTI_API_VERSION) && CUPTI_API_VERSION >= 18
typedef CUpti_ActivityKernel9 KernelRecord;
#else
typedef CUpti_ActivityKernel4 KernelRecord;
#endif

#define ACTIVITY_BUFFER (1u << 20)
typedef struct { uint64_t start, end; } Span;
static Span *spans;
static size_t n_spans, cap_spans;
static unsigned long long kernel_ns, kernel_records, dropped_records;

static atomic_ullong runtime_launches, driver_launches, memcpy_calls, memcpy_bytes;
static CUpti_SubscriberHandle subscriber;
static int initialized;

static void CUPTIAPI on_api(void *userdata, CUpti_CallbackDomain domain, CUpti_CallbackId cbid,
                            const void *payload) {
  (void)userdata;
  const CUpti_CallbackData *cb = (const CUpti_CallbackData *)payload;
  if (cb->callbackSite != CUPTI_API_ENTER) return;
  if (domain == CUPTI_CB_DOMAIN_RUNTIME_API) {
    switch (cbid) {
      case CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernel_v7000:
      case CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernel_ptsz_v7000:
      case CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernelExC_v11060:
      case CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernelExC_ptsz_v11060:
      case CUPTI_RUNTIME_TRACE_CBID_cudaLaunchCooperativeKernel_v9000:
      case CUPTI_RUNTIME_TRACE_CBID_cudaLaunchCooperativeKernel_ptsz_v9000:
        atomic_fetch_add(&runtime_launches, 1);
        break;
      case CUPTI_RUNTIME_TRACE_CBID_cudaMemcpy_v3020: {
        const cudaMemcpy_v3020_params *p = (const cudaMemcpy_v3020_params *)cb->functionParams;
        atomic_fetch_add(&memcpy_calls, 1);
        atomic_fetch_add(&memcpy_bytes, (unsigned long long)p->count);
        break;
      }
      case CUPTI_RUNTIME_TRACE_CBID_cudaMemcpyAsync_v3020:
      case CUPTI_RUNTIME_TRACE_CBID_cudaMemcpyAsync_ptsz_v7000: {
        const cudaMemcpyAsync_v3020_params *p = (const cudaMemcpyAsync_v3020_params *)cb->functionParams;
        atomic_fetch_add(&memcpy_calls, 1);
        atomic_fetch_add(&memcpy_bytes, (unsigned long long)p->count);
        break;
      }
      default:
        break;
    }
  } else if (domain == CUPTI_CB_DOMAIN_DRIVER_API) {
    switch (cbid) {
      case CUPTI_DRIVER_TRACE_CBID_cuLaunchKernel:
      case CUPTI_DRIVER_TRACE_CBID_cuLaunchKernel_ptsz:
      case CUPTI_DRIVER_TRACE_CBID_cuLaunchKernelEx:
      case CUPTI_DRIVER_TRACE_CBID_cuLaunchKernelEx_ptsz:
      case CUPTI_DRIVER_TRACE_CBID_cuLaunchCooperativeKernel:
      case CUPTI_DRIVER_TRACE_CBID_cuLaunchCooperativeKernel_ptsz:
        atomic_fetch_add(&driver_launches, 1);
        break;
      default:
        break;
    }
  }
}

static void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records) {
  *buffer = (uint8_t *)aligned_alloc(8, ACTIVITY_BUFFER);
  *size = *buffer ? ACTIVITY_BUFFER : 0;
  *max_records = 0;
}

/* Called by CUPTI's own thread or from cuptiActivityFlushAll at exit, never concurrently. */
static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size, size_t valid) {
  (void)ctx; (void)stream; (void)size;
  CUpti_Activity *record = NULL;
  while (cuptiActivityGetNextRecord(buffer, valid, &record) == CUPTI_SUCCESS) {
    if (record->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL && record->kind != CUPTI_ACTIVITY_KIND_KERNEL) continue;
    const KernelRecord *k = (const KernelRecord *)record;
    if (k->end <= k->start) continue;
    kernel_ns += k->end - k->start;
    kernel_records++;
    if (n_spans == cap_spans) {
      size_t cap = cap_spans ? 2 * cap_spans : 4096;
      Span *grown = (Span *)realloc(spans, cap * sizeof(Span));
      if (!grown) { dropped_records++; continue; }
      spans = grown;
      cap_spans = cap;
    }
    spans[n_spans].start = k->start;
    spans[n_spans].end = k->end;
    n_spans++;
  }
  free(buffer);
}

static int by_start(const void *a, const void *b) {
  const Span *x = (const Span *)a, *y = (const Span *)b;
  return x->start < y->start ? -1 : x->start > y->start;
}

/* The time at least one kernel ran: the union of the kernels' intervals. */
static unsigned long long busy_ns(void) {
  if (!n_spans) return 0;
  qsort(spans, n_spans, sizeof(Span), by_start);
  unsigned long long busy = 0;
  uint64_t s = spans[0].start, e = spans[0].end;
  for (size_t i = 1; i < n_spans; i++) {
    if (spans[i].start > e) { busy += e - s; s = spans[i].start; e = spans[i].end; }
    else if (spans[i].end > e) e = spans[i].end;
  }
  return busy + (e - s);
}

static void write_counts(void) {
  const char *path = getenv("LASSI_WORK_COUNTS");
  if (!path || !*path) return;
  cuptiActivityFlushAll(1);
  cuptiUnsubscribe(subscriber);
  FILE *f = fopen(path, "w");
  if (!f) return;
  fprintf(f,
          "{\"runtime_launches\": %llu, \"driver_launches\": %llu, \"memcpy_calls\": %llu, "
          "\"memcpy_bytes\": %llu, \"kernel_records\": %llu, \"kernel_ns\": %llu, \"kernel_busy_ns\": %llu, "
          "\"kernel_records_dropped\": %llu}\n",
          (unsigned long long)atomic_load(&runtime_launches), (unsigned long long)atomic_load(&driver_launches),
          (unsigned long long)atomic_load(&memcpy_calls), (unsigned long long)atomic_load(&memcpy_bytes),
          kernel_records, kernel_ns, busy_ns(), dropped_records);
  fclose(f);
}

/* Entry point the CUDA driver calls once when it loads an injection library. */
int InitializeInjection(void) {
  if (initialized) return 1;
  initialized = 1;
  if (cuptiSubscribe(&subscriber, (CUpti_CallbackFunc)on_api, NULL) != CUPTI_SUCCESS) return 0;
  cuptiEnableDomain(1, subscriber, CUPTI_CB_DOMAIN_RUNTIME_API);
  cuptiEnableDomain(1, subscriber, CUPTI_CB_DOMAIN_DRIVER_API);
  if (cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed) == CUPTI_SUCCESS)
    cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
  atexit(write_counts);
  return 1;
}
