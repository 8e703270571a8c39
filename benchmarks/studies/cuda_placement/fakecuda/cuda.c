int cuTensorMapEncodeTiled(void){ return 0; }
