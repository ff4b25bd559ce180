#ifndef STATUSHUB_CHIREDIS_SHIM_H
#define STATUSHUB_CHIREDIS_SHIM_H
#include <hiredis/hiredis.h>
#include <hiredis/read.h>
#endif
