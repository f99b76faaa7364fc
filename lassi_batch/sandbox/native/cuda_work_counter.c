/* Counts the GPU work a CUDA program asks for, independently of what the program prints.
 *
 * Loaded by the CUDA driver through CUDA_INJECTION64_PATH, it subscribes to CUPTI's API
 * callbacks and counts kernel launches (runtime and driver API) and host<->device copies with
 * their bytes (cudaMemcpy / cudaMemcpyAsync). At exit it writes one JSON object to the file named
 * by LASSI_WORK_COUNTS. One atomic add per call: cheap enough to leave on during measured runs.
 * A refactor that deletes measured work launches fewer kernels, whatever its output claims.
 */
#include <cupti.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

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

static void write_counts(void) {
  const char *path = getenv("LASSI_WORK_COUNTS");
  if (!path || !*path) return;
  cuptiUnsubscribe(subscriber);
  FILE *f = fopen(path, "w");
  if (!f) return;
  fprintf(f,
          "{\"runtime_launches\": %llu, \"driver_launches\": %llu, \"memcpy_calls\": %llu, "
          "\"memcpy_bytes\": %llu}\n",
          (unsigned long long)atomic_load(&runtime_launches), (unsigned long long)atomic_load(&driver_launches),
          (unsigned long long)atomic_load(&memcpy_calls), (unsigned long long)atomic_load(&memcpy_bytes));
  fclose(f);
}

/* Entry point the CUDA driver calls once when it loads an injection library. */
int InitializeInjection(void) {
  if (initialized) return 1;
  initialized = 1;
  if (cuptiSubscribe(&subscriber, (CUpti_CallbackFunc)on_api, NULL) != CUPTI_SUCCESS) return 0;
  cuptiEnableDomain(1, subscriber, CUPTI_CB_DOMAIN_RUNTIME_API);
  cuptiEnableDomain(1, subscriber, CUPTI_CB_DOMAIN_DRIVER_API);
  atexit(write_counts);
  return 1;
}
