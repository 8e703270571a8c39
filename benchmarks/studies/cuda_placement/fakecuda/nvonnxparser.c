void* createNvOnnxParser_INTERNAL(void){ return 0; }
void* createNvOnnxParserRefitter_INTERNAL(void){ return 0; }
