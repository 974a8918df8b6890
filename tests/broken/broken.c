/*
 * broken.c: one source for a corpus of deliberately broken calc plugins, for testing how the
 * host rejects them. Without any BROKEN_* macro it builds a VALID plugin, "good_c" 1.0.0, with
 * one function operation twice(x) = 2 * x. Each BROKEN_<CASE> macro changes exactly one thing
 * from that plugin (and, unless the name is the broken thing, renames it "broken_<case>").
 *
 * Build (from the repository root; <CASE> upper case, <case> the same in lower case):
 *   cc -std=c99 -Wall -Wextra -Werror -pedantic -fPIC -fvisibility=hidden -shared -Iinclude -DBROKEN_<CASE> tests/broken/broken.c -o target/debug/broken/libbroken_<case>.so
 * and the valid baseline:
 *   cc -std=c99 -Wall -Wextra -Werror -pedantic -fPIC -fvisibility=hidden -shared -Iinclude tests/broken/broken.c -o target/debug/broken/libgood_c.so
 *
 * Cases (define at most one):
 *   BROKEN_NO_ENTRY          no plugin_entry symbol; exports plugin_entry_typo instead
 *   BROKEN_ENTRY_NULL        plugin_entry returns NULL
 *   BROKEN_BAD_MAGIC         magic is 0x1234
 *   BROKEN_ABI_MAJOR_NEW     abi_version.major is CALC_ABI_VERSION_MAJOR + 1
 *   BROKEN_ABI_MAJOR_OLD     abi_version.major is 0
 *   BROKEN_ABI_MINOR_NEW     abi_version.minor is CALC_ABI_VERSION_MINOR + 1 (major unchanged)
 *   BROKEN_SIZE_SMALL        struct_size is 16
 *   BROKEN_NULL_NAME         name is NULL
 *   BROKEN_NON_UTF8_NAME     name is "bad\xff\xfe" (not UTF-8)
 *   BROKEN_BAD_VERSION       version is "not-a-version"
 *   BROKEN_API_INCOMPATIBLE  api_requirement is ">=99.0"
 *   BROKEN_NULL_EXECUTE      the operation's execute is NULL
 *   BROKEN_DUPLICATE_OPS     two operations both named "twice"
 *   BROKEN_BAD_KIND          the operation's kind is 99
 *   BROKEN_BAD_ARITY         the function operation has min_arity 3, max_arity 1
 *   BROKEN_INIT_FAILS        init returns CALC_STATUS_ERROR with "init refused: missing licence"
 *
 * Besides (with or without a case):
 *   RECORD_OPENS="path"      a constructor appends the pid of each process that opens the
 *                            library to the file "path", one line each (which processes ran
 *                            the library's code)
 *   PLUGIN_NAME="name"       the valid plugin's name instead of "good_c"
 *   TLS_DTOR                 init registers a thread-local destructor (glibc
 *                            __cxa_thread_atexit_impl), which keeps the library loaded until
 *                            the thread that ran init exits
 *
 * Note: an unknown or misspelt BROKEN_* macro is silently ignored and builds good_c; check the
 * plugin name of what you built if in doubt.
 */
#include <stddef.h>
#include <stdio.h>

#include "calc_plugin.h"

#ifdef RECORD_OPENS
#include <sys/types.h>
pid_t getpid(void); /* <unistd.h> is POSIX, not C99 */

__attribute__((constructor)) static void record_open(void) {
    FILE *log = fopen(RECORD_OPENS, "a");
    if (log != NULL) {
        fprintf(log, "%ld\n", (long)getpid());
        fclose(log);
    }
}
#endif

#if defined(BROKEN_NO_ENTRY) + defined(BROKEN_ENTRY_NULL) + defined(BROKEN_BAD_MAGIC) + \
    defined(BROKEN_ABI_MAJOR_NEW) + defined(BROKEN_ABI_MAJOR_OLD) +                     \
    defined(BROKEN_ABI_MINOR_NEW) + defined(BROKEN_SIZE_SMALL) + defined(BROKEN_NULL_NAME) + \
    defined(BROKEN_NON_UTF8_NAME) + defined(BROKEN_BAD_VERSION) +                       \
    defined(BROKEN_API_INCOMPATIBLE) + defined(BROKEN_NULL_EXECUTE) +                   \
    defined(BROKEN_DUPLICATE_OPS) + defined(BROKEN_BAD_KIND) + defined(BROKEN_BAD_ARITY) + \
    defined(BROKEN_INIT_FAILS) > 1
#error "define at most one BROKEN_* macro"
#endif

/* ---- What each case changes. Anything a case does not set keeps the valid default below. ---- */

#if defined(BROKEN_NO_ENTRY)
#define PLUGIN_NAME "broken_no_entry"
/* see the entry point at the end of the file */
#elif defined(BROKEN_ENTRY_NULL)
#define PLUGIN_NAME "broken_entry_null"
#define ENTRY_RETURNS_NULL 1
#elif defined(BROKEN_BAD_MAGIC)
#define PLUGIN_NAME "broken_bad_magic"
#define PLUGIN_MAGIC 0x1234
#elif defined(BROKEN_ABI_MAJOR_NEW)
#define PLUGIN_NAME "broken_abi_major_new"
#define ABI_MAJOR (CALC_ABI_VERSION_MAJOR + 1)
#elif defined(BROKEN_ABI_MAJOR_OLD)
#define PLUGIN_NAME "broken_abi_major_old"
#define ABI_MAJOR 0
#elif defined(BROKEN_ABI_MINOR_NEW)
#define PLUGIN_NAME "broken_abi_minor_new"
#define ABI_MINOR (CALC_ABI_VERSION_MINOR + 1)
#elif defined(BROKEN_SIZE_SMALL)
#define PLUGIN_NAME "broken_size_small"
#define STRUCT_SIZE 16
#elif defined(BROKEN_NULL_NAME)
#define PLUGIN_NAME NULL
#elif defined(BROKEN_NON_UTF8_NAME)
#define PLUGIN_NAME "bad\xff\xfe"
#elif defined(BROKEN_BAD_VERSION)
#define PLUGIN_NAME "broken_bad_version"
#define PLUGIN_VERSION "not-a-version"
#elif defined(BROKEN_API_INCOMPATIBLE)
#define PLUGIN_NAME "broken_api_incompatible"
#define API_REQUIREMENT ">=99.0"
#elif defined(BROKEN_NULL_EXECUTE)
#define PLUGIN_NAME "broken_null_execute"
#define OP_EXECUTE NULL
#elif defined(BROKEN_DUPLICATE_OPS)
#define PLUGIN_NAME "broken_duplicate_ops"
#define DUPLICATE_OP 1
#elif defined(BROKEN_BAD_KIND)
#define PLUGIN_NAME "broken_bad_kind"
#define OP_KIND ((calc_operation_kind_t)99)
#elif defined(BROKEN_BAD_ARITY)
#define PLUGIN_NAME "broken_bad_arity"
#define OP_MIN_ARITY 3
#define OP_MAX_ARITY 1
#elif defined(BROKEN_INIT_FAILS)
#define PLUGIN_NAME "broken_init_fails"
#define PLUGIN_INIT failing_init
#endif

/* ---- The valid plugin "good_c". ---- */

#ifndef PLUGIN_NAME
#define PLUGIN_NAME "good_c"
#endif
#ifndef ENTRY_RETURNS_NULL
#define ENTRY_RETURNS_NULL 0
#endif
#ifndef PLUGIN_MAGIC
#define PLUGIN_MAGIC CALC_PLUGIN_MAGIC
#endif
#ifndef ABI_MAJOR
#define ABI_MAJOR CALC_ABI_VERSION_MAJOR
#endif
#ifndef ABI_MINOR
#define ABI_MINOR CALC_ABI_VERSION_MINOR
#endif
#ifndef STRUCT_SIZE
#define STRUCT_SIZE sizeof(calc_plugin_t)
#endif
#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "1.0.0"
#endif
#ifndef API_REQUIREMENT
#define API_REQUIREMENT CALC_API_REQUIREMENT_DEFAULT
#endif
#ifdef TLS_DTOR
/* init registers a thread-local destructor with glibc, as C++ thread_local objects and Rust
 * thread_local! values with Drop do: the library then stays loaded until the thread that ran
 * init exits. */
extern int __cxa_thread_atexit_impl(void (*dtor)(void *), void *obj, void *dso_symbol);
extern void *__dso_handle;
static int tls_object;
static void tls_destructor(void *obj) { (void)obj; }
static calc_status_t tls_init(const calc_host_api_t *host, void **out_instance, char *error_buf,
                              size_t error_buf_size)
{
    (void)host;
    *out_instance = NULL;
    if (__cxa_thread_atexit_impl(tls_destructor, &tls_object, &__dso_handle) != 0) {
        snprintf(error_buf, error_buf_size, "cannot register a thread-local destructor");
        return CALC_STATUS_ERROR;
    }
    return CALC_STATUS_OK;
}
#define PLUGIN_INIT tls_init
#endif

#ifndef PLUGIN_INIT
#define PLUGIN_INIT NULL
#endif
#ifndef OP_EXECUTE
#define OP_EXECUTE twice_execute
#define NEED_TWICE_EXECUTE 1
#endif
#ifndef OP_KIND
#define OP_KIND CALC_OPERATION_KIND_FUNCTION
#endif
#ifndef OP_MIN_ARITY
#define OP_MIN_ARITY 1
#endif
#ifndef OP_MAX_ARITY
#define OP_MAX_ARITY 1
#endif
#ifndef DUPLICATE_OP
#define DUPLICATE_OP 0
#endif

#if defined(NEED_TWICE_EXECUTE) || defined(BROKEN_INIT_FAILS)
/* Writes a message into the host's error buffer, truncating to error_buf_size. */
static void set_error(char *error_buf, size_t error_buf_size, const char *message)
{
    if (error_buf != NULL && error_buf_size > 0) {
        (void)snprintf(error_buf, error_buf_size, "%s", message);
    }
}
#endif

#ifdef NEED_TWICE_EXECUTE
static calc_status_t twice_execute(void *instance, const double *args, size_t arg_count,
                                   double *out_result, char *error_buf, size_t error_buf_size)
{
    (void)instance;
    if (args == NULL || out_result == NULL || arg_count != 1) {
        set_error(error_buf, error_buf_size, "twice takes exactly 1 operand");
        return CALC_STATUS_INVALID_ARGUMENT;
    }
    *out_result = 2.0 * args[0];
    return CALC_STATUS_OK;
}
#endif

#ifdef BROKEN_INIT_FAILS
static calc_status_t failing_init(const calc_host_api_t *host, void **out_instance,
                                  char *error_buf, size_t error_buf_size)
{
    (void)host;
    (void)out_instance;
    set_error(error_buf, error_buf_size, "init refused: missing licence");
    return CALC_STATUS_ERROR;
}
#endif

/* Fields are set by name (C99 designated initializers), never by position, so that appending
 * fields in a later ABI minor does not break the build; unset fields are 0 / NULL. Every field
 * a BROKEN_* case changes is nevertheless set explicitly, to its broken or its valid value. */
#define TWICE_OPERATION                                                                 \
    {                                                                                   \
        .name = "twice",                                                                \
        .description = "twice(x): 2 * x",                                               \
        .symbol = NULL, /* functions have none */                                       \
        .execute = OP_EXECUTE,                                                          \
        .kind = OP_KIND,                                                                \
        .associativity = CALC_ASSOCIATIVITY_NONE,                                       \
        .precedence = 0,                                                                \
        .min_arity = OP_MIN_ARITY,                                                      \
        .max_arity = OP_MAX_ARITY,                                                      \
    }

static const calc_operation_t operations[] = {
    TWICE_OPERATION
#if DUPLICATE_OP
    , TWICE_OPERATION
#endif
};

/* Not set, so 0 / NULL: flags and shutdown. */
static const calc_plugin_t descriptor = {
    .magic = PLUGIN_MAGIC,
    .struct_size = STRUCT_SIZE,
    .abi_version = { .major = ABI_MAJOR, .minor = ABI_MINOR },
    .name = PLUGIN_NAME,
    .version = PLUGIN_VERSION,
    .author = "calc examples",
    .description = "Test plugin: valid unless built with a BROKEN_* macro",
    .sdk_version = CALC_SDK_VERSION,
    .api_requirement = API_REQUIREMENT,
    .init = PLUGIN_INIT,
    .operations = operations,
    .operation_count = sizeof(operations) / sizeof(operations[0]),
    .operation_size = sizeof(calc_operation_t),
};

#ifdef BROKEN_NO_ENTRY
/* CALC_PLUGIN_ENTRY with a misspelt name: the library exports no plugin_entry. */
CALC_EXTERN_C CALC_PLUGIN_EXPORT const calc_plugin_t *plugin_entry_typo(void)
#else
CALC_PLUGIN_ENTRY
#endif
{
#if ENTRY_RETURNS_NULL
    (void)descriptor; /* still referenced, so the descriptor is not an unused variable */
    return NULL;
#else
    return &descriptor;
#endif
}
