#include <stdlib.h>
typedef int S;
#define C(n) S n(void** h){ *h = malloc(16); return 0; }
#define Z(n) S n(void){ return 0; }
C(cublasLtCreate) C(cublasLtMatmulDescCreate) C(cublasLtMatmulPreferenceCreate) C(cublasLtMatrixLayoutCreate) C(cublasLtMatrixTransformDescCreate)
Z(cublasLtDestroy) Z(cublasLtMatmul) Z(cublasLtMatmulAlgoConfigSetAttribute) Z(cublasLtMatmulAlgoInit)
Z(cublasLtMatmulDescDestroy) Z(cublasLtMatmulDescSetAttribute) Z(cublasLtMatmulPreferenceDestroy)
Z(cublasLtMatmulPreferenceSetAttribute) Z(cublasLtMatrixLayoutDestroy) Z(cublasLtMatrixLayoutSetAttribute)
Z(cublasLtMatrixTransform) Z(cublasLtMatrixTransformDescDestroy)
S cublasLtMatmulAlgoGetHeuristic(void* a, void* b, void* c, void* d, void* e, void* f, void* g, int n, void* r, int* cnt){ *cnt = 0; return 0; }
