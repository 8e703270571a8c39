int curandFakeUnused(void){ return 0; }
