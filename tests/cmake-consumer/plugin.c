/*
 * triple: a calc plugin built with calc_add_plugin() from the installed CMake package.
 *
 * Functions:
 *   triple(x)  3 * x
 *   cbrt(x)    the cube root of x, from <math.h>: it checks that calc_add_plugin() links libm
 *              (a plugin missing it fails to load with "undefined symbol: cbrt")
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>

#include "calc_plugin.h"

static calc_status_t one_operand(const double *args, size_t arg_count, double *out_result,
                                 char *error_buf, size_t error_buf_size, const char *name)
{
    if (args == NULL || out_result == NULL || arg_count != 1) {
        if (error_buf != NULL && error_buf_size > 0) {
            (void)snprintf(error_buf, error_buf_size, "%s takes exactly 1 operand", name);
        }
        return CALC_STATUS_INVALID_ARGUMENT;
    }
    return CALC_STATUS_OK;
}

static calc_status_t triple_execute(void *instance, const double *args, size_t arg_count,
                                    double *out_result, char *error_buf, size_t error_buf_size)
{
    calc_status_t status =
        one_operand(args, arg_count, out_result, error_buf, error_buf_size, "triple");
    (void)instance;
    if (status == CALC_STATUS_OK) {
        *out_result = 3.0 * args[0];
    }
    return status;
}

static calc_status_t cbrt_execute(void *instance, const double *args, size_t arg_count,
                                  double *out_result, char *error_buf, size_t error_buf_size)
{
    calc_status_t status =
        one_operand(args, arg_count, out_result, error_buf, error_buf_size, "cbrt");
    (void)instance;
    if (status == CALC_STATUS_OK) {
        *out_result = cbrt(args[0]);
    }
    return status;
}

/* Fields are set by name (C99 designated initializers), never by position, so that fields
 * appended in a later ABI minor do not break the build; unset fields are 0 / NULL. */
static const calc_operation_t operations[] = {
    { .name = "triple", .description = "triple(x): 3 * x", .symbol = NULL,
      .execute = triple_execute, .kind = CALC_OPERATION_KIND_FUNCTION,
      .associativity = CALC_ASSOCIATIVITY_NONE, .precedence = 0, .min_arity = 1, .max_arity = 1 },
    { .name = "cbrt", .description = "cbrt(x): the cube root of x", .symbol = NULL,
      .execute = cbrt_execute, .kind = CALC_OPERATION_KIND_FUNCTION,
      .associativity = CALC_ASSOCIATIVITY_NONE, .precedence = 0, .min_arity = 1, .max_arity = 1 },
};

static const calc_plugin_t descriptor = {
    .magic = CALC_PLUGIN_MAGIC, .struct_size = sizeof(calc_plugin_t),
    .abi_version = CALC_ABI_VERSION_INIT,
    .name = "triple", .version = "1.0.0", .author = "calc tests",
    .description = "triple(x) and cbrt(x), built with CMake",
    .sdk_version = CALC_SDK_VERSION, .api_requirement = CALC_API_REQUIREMENT_DEFAULT,
    /* flags, init, shutdown: not set, so 0 / NULL (no instance state) */
    .operations = operations, .operation_count = sizeof(operations) / sizeof(operations[0]),
    .operation_size = sizeof(calc_operation_t),
};

CALC_PLUGIN_ENTRY
{
    return &descriptor;
}
