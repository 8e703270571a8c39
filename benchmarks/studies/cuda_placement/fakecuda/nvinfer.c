void* createInferBuilder_INTERNAL(void){ return 0; }
void* createInferRefitter_INTERNAL(void){ return 0; }
void* createInferRuntime_INTERNAL(void){ return 0; }
void* getPluginRegistry(void){ return 0; }
int getInferLibVersion(void){ return 101300; }
