/*
 * add: a calc plugin in plain C99 providing the infix operator `+`.
 *
 * Build (from the repository root):
 *   cc -std=c99 -Wall -Wextra -Werror -pedantic -fPIC -fvisibility=hidden -shared -Iinclude examples-c/add/plugin.c -o target/debug/plugins/libadd.so
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

static const calc_operation_t operations[] = {
    {
        "add",                         /* name */
        "a + b: the sum of a and b",   /* description */
        "+",                           /* symbol */
        add_execute,                   /* execute */
        CALC_OPERATION_KIND_INFIX,     /* kind */
        CALC_ASSOCIATIVITY_LEFT,       /* associativity */
        10,                            /* precedence: additive */
        2,                             /* min_arity */
        2                              /* max_arity */
    }
};

static const calc_plugin_t descriptor = {
    CALC_PLUGIN_MAGIC,
    sizeof(calc_plugin_t),
    CALC_ABI_VERSION_INIT,
    "add",                                  /* name */
    "1.0.0",                                /* version */
    "calc examples",                        /* author */
    "Addition as the infix operator +",     /* description */
    CALC_SDK_VERSION,                       /* sdk_version */
    CALC_API_REQUIREMENT_DEFAULT,           /* api_requirement */
    0,                                      /* flags */
    NULL,                                   /* init */
    NULL,                                   /* shutdown */
    operations,
    sizeof(operations) / sizeof(operations[0]),
    sizeof(calc_operation_t)
};

CALC_PLUGIN_ENTRY
{
    return &descriptor;
}
