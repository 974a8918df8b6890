/*
 * pow: a calc plugin in plain C99 providing the right-associative infix operator `^`
 * (so 2 ^ 3 ^ 2 is 2 ^ 9), implemented with pow() from <math.h>.
 *
 * Build (from the repository root; -lm links the maths library):
 *   cc -std=c99 -O2 -Wall -Wextra -Werror -pedantic -fPIC -fvisibility=hidden -shared -Iinclude examples-c/pow/plugin.c -o target/debug/plugins/libpow.so -lm
 *
 * Errors: a NaN result from non-NaN operands, e.g. (-8) ^ (1/3), is CALC_STATUS_DOMAIN_ERROR;
 * an infinite result from finite operands, e.g. 10 ^ 400 or 0 ^ -1, is CALC_STATUS_OVERFLOW.
 *
 * Everything here is static except plugin_entry, the one exported symbol.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>

#include "calc_plugin.h"

static calc_status_t pow_execute(void *instance, const double *args, size_t arg_count,
                                 double *out_result, char *error_buf, size_t error_buf_size)
{
    int have_buf = error_buf != NULL && error_buf_size > 0;
    double base;
    double exponent;
    double result;

    (void)instance;
    if (args == NULL || out_result == NULL || arg_count != 2) {
        if (have_buf) {
            (void)snprintf(error_buf, error_buf_size, "pow takes exactly 2 operands, got %lu",
                           (unsigned long)arg_count);
        }
        return CALC_STATUS_INVALID_ARGUMENT;
    }

    base = args[0];
    exponent = args[1];
    result = pow(base, exponent);

    if (isnan(result) && !isnan(base) && !isnan(exponent)) {
        if (have_buf) {
            (void)snprintf(error_buf, error_buf_size,
                           "%g ^ %g is not a real number (negative base, non-integer exponent)",
                           base, exponent);
        }
        return CALC_STATUS_DOMAIN_ERROR;
    }
    if (isinf(result) && isfinite(base) && isfinite(exponent)) {
        if (have_buf) {
            (void)snprintf(error_buf, error_buf_size, "%g ^ %g is too large for a double",
                           base, exponent);
        }
        return CALC_STATUS_OVERFLOW;
    }

    *out_result = result;
    return CALC_STATUS_OK;
}

/* Fields are set by name (C99 designated initializers), never by position: a later ABI minor
 * appends fields, and a designated initializer leaves them zero / NULL ("absent") instead of
 * breaking the build. */
static const calc_operation_t operations[] = {
    {
        .name = "pow",
        .description = "a ^ b: a raised to the power b",
        .symbol = "^",
        .execute = pow_execute,
        .kind = CALC_OPERATION_KIND_INFIX,
        .associativity = CALC_ASSOCIATIVITY_RIGHT, /* a ^ b ^ c is a ^ (b ^ c) */
        .precedence = 40, /* power, above unary minus (30) */
        .min_arity = 2,
        .max_arity = 2,
    },
};

/* Not set, so 0 / NULL: flags, init and shutdown (no instance state). */
static const calc_plugin_t descriptor = {
    .magic = CALC_PLUGIN_MAGIC,
    .struct_size = sizeof(calc_plugin_t),
    .abi_version = CALC_ABI_VERSION_INIT,
    .name = "pow",
    .version = "1.0.0",
    .author = "calc examples",
    .description = "Exponentiation as the right-associative infix operator ^",
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
