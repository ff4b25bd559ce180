#ifndef STATUSHUB_CMOSQUITTO_SHIM_H
#define STATUSHUB_CMOSQUITTO_SHIM_H
#include <mosquitto.h>
#endif
