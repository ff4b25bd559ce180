#ifndef STATUSHUB_CJEMALLOC_SHIM_H
#define STATUSHUB_CJEMALLOC_SHIM_H
#include <jemalloc/jemalloc.h>
#endif
