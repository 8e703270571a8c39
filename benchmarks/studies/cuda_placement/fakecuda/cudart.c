/* Fake CUDA runtime: lets ORT's CUDA EP load and partition graphs on a machine without a GPU.
   "Device" memory is host memory; kernels never run. */
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
typedef int E;
static void* nz(size_t n){ void* p = malloc(n ? n : 16); return p; }
static char fatdummy[64];
void** __cudaRegisterFatBinary(void* fb){ (void)fb; return (void**)fatdummy; }
void __cudaRegisterFatBinaryEnd(void** h){ (void)h; }
void __cudaUnregisterFatBinary(void** h){ (void)h; }
void __cudaRegisterFunction(void){}
void __cudaRegisterVar(void){}
unsigned __cudaPushCallConfiguration(void){ return 0; }
E __cudaPopCallConfiguration(void){ return 0; }
E __cudaLaunchKernel(void){ return 0; }
E __cudaGetKernel(void** k, const void* f){ (void)f; if(k) *k = nz(16); return 0; }
E cudaGetDeviceCount(int* c){ *c = 1; return 0; }
E cudaGetDevice(int* d){ *d = 0; return 0; }
E cudaSetDevice(int d){ (void)d; return 0; }
E cudaDeviceSynchronize(void){ return 0; }
E cudaDeviceGetAttribute(int* v, int a, int d){ (void)d;
  switch(a){ case 75: *v = 9; break; case 76: *v = 0; break; case 1: *v = 1024; break; case 16: *v = 132; break;
    case 8: *v = 49152; break; case 97: *v = 232448; break; case 10: *v = 32; break; default: *v = 0; }
  return 0; }
E cudaGetDeviceProperties(void* p, int d){ (void)d; memset(p, 0, 600); strcpy((char*)p, "FakeGPU"); return 0; }
E cudaDriverGetVersion(int* v){ *v = 13000; return 0; }
E cudaRuntimeGetVersion(int* v){ *v = 13000; return 0; }
const char* cudaGetErrorName(E e){ (void)e; return "cudaFake"; }
const char* cudaGetErrorString(E e){ (void)e; return "fake cuda runtime"; }
E cudaGetLastError(void){ return 0; }
E cudaPeekAtLastError(void){ return 0; }
E cudaMalloc(void** p, size_t n){ *p = nz(n); return 0; }
E cudaMallocHost(void** p, size_t n){ *p = nz(n); return 0; }
E cudaHostAlloc(void** p, size_t n, unsigned f){ (void)f; *p = nz(n); return 0; }
E cudaMallocFromPoolAsync(void** p, size_t n, void* pool, void* s){ (void)pool; (void)s; *p = nz(n); return 0; }
E cudaFree(void* p){ free(p); return 0; }
E cudaFreeHost(void* p){ free(p); return 0; }
E cudaFreeAsync(void* p, void* s){ (void)s; free(p); return 0; }
E cudaMemGetInfo(size_t* f, size_t* t){ *f = (size_t)80 << 30; *t = (size_t)80 << 30; return 0; }
E cudaMemcpy(void* d, const void* s, size_t n, int k){ (void)k; if(d && s && n) memmove(d, s, n); return 0; }
E cudaMemcpyAsync(void* d, const void* s, size_t n, int k, void* st){ (void)k; (void)st; if(d && s && n) memmove(d, s, n); return 0; }
E cudaMemcpy2DAsync(void* d, size_t dp, const void* s, size_t sp, size_t w, size_t h, int k, void* st){ (void)k; (void)st;
  for(size_t i = 0; i < h; i++) memmove((char*)d + i*dp, (const char*)s + i*sp, w); return 0; }
E cudaMemcpyFromSymbol(void* d, const void* sym, size_t n, size_t off, int k){ (void)sym; (void)off; (void)k; memset(d, 0, n); return 0; }
E cudaMemset(void* p, int v, size_t n){ if(p) memset(p, v, n); return 0; }
E cudaMemsetAsync(void* p, int v, size_t n, void* s){ (void)s; if(p) memset(p, v, n); return 0; }
E cudaStreamCreate(void** s){ *s = nz(16); return 0; }
E cudaStreamCreateWithFlags(void** s, unsigned f){ (void)f; *s = nz(16); return 0; }
E cudaStreamDestroy(void* s){ (void)s; return 0; }
E cudaStreamSynchronize(void* s){ (void)s; return 0; }
E cudaStreamWaitEvent(void* s, void* e, unsigned f){ (void)s; (void)e; (void)f; return 0; }
E cudaStreamIsCapturing(void* s, int* st){ (void)s; *st = 0; return 0; }
E cudaStreamBeginCapture(void){ return 0; }
E cudaStreamEndCapture(void* s, void** g){ (void)s; *g = nz(16); return 0; }
E cudaEventCreate(void** e){ *e = nz(16); return 0; }
E cudaEventCreateWithFlags(void** e, unsigned f){ (void)f; *e = nz(16); return 0; }
E cudaEventDestroy(void* e){ (void)e; return 0; }
E cudaEventRecord(void){ return 0; }
E cudaEventRecordWithFlags(void){ return 0; }
E cudaEventSynchronize(void){ return 0; }
E cudaEventElapsedTime(float* ms, void* a, void* b){ (void)a; (void)b; *ms = 0; return 0; }
E cudaPointerGetAttributes(void* a, const void* p){ int* i = (int*)a; memset(a, 0, 24); i[0] = 2; ((const void**)a)[1] = p; ((const void**)a)[2] = p; return 0; }
E cudaFuncGetAttributes(void* a, const void* f){ (void)f; memset(a, 0, 48); return 0; }
E cudaFuncSetAttribute(void){ return 0; }
E cudaKernelSetAttributeForDevice(void){ return 0; }
E cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int* n){ *n = 1; return 0; }
E cudaGetDriverEntryPointByVersion(const char* sym, void** fn, unsigned long long fl, unsigned v, int* st){ (void)sym; (void)fl; (void)v; *fn = NULL; if(st) *st = 1; return 0; }
E cudaGraphDestroy(void){ return 0; }
E cudaGraphExecDestroy(void){ return 0; }
E cudaGraphInstantiate(void** ge){ *ge = nz(16); return 0; }
E cudaGraphLaunch(void){ return 0; }
E cudaLaunchCooperativeKernel(void){ return 0; }
E cudaLaunchHostFunc(void){ return 0; }
E cudaLaunchKernel(void){ return 0; }
E cudaLaunchKernelExC(void){ return 0; }
E cudaLibraryGetKernel(void** k){ *k = nz(16); return 0; }
E cudaLibraryLoadData(void** l){ *l = nz(16); return 0; }
E cudaLibraryUnload(void){ return 0; }
E cudaMemPoolCreate(void** p){ *p = nz(16); return 0; }
E cudaMemPoolDestroy(void){ return 0; }
E cudaMemPoolGetAttribute(void* p, int a, void* v){ (void)p; (void)a; memset(v, 0, 8); return 0; }
E cudaMemPoolSetAttribute(void){ return 0; }
E cudaMemPoolTrimTo(void){ return 0; }
