#include <stdlib.h>
int cudnnCreate(void** h){ *h = malloc(16); return 0; }
int cudnnDestroy(void* h){ (void)h; return 0; }
int cudnnSetStream(void){ return 0; }
size_t cudnnGetVersion(void){ return 91000; }
