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

/* Fake deadline services: "expired", counting their calls. */
static int deadline_calls;
static int32_t fake_expired(void *context) {
    (void)context;
    deadline_calls++;
    return 1;
}
static uint64_t fake_remaining(void *context) {
    (void)context;
    deadline_calls++;
    return 5;
}

/* CALC_HOST_HAS and CALC_DEADLINE_EXPIRED on a host table of `struct_size` bytes. */
static void host_macros(const char *label, size_t struct_size, int with_functions) {
    calc_host_api_t table;
    const calc_host_api_t *host = &table;
    memset(&table, 0, sizeof table);
    table.struct_size = (uint32_t)struct_size;
    if (with_functions) {
        table.deadline_expired = fake_expired;
        table.deadline_remaining_ns = fake_remaining;
    }
    deadline_calls = 0;
    printf("CALC_HOST_HAS(%s, deadline_expired) %d\n", label,
           CALC_HOST_HAS(host, deadline_expired));
    printf("CALC_HOST_HAS(%s, deadline_remaining_ns) %d\n", label,
           CALC_HOST_HAS(host, deadline_remaining_ns));
    printf("CALC_DEADLINE_EXPIRED(%s) %d\n", label, CALC_DEADLINE_EXPIRED(host));
    printf("deadline service calls(%s) %d\n", label, deadline_calls);
}

int main(void) {
    calc_abi_version_t v = CALC_ABI_VERSION_INIT;

    SIZE(calc_abi_version_t); ALIGN(calc_abi_version_t);
    OFF(calc_abi_version_t, major); OFF(calc_abi_version_t, minor);

    SIZE(calc_host_api_t); ALIGN(calc_host_api_t);
    OFF(calc_host_api_t, struct_size); OFF(calc_host_api_t, abi_version);
    OFF(calc_host_api_t, host_version); OFF(calc_host_api_t, context);
    OFF(calc_host_api_t, log); OFF(calc_host_api_t, get_config);
    OFF(calc_host_api_t, get_state);
    OFF(calc_host_api_t, deadline_expired); OFF(calc_host_api_t, deadline_remaining_ns);

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
    printf("CALC_DEADLINE_NONE %llu\n", (unsigned long long)CALC_DEADLINE_NONE);
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

    host_macros("1.3 table", sizeof(calc_host_api_t), 1);
    host_macros("1.3 table, NULL services", sizeof(calc_host_api_t), 0);
    host_macros("1.2 table", offsetof(calc_host_api_t, deadline_expired), 1);
    host_macros("cut table", offsetof(calc_host_api_t, deadline_remaining_ns), 1);
    return 0;
}
