/*
 * sub: a calc plugin in plain C99 providing the infix operator `-`.
 *
 * Build (from the repository root):
 *   cc -std=c99 -Wall -Wextra -Werror -pedantic -fPIC -fvisibility=hidden -shared -Iinclude examples-c/sub/plugin.c -o target/debug/plugins/libsub.so
 *
 * Everything here is static except plugin_entry, the one exported symbol.
 */
#include <stddef.h>
#include <stdio.h>

#include "calc_plugin.h"

/* Writes a message into the host's error buffer, truncating to error_buf_size. */
static void set_error(char *error_buf, size_t error_buf_size, const char *message)
{
    if (error_buf != NULL && error_buf_size > 0) {
        (void)snprintf(error_buf, error_buf_size, "%s", message);
    }
}

static calc_status_t sub_execute(void *instance, const double *args, size_t arg_count,
                                 double *out_result, char *error_buf, size_t error_buf_size)
{
    (void)instance;
    if (args == NULL || out_result == NULL || arg_count != 2) {
        set_error(error_buf, error_buf_size, "sub takes exactly 2 operands");
        return CALC_STATUS_INVALID_ARGUMENT;
    }
    *out_result = args[0] - args[1];
    return CALC_STATUS_OK;
}

/* Fields are set by name (C99 designated initializers), never by position: a later ABI minor
 * appends fields, and a designated initializer leaves them zero / NULL ("absent") instead of
 * breaking the build. */
static const calc_operation_t operations[] = {
    {
        .name = "sub",
        .description = "a - b: b subtracted from a",
        .symbol = "-",
        .execute = sub_execute,
        .kind = CALC_OPERATION_KIND_INFIX,
        .associativity = CALC_ASSOCIATIVITY_LEFT,
        .precedence = 10, /* additive */
        .min_arity = 2,
        .max_arity = 2,
    },
};

/* Not set, so 0 / NULL: flags, init and shutdown (no instance state). */
static const calc_plugin_t descriptor = {
    .magic = CALC_PLUGIN_MAGIC,
    .struct_size = sizeof(calc_plugin_t),
    .abi_version = CALC_ABI_VERSION_INIT,
    .name = "sub",
    .version = "1.0.0",
    .author = "calc examples",
    .description = "Subtraction as the infix operator -",
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
