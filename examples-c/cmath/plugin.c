/*
 * cmath: a calc plugin in plain C99 providing maths functions from <math.h>:
 *   sqrt(x)     square root; x < 0 is CALC_STATUS_DOMAIN_ERROR
 *   abs(x)      absolute value
 *   floor(x)    largest integer not greater than x
 *   ceil(x)     smallest integer not less than x
 *   hypot(x, y) sqrt(x*x + y*y) without intermediate overflow; an infinite result from finite
 *               operands is CALC_STATUS_OVERFLOW
 *
 * Build (from the repository root; -lm links the maths library):
 *   cc -std=c99 -O2 -Wall -Wextra -Werror -pedantic -fPIC -fvisibility=hidden -shared -Iinclude examples-c/cmath/plugin.c -o target/debug/plugins/libcmath.so -lm
 *
 * Everything here is static except plugin_entry, the one exported symbol.
 */
#include <math.h>
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

/* The host guarantees the arity it was told, but check anyway: returns 0 and writes an error
 * unless there are exactly `expected` operands and somewhere to put the result. */
static int check_args(const char *name, size_t expected, const double *args, size_t arg_count,
                      const double *out_result, char *error_buf, size_t error_buf_size)
{
    if (args != NULL && out_result != NULL && arg_count == expected) {
        return 1;
    }
    if (error_buf != NULL && error_buf_size > 0) {
        (void)snprintf(error_buf, error_buf_size, "%s takes exactly %lu operand%s, got %lu", name,
                       (unsigned long)expected, expected == 1 ? "" : "s",
                       (unsigned long)arg_count);
    }
    return 0;
}

static calc_status_t sqrt_execute(void *instance, const double *args, size_t arg_count,
                                  double *out_result, char *error_buf, size_t error_buf_size)
{
    (void)instance;
    if (!check_args("sqrt", 1, args, arg_count, out_result, error_buf, error_buf_size)) {
        return CALC_STATUS_INVALID_ARGUMENT;
    }
    if (args[0] < 0.0) {
        set_error(error_buf, error_buf_size, "sqrt of a negative number");
        return CALC_STATUS_DOMAIN_ERROR;
    }
    *out_result = sqrt(args[0]);
    return CALC_STATUS_OK;
}

/* Defines NAME_execute for a function of one operand that cannot fail: out = FN(x). */
#define SIMPLE_UNARY(NAME, FN)                                                              \
    static calc_status_t NAME##_execute(void *instance, const double *args, size_t arg_count, \
                                        double *out_result, char *error_buf,                  \
                                        size_t error_buf_size)                                \
    {                                                                                         \
        (void)instance;                                                                       \
        if (!check_args(#NAME, 1, args, arg_count, out_result, error_buf, error_buf_size)) {  \
            return CALC_STATUS_INVALID_ARGUMENT;                                              \
        }                                                                                     \
        *out_result = FN(args[0]);                                                            \
        return CALC_STATUS_OK;                                                                \
    }

SIMPLE_UNARY(abs, fabs)
SIMPLE_UNARY(floor, floor)
SIMPLE_UNARY(ceil, ceil)

static calc_status_t hypot_execute(void *instance, const double *args, size_t arg_count,
                                   double *out_result, char *error_buf, size_t error_buf_size)
{
    double result;

    (void)instance;
    if (!check_args("hypot", 2, args, arg_count, out_result, error_buf, error_buf_size)) {
        return CALC_STATUS_INVALID_ARGUMENT;
    }
    result = hypot(args[0], args[1]);
    if (isinf(result) && isfinite(args[0]) && isfinite(args[1])) {
        set_error(error_buf, error_buf_size, "hypot result is too large for a double");
        return CALC_STATUS_OVERFLOW;
    }
    *out_result = result;
    return CALC_STATUS_OK;
}

/* Fields are set by name (C99 designated initializers), never by position: a later ABI minor
 * appends fields, and a designated initializer leaves them zero / NULL ("absent") instead of
 * breaking the build. Functions have no symbol (NULL), no associativity and precedence 0. */
#define CMATH_FUNCTION(NAME, DESCRIPTION, EXECUTE, ARITY)                                  \
    {                                                                                      \
        .name = NAME, .description = DESCRIPTION, .symbol = NULL, .execute = EXECUTE,     \
        .kind = CALC_OPERATION_KIND_FUNCTION, .associativity = CALC_ASSOCIATIVITY_NONE,   \
        .precedence = 0, .min_arity = ARITY, .max_arity = ARITY                           \
    }

static const calc_operation_t operations[] = {
    CMATH_FUNCTION("sqrt", "sqrt(x): square root of x (x >= 0)", sqrt_execute, 1),
    CMATH_FUNCTION("abs", "abs(x): absolute value of x", abs_execute, 1),
    CMATH_FUNCTION("floor", "floor(x): x rounded down to an integer", floor_execute, 1),
    CMATH_FUNCTION("ceil", "ceil(x): x rounded up to an integer", ceil_execute, 1),
    CMATH_FUNCTION("hypot", "hypot(x, y): sqrt(x*x + y*y) without overflow", hypot_execute, 2)
};

/* Not set, so 0 / NULL: flags, init and shutdown (no instance state). */
static const calc_plugin_t descriptor = {
    .magic = CALC_PLUGIN_MAGIC,
    .struct_size = sizeof(calc_plugin_t),
    .abi_version = CALC_ABI_VERSION_INIT,
    .name = "cmath",
    .version = "1.0.0",
    .author = "calc examples",
    .description = "Maths functions from the C library: sqrt, abs, floor, ceil, hypot",
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
