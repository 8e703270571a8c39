#include <stdlib.h>
typedef int S;
S cublasCreate_v2(void** h){ *h = malloc(16); return 0; }
S cublasGetMathMode(void* h, int* m){ (void)h; *m = 0; return 0; }
const char* cublasGetStatusName(S s){ (void)s; return "CUBLAS_FAKE"; }
const char* cublasGetStatusString(S s){ (void)s; return "fake cublas"; }
#define Z(n) S n(void){ return 0; }
Z(cublasDestroy_v2) Z(cublasDgeam) Z(cublasDgemmBatched) Z(cublasDgemmStridedBatched) Z(cublasDgemm_v2)
Z(cublasDgetrfBatched) Z(cublasDgetriBatched) Z(cublasGemmBatchedEx) Z(cublasGemmEx) Z(cublasGemmStridedBatchedEx)
Z(cublasScopy_v2) Z(cublasSetMathMode) Z(cublasSetStream_v2) Z(cublasSgeam) Z(cublasSgemmBatched)
Z(cublasSgemmStridedBatched) Z(cublasSgemm_v2) Z(cublasSgetrfBatched) Z(cublasSgetriBatched) Z(cublasSscal_v2)
