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

static const calc_operation_t operations[] = {
    { "triple", "triple(x): 3 * x", NULL, triple_execute,
      CALC_OPERATION_KIND_FUNCTION, CALC_ASSOCIATIVITY_NONE, 0, 1, 1 },
    { "cbrt", "cbrt(x): the cube root of x", NULL, cbrt_execute,
      CALC_OPERATION_KIND_FUNCTION, CALC_ASSOCIATIVITY_NONE, 0, 1, 1 },
};

static const calc_plugin_t descriptor = {
    CALC_PLUGIN_MAGIC, sizeof(calc_plugin_t), CALC_ABI_VERSION_INIT,
    "triple", "1.0.0", "calc tests", "triple(x) and cbrt(x), built with CMake",
    CALC_SDK_VERSION, CALC_API_REQUIREMENT_DEFAULT,
    0,          /* flags */
    NULL, NULL, /* init, shutdown: no instance state */
    operations, sizeof(operations) / sizeof(operations[0]), sizeof(calc_operation_t)
};

CALC_PLUGIN_ENTRY
{
    return &descriptor;
}
