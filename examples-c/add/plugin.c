/*
 * add: a calc plugin in plain C99 providing the infix operator `+`.
 *
 * Build (from the repository root):
 *   cc -std=c99 -O2 -Wall -Wextra -Werror -pedantic -fPIC -fvisibility=hidden -shared -Iinclude examples-c/add/plugin.c -o target/debug/plugins/libadd.so
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

static calc_status_t add_execute(void *instance, const double *args, size_t arg_count,
                                 double *out_result, char *error_buf, size_t error_buf_size)
{
    (void)instance;
    if (args == NULL || out_result == NULL || arg_count != 2) {
        set_error(error_buf, error_buf_size, "add takes exactly 2 operands");
        return CALC_STATUS_INVALID_ARGUMENT;
    }
    *out_result = args[0] + args[1];
    return CALC_STATUS_OK;
}

#if CALC_ABI_VERSION_MINOR >= 2
/* out[r] = a[r] + b[r] for every row, in plain loops that the compiler vectorises at -O2.
 * restrict (on parameters, where GCC honours it): the host never lets out overlap a column.
 * Blocks of 8 rows, then the rest one by one, because GCC's -O2 only vectorises a loop whose
 * trip count it knows to be a multiple of the vector width (clang vectorises either form). */
static void add_rows(size_t rows, double *restrict out, const double *restrict a,
                     const double *restrict b)
{
    size_t r, i;

    for (r = 0; r + 8 <= rows; r += 8) {
        for (i = 0; i < 8; i++) {
            out[r + i] = a[r + i] + b[r + i];
        }
    }
    for (; r < rows; r++) {
        out[r] = a[r] + b[r];
    }
}

/* The batch entry (ABI 1.2): row for row, the results equal add_execute's. Built against an
 * older header (1.0, 1.1), the plugin has no batch entry and the host calls add_execute once
 * per row instead. */
static calc_status_t add_execute_batch(void *instance, const double *const *columns,
                                       size_t arg_count, size_t rows, double *out,
                                       size_t *out_failed_row, char *error_buf,
                                       size_t error_buf_size)
{
    (void)instance;
    if (arg_count != 2) {
        if (out_failed_row != NULL) {
            *out_failed_row = 0;
        }
        set_error(error_buf, error_buf_size, "add takes exactly 2 operands");
        return CALC_STATUS_INVALID_ARGUMENT;
    }
    if (rows == 0) {
        return CALC_STATUS_OK;
    }
    if (columns == NULL || columns[0] == NULL || columns[1] == NULL || out == NULL) {
        if (out_failed_row != NULL) {
            *out_failed_row = 0;
        }
        set_error(error_buf, error_buf_size, "NULL pointer passed to add (batch)");
        return CALC_STATUS_INVALID_ARGUMENT;
    }
    add_rows(rows, out, columns[0], columns[1]);
    return CALC_STATUS_OK;
}
#endif

/* Fields are set by name (C99 designated initializers), never by position: a later ABI minor
 * appends fields, and a designated initializer leaves them zero / NULL ("absent") instead of
 * breaking the build. */
static const calc_operation_t operations[] = {
    {
        .name = "add",
        .description = "a + b: the sum of a and b",
        .symbol = "+",
        .execute = add_execute,
        .kind = CALC_OPERATION_KIND_INFIX,
        .associativity = CALC_ASSOCIATIVITY_LEFT,
        .precedence = 10, /* additive */
        .min_arity = 2,
        .max_arity = 2,
#if CALC_ABI_VERSION_MINOR >= 2
        .execute_batch = add_execute_batch, /* since ABI 1.2; optional */
#endif
    },
};

/* Not set, so 0 / NULL: flags, init and shutdown (no instance state). */
static const calc_plugin_t descriptor = {
    .magic = CALC_PLUGIN_MAGIC,
    .struct_size = sizeof(calc_plugin_t),
    .abi_version = CALC_ABI_VERSION_INIT,
    .name = "add",
    .version = "1.0.0",
    .author = "calc examples",
    .description = "Addition as the infix operator +",
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
