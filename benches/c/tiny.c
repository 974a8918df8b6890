/*
 * The small C plugin of the loading and startup benchmarks: one function, `twice(x)`, no
 * instance state. The benchmarks compile it once and write many copies with distinct names:
 * every occurrence of the fixed-width marker "calcbench_00000" (the plugin name and the
 * operation name) is replaced by "calcbench_NNNNN" in each copy, so that the copies are
 * distinct plugins to the manager (which refuses duplicate names) without compiling each one.
 */
#include <stddef.h>

#include "calc_plugin.h"

#define NAME "calcbench_00000"

static calc_status_t twice(void *instance, const double *args, size_t arg_count,
                           double *out_result, char *error_buf, size_t error_buf_size)
{
    (void)instance;
    (void)arg_count;
    (void)error_buf;
    (void)error_buf_size;
    *out_result = 2.0 * args[0];
    return CALC_STATUS_OK;
}

static const calc_operation_t operations[] = {
    {
        .name = NAME,
        .description = "2 * x",
        .execute = twice,
        .kind = CALC_OPERATION_KIND_FUNCTION,
        .min_arity = 1,
        .max_arity = 1,
    },
};

static const calc_plugin_t descriptor = {
    .magic = CALC_PLUGIN_MAGIC,
    .struct_size = sizeof(calc_plugin_t),
    .abi_version = CALC_ABI_VERSION_INIT,
    .name = NAME,
    .version = "1.0.0",
    .author = "calc benches",
    .description = "a small plugin, copied many times",
    .sdk_version = CALC_SDK_VERSION,
    .api_requirement = CALC_API_REQUIREMENT_DEFAULT,
    .operations = operations,
    .operation_count = sizeof(operations) / sizeof(operations[0]),
    .operation_size = sizeof(calc_operation_t),
};

CALC_PLUGIN_ENTRY
{
    return &descriptor;
}
