/*
 * The C plugin of the deadline benchmark: loops that poll the host's cooperative deadline (ABI
 * 1.3) or read the monotonic clock, n times per call, so the per-poll cost can be read next to a
 * clock read measured the same way.
 *   polls(n)   calls CALC_DEADLINE_EXPIRED(host) n times; returns how many said "expired"
 *   clocks(n)  calls clock_gettime(CLOCK_MONOTONIC) n times; returns how many succeeded (the
 *              reference)
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime under -std=c99 */

#include <stddef.h>
#include <time.h>

#include "calc_plugin.h"

static const calc_host_api_t *host_table; /* owned by the host, valid until shutdown */

static calc_status_t poll_init(const calc_host_api_t *host, void **out_instance,
                               char *error_buf, size_t error_buf_size) {
    (void)error_buf;
    (void)error_buf_size;
    host_table = host;
    *out_instance = NULL;
    return CALC_STATUS_OK;
}

static calc_status_t polls(void *instance, const double *args, size_t arg_count,
                           double *out_result, char *error_buf, size_t error_buf_size) {
    long i, n = (long)args[0], expired = 0;
    (void)instance;
    (void)arg_count;
    (void)error_buf;
    (void)error_buf_size;
    for (i = 0; i < n; i++) {
        expired += CALC_DEADLINE_EXPIRED(host_table);
    }
    *out_result = (double)expired;
    return CALC_STATUS_OK;
}

static calc_status_t clocks(void *instance, const double *args, size_t arg_count,
                            double *out_result, char *error_buf, size_t error_buf_size) {
    long i, n = (long)args[0], ok = 0;
    struct timespec ts;
    (void)instance;
    (void)arg_count;
    (void)error_buf;
    (void)error_buf_size;
    for (i = 0; i < n; i++) {
        ok += clock_gettime(CLOCK_MONOTONIC, &ts) == 0;
    }
    *out_result = (double)ok;
    return CALC_STATUS_OK;
}

static const calc_operation_t operations[] = {
    {.name = "polls", .description = "n deadline polls", .execute = polls,
     .kind = CALC_OPERATION_KIND_FUNCTION, .min_arity = 1, .max_arity = 1},
    {.name = "clocks", .description = "n monotonic clock reads", .execute = clocks,
     .kind = CALC_OPERATION_KIND_FUNCTION, .min_arity = 1, .max_arity = 1},
};

static const calc_plugin_t descriptor = {
    .magic = CALC_PLUGIN_MAGIC, .struct_size = sizeof(calc_plugin_t),
    .abi_version = CALC_ABI_VERSION_INIT, .name = "deadline_poll", .version = "1.0.0",
    .author = "calc benchmarks", .description = "deadline poll cost",
    .sdk_version = CALC_SDK_VERSION, .api_requirement = CALC_API_REQUIREMENT_DEFAULT,
    .init = poll_init, .operations = operations,
    .operation_count = sizeof operations / sizeof operations[0],
    .operation_size = sizeof(calc_operation_t),
};

CALC_PLUGIN_ENTRY { return &descriptor; }
