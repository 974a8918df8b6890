/*
 * Prints the layout of every ABI struct and the value of every macro of calc_plugin.h as
 * "name value" lines. tests/it/c_headers.rs compiles it (C99, -Wall -Wextra -Werror -pedantic),
 * runs it and compares each line with the Rust definitions, so the header can never silently
 * disagree with sdk/src/abi/.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "calc_plugin.h"
#include "calc_plugin.h" /* including twice must be harmless */

#define SIZE(T) printf("sizeof %s %lu\n", #T, (unsigned long)sizeof(T))
#define ALIGN(T) printf("alignof %s %lu\n", #T, (unsigned long)offsetof(struct { char c; T t; }, t))
#define OFF(T, F) printf("offsetof %s.%s %lu\n", #T, #F, (unsigned long)offsetof(T, F))
#define NUM(M) printf("%s %lld\n", #M, (long long)(M))

int main(void) {
    calc_abi_version_t v = CALC_ABI_VERSION_INIT;

    SIZE(calc_abi_version_t); ALIGN(calc_abi_version_t);
    OFF(calc_abi_version_t, major); OFF(calc_abi_version_t, minor);

    SIZE(calc_host_api_t); ALIGN(calc_host_api_t);
    OFF(calc_host_api_t, struct_size); OFF(calc_host_api_t, abi_version);
    OFF(calc_host_api_t, host_version); OFF(calc_host_api_t, context);
    OFF(calc_host_api_t, log); OFF(calc_host_api_t, get_config);
    OFF(calc_host_api_t, get_state);

    SIZE(calc_operation_t); ALIGN(calc_operation_t);
    OFF(calc_operation_t, name); OFF(calc_operation_t, description);
    OFF(calc_operation_t, symbol); OFF(calc_operation_t, execute);
    OFF(calc_operation_t, kind); OFF(calc_operation_t, associativity);
    OFF(calc_operation_t, precedence); OFF(calc_operation_t, min_arity);
    OFF(calc_operation_t, max_arity);
    OFF(calc_operation_t, execute_batch);

    SIZE(calc_plugin_t); ALIGN(calc_plugin_t);
    OFF(calc_plugin_t, magic); OFF(calc_plugin_t, struct_size);
    OFF(calc_plugin_t, abi_version); OFF(calc_plugin_t, name);
    OFF(calc_plugin_t, version); OFF(calc_plugin_t, author);
    OFF(calc_plugin_t, description); OFF(calc_plugin_t, sdk_version);
    OFF(calc_plugin_t, api_requirement); OFF(calc_plugin_t, flags);
    OFF(calc_plugin_t, init); OFF(calc_plugin_t, shutdown);
    OFF(calc_plugin_t, operations); OFF(calc_plugin_t, operation_count);
    OFF(calc_plugin_t, operation_size);
    OFF(calc_plugin_t, save_state);

    NUM(CALC_ABI_VERSION_MAJOR); NUM(CALC_ABI_VERSION_MINOR);
    printf("CALC_ABI_VERSION_INIT %u.%u\n", (unsigned)v.major, (unsigned)v.minor);
    printf("CALC_PLUGIN_MAGIC %llu\n", (unsigned long long)CALC_PLUGIN_MAGIC);
    NUM(CALC_ARITY_VARIADIC); NUM(CALC_ERROR_BUF_SIZE);
    NUM(CALC_MAX_STRING_LEN); NUM(CALC_MAX_OPERATIONS);
    printf("CALC_SDK_VERSION %s\n", CALC_SDK_VERSION);
    NUM(CALC_SDK_VERSION_MAJOR); NUM(CALC_SDK_VERSION_MINOR); NUM(CALC_SDK_VERSION_PATCH);
    NUM(CALC_SDK_VERSION_NUMBER);
    printf("CALC_API_REQUIREMENT_DEFAULT %s\n", CALC_API_REQUIREMENT_DEFAULT);
    NUM(CALC_STATUS_OK); NUM(CALC_STATUS_ERROR); NUM(CALC_STATUS_INVALID_ARGUMENT);
    NUM(CALC_STATUS_DOMAIN_ERROR); NUM(CALC_STATUS_DIVISION_BY_ZERO);
    NUM(CALC_STATUS_OVERFLOW); NUM(CALC_STATUS_PANIC);
    NUM(CALC_LOG_LEVEL_ERROR); NUM(CALC_LOG_LEVEL_WARN); NUM(CALC_LOG_LEVEL_INFO);
    NUM(CALC_LOG_LEVEL_DEBUG); NUM(CALC_LOG_LEVEL_TRACE);
    NUM(CALC_OPERATION_KIND_INFIX); NUM(CALC_OPERATION_KIND_FUNCTION);
    NUM(CALC_ASSOCIATIVITY_NONE); NUM(CALC_ASSOCIATIVITY_LEFT); NUM(CALC_ASSOCIATIVITY_RIGHT);
    return 0;
}
