/*
 * Test of libcalc_host's C API (include/calc_host.h), run by tests/it/capi.rs.
 *
 *   capi_test EXAMPLES_DIR BROKEN_DIR [LIFECYCLE_LIB [RELOAD_DIR]]
 *
 * EXAMPLES_DIR holds the example plugins (C, C++ and Rust: add, sub, pow, cmath, cpp_trig, mul,
 * div, stats); BROKEN_DIR the broken-plugin corpus of tests/broken (libbroken_*.so, libgood_c.so,
 * librust_panic.so, libgarbage.so); LIFECYCLE_LIB, optional, the tests/fixtures/c/lifecycle.c
 * plugin, which reads its configuration (extra checks of calc_host_set_plugin_config);
 * RELOAD_DIR, optional, an empty scratch directory of this run, where the hot-reload checks
 * install, replace and delete a copy of LIFECYCLE_LIB while the host watches it.
 *
 * Prints "ok <name>" for each passing check and stops with exit status 1 at the first failure.
 * Uses every function of calc_host.h. Build:
 *   cc -std=c99 -Wall -Wextra -Werror -pedantic -Iinclude tests/c/capi_test.c -Ltarget/debug -lcalc_host -Wl,-rpath,$PWD/target/debug -lm -o capi_test
 */
/* nanosleep() in poll_until_applied. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "calc_host.h"

static int checks_passed = 0;

static void check(int ok, const char *name, const char *expr, int line)
{
    if (!ok) {
        fflush(stdout);
        fprintf(stderr, "FAILED %s (capi_test.c:%d): %s\n  last error: %d \"%s\"\n", name, line,
                expr, (int)calc_last_error_code(), calc_last_error_message());
        exit(1);
    }
    printf("ok %s\n", name);
    fflush(stdout);
    checks_passed++;
}

#define CHECK(name, cond) check((cond) ? 1 : 0, (name), #cond, __LINE__)

static int contains(const char *haystack, const char *needle)
{
    return haystack != NULL && needle != NULL && strstr(haystack, needle) != NULL;
}

/* The hot-reload scenario's event log (calc_host 1.4): by hand a reload and a refused one,
 * watched a reload and a removal, by hand a load and a removal, each with its one-line
 * message; old versions' unloads interleaved wherever their last call returned. */
static int events_are(const calc_host_t *host)
{
    static const int expected[] = {CALC_EVENT_RELOADED, CALC_EVENT_FAILED, CALC_EVENT_RELOADED,
                                   CALC_EVENT_REMOVED,  CALC_EVENT_LOADED, CALC_EVENT_REMOVED};
    size_t i, n = calc_host_event_count(host), seen = 0, unloads = 0;
    for (i = 0; i < n; i++) {
        const calc_event_t *e = calc_host_event(host, i);
        if (e == NULL || e->message[0] == '\0') return 0;
        if (e->kind == CALC_EVENT_UNLOADED) {
            if (strcmp(e->plugin, "lifecycle") != 0) return 0;
            unloads++;
            continue;
        }
        if (seen >= sizeof expected / sizeof expected[0] || e->kind != expected[seen]) return 0;
        if (e->kind != CALC_EVENT_FAILED && strcmp(e->plugin, "lifecycle") != 0) return 0;
        if (e->kind == CALC_EVENT_FAILED && !contains(e->message, "liblifecycle.so")) return 0;
        seen++;
    }
    return seen == sizeof expected / sizeof expected[0] && unloads >= 2 &&
           calc_host_event(host, n) == NULL && calc_host_event_count(NULL) == 0;
}

static int eq(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* The last call returned `status`, and the thread's last error says so and mentions `needle`. */
static int failed_with(calc_status_t status, calc_status_t expected, const char *needle)
{
    return status == expected && calc_last_error_code() == expected &&
           contains(calc_last_error_message(), needle);
}

/* The last call succeeded and cleared the thread's last error. */
static int succeeded(calc_status_t status)
{
    return status == CALC_STATUS_OK && calc_last_error_code() == CALC_STATUS_OK &&
           eq(calc_last_error_message(), "");
}

static double eval(const calc_host_t *host, const char *expression, calc_status_t *status)
{
    double result = -12345.0;
    *status = calc_host_eval(host, expression, &result);
    return result;
}

/* Index of the plugin called `name`, or calc_host_plugin_count() when there is none. */
static size_t find_plugin(const calc_host_t *host, const char *name)
{
    size_t i, n = calc_host_plugin_count(host);
    for (i = 0; i < n; i++) {
        if (eq(calc_host_plugin_info(host, i)->name, name)) {
            return i;
        }
    }
    return n;
}

/* The declaration of operation `name`, searched in every plugin; NULL when missing. */
static const calc_operation_info_t *find_operation(const calc_host_t *host, const char *name)
{
    size_t i, j, n = calc_host_plugin_count(host);
    for (i = 0; i < n; i++) {
        const calc_plugin_info_t *p = calc_host_plugin_info(host, i);
        for (j = 0; j < p->operation_count; j++) {
            const calc_operation_info_t *op = calc_host_operation_info(host, i, j);
            if (eq(op->name, name)) {
                return op;
            }
        }
    }
    return NULL;
}

/* Every loaded plugin has all its strings and operations, with a sane shape. */
static int metadata_is_complete(const calc_host_t *host)
{
    size_t i, j, n = calc_host_plugin_count(host);
    char abi[32];
    /* Plugins built with these headers declare the ABI version these headers define. */
    snprintf(abi, sizeof abi, "%d.%d", (int)CALC_ABI_VERSION_MAJOR, (int)CALC_ABI_VERSION_MINOR);
    for (i = 0; i < n; i++) {
        const calc_plugin_info_t *p = calc_host_plugin_info(host, i);
        if (p == NULL || p->name == NULL || p->version == NULL || p->author == NULL ||
            p->description == NULL || p->path == NULL || !eq(p->abi_version, abi) ||
            p->sdk_version == NULL || p->api_requirement == NULL || p->operation_count == 0 ||
            p->path[0] != '/' || !contains(p->path, p->name)) {
            return 0;
        }
        for (j = 0; j < p->operation_count; j++) {
            const calc_operation_info_t *op = calc_host_operation_info(host, i, j);
            int infix = op != NULL && op->kind == CALC_OPERATION_KIND_INFIX;
            if (op == NULL || op->name == NULL || op->description == NULL ||
                (infix ? op->symbol == NULL || op->associativity == CALC_ASSOCIATIVITY_NONE ||
                             op->min_arity != 2 || op->max_arity != 2
                       : op->kind != CALC_OPERATION_KIND_FUNCTION || op->symbol != NULL ||
                             op->associativity != CALC_ASSOCIATIVITY_NONE ||
                             op->precedence != 0)) {
                return 0;
            }
        }
    }
    return 1;
}

/* Every failure names its file in its message. */
static int failures_are_complete(const calc_host_t *host)
{
    size_t i, n = calc_host_failure_count(host);
    for (i = 0; i < n; i++) {
        const calc_load_failure_t *f = calc_host_failure(host, i);
        if (f == NULL || f->path == NULL || f->path[0] == '\0' || !contains(f->message, f->path)) {
            return 0;
        }
    }
    return 1;
}

static void test_statics(void)
{
    CHECK("version_matches_headers", eq(calc_host_version(), CALC_SDK_VERSION));
    CHECK("describe_division_by_zero",
          eq(calc_status_describe(CALC_STATUS_DIVISION_BY_ZERO), "division by zero"));
    CHECK("describe_ok", eq(calc_status_describe(CALC_STATUS_OK), "ok"));
    CHECK("describe_host_statuses",
          eq(calc_status_describe(CALC_STATUS_NULL_ARGUMENT), "NULL argument") &&
              eq(calc_status_describe(CALC_STATUS_PARSE_ERROR), "parse error") &&
              eq(calc_status_describe(CALC_STATUS_LOAD_FAILED), "plugin load failed"));
    CHECK("describe_unknown", eq(calc_status_describe(12345), "unknown status") &&
                                  eq(calc_status_describe(-1), "unknown status"));
    CHECK("last_error_never_null", calc_last_error_message() != NULL);
}

/* Every function given a NULL host (here: a freed host whose pointer was set to NULL). */
static void test_null_host(calc_host_t *host)
{
    double result = 42.0, args[2] = {1.0, 2.0};
    size_t loaded = 77;
    calc_op_t *op = NULL;
    calc_expr_t *expr = NULL;
    const char *vars[1] = {"x"};

    CHECK("null_host_set_plugin_config",
          failed_with(calc_host_set_plugin_config(host, "p", "k", "v"),
                      CALC_STATUS_NULL_ARGUMENT, "host"));
    CHECK("null_host_load_file",
          failed_with(calc_host_load_file(host, "/nonexistent/libx.so"),
                      CALC_STATUS_NULL_ARGUMENT, "host"));
    CHECK("null_host_load_config",
          failed_with(calc_host_load_config(host, "/nonexistent/calc.toml"),
                      CALC_STATUS_NULL_ARGUMENT, "host"));
    CHECK("null_host_load_dir",
          failed_with(calc_host_load_dir(host, "/nonexistent", &loaded),
                      CALC_STATUS_NULL_ARGUMENT, "host") &&
              loaded == 77);
    CHECK("null_host_call", failed_with(calc_host_call(host, "add", args, 2, &result),
                                        CALC_STATUS_NULL_ARGUMENT, "host") &&
                                result == 42.0);
    CHECK("null_host_eval", failed_with(calc_host_eval(host, "1", &result),
                                        CALC_STATUS_NULL_ARGUMENT, "host") &&
                                result == 42.0);
    CHECK("null_host_op_new",
          failed_with(calc_op_new(host, "add", &op), CALC_STATUS_NULL_ARGUMENT, "host") &&
              op == NULL);
    CHECK("null_host_expr_new",
          failed_with(calc_expr_new(host, "x", vars, 1, &expr), CALC_STATUS_NULL_ARGUMENT,
                      "host") &&
              expr == NULL);
    CHECK("null_host_enable_hot_reload", failed_with(calc_host_enable_hot_reload(host),
                                                     CALC_STATUS_NULL_ARGUMENT, "host"));
    CHECK("null_host_reload_file",
          failed_with(calc_host_reload_file(host, "/nonexistent/libx.so"),
                      CALC_STATUS_NULL_ARGUMENT, "host"));
    CHECK("null_host_remove_file",
          failed_with(calc_host_remove_file(host, "/nonexistent/libx.so"),
                      CALC_STATUS_NULL_ARGUMENT, "host"));
    CHECK("null_host_watch",
          failed_with(calc_host_watch(host, 1), CALC_STATUS_NULL_ARGUMENT, "host") &&
              failed_with(calc_host_watch(host, 0), CALC_STATUS_NULL_ARGUMENT, "host"));
    CHECK("null_host_poll_changes",
          failed_with(calc_host_poll_changes(host, &loaded), CALC_STATUS_NULL_ARGUMENT, "host") &&
              loaded == 77);
    CHECK("null_host_getters", calc_host_plugin_count(host) == 0 &&
                                   calc_host_plugin_info(host, 0) == NULL &&
                                   calc_host_operation_info(host, 0, 0) == NULL &&
                                   calc_host_failure_count(host) == 0 &&
                                   calc_host_failure(host, 0) == NULL);
    calc_host_free(host); /* NULL: does nothing */
    calc_op_free(op);     /* NULL: does nothing */
    calc_expr_free(expr); /* NULL: does nothing */
    CHECK("free_null_is_a_no_op", host == NULL && op == NULL && expr == NULL);
}

static void test_empty_host(void)
{
    calc_host_t *host = NULL;
    calc_status_t status;
    double result;

    CHECK("new_null_out", failed_with(calc_host_new(NULL), CALC_STATUS_NULL_ARGUMENT, "out_host"));
    CHECK("new", succeeded(calc_host_new(&host)) && host != NULL);
    CHECK("new_host_is_empty",
          calc_host_plugin_count(host) == 0 && calc_host_failure_count(host) == 0 &&
              calc_host_plugin_info(host, 0) == NULL && calc_host_failure(host, 0) == NULL);
    CHECK("eval_number_without_plugins", succeeded(calc_host_eval(host, "2.5", &result)) &&
                                             result == 2.5);
    result = eval(host, "1 + 1", &status);
    CHECK("eval_without_plugins_is_parse_error",
          failed_with(status, CALC_STATUS_PARSE_ERROR, "at column"));
    calc_host_free(host);
    host = NULL;
}

static void test_examples(calc_host_t *host, const char *examples_dir)
{
    static const char *const names[] = {"add", "sub",  "pow", "cmath",
                                        "mul", "div", "stats", "cpp_trig"};
    size_t loaded = 0, i, n, idx;
    int all_found = 1;
    const calc_operation_info_t *op;
    const calc_plugin_info_t *p;

    CHECK("load_dir_examples", succeeded(calc_host_load_dir(host, examples_dir, &loaded)));
    n = calc_host_plugin_count(host);
    CHECK("load_dir_count", loaded >= 8 && loaded == n && calc_host_failure_count(host) == 0);
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        all_found = all_found && find_plugin(host, names[i]) < n;
    }
    CHECK("every_example_loaded", all_found);
    CHECK("plugin_metadata_complete", metadata_is_complete(host));

    idx = find_plugin(host, "pow");
    p = calc_host_plugin_info(host, idx);
    CHECK("plugin_info_pow", eq(p->version, "1.0.0") && eq(p->author, "calc examples") &&
                                 eq(p->sdk_version, CALC_SDK_VERSION) &&
                                 eq(p->api_requirement, CALC_API_REQUIREMENT_DEFAULT) &&
                                 contains(p->path, "libpow.so") && p->operation_count == 1);
    op = calc_host_operation_info(host, idx, 0);
    CHECK("operation_info_pow", op != NULL && eq(op->name, "pow") && eq(op->symbol, "^") &&
                                    op->kind == CALC_OPERATION_KIND_INFIX &&
                                    op->precedence == 40 &&
                                    op->associativity == CALC_ASSOCIATIVITY_RIGHT &&
                                    op->min_arity == 2 && op->max_arity == 2);
    op = find_operation(host, "max");
    CHECK("operation_info_max_variadic",
          op != NULL && op->kind == CALC_OPERATION_KIND_FUNCTION && op->symbol == NULL &&
              op->min_arity == 1 && op->max_arity == CALC_ARITY_VARIADIC);
    op = find_operation(host, "atan2");
    CHECK("operation_info_cpp_atan2", op != NULL && op->kind == CALC_OPERATION_KIND_FUNCTION &&
                                          op->min_arity == 2 && op->max_arity == 2 &&
                                          contains(op->description, "atan2(y, x)"));
    idx = find_plugin(host, "cpp_trig");
    p = calc_host_plugin_info(host, idx);
    CHECK("plugin_info_cpp_trig", p != NULL && p->operation_count == 4 &&
                                      eq(p->sdk_version, CALC_SDK_VERSION));
    CHECK("out_of_range_indices_give_null",
          calc_host_plugin_info(host, n) == NULL &&
              calc_host_plugin_info(host, (size_t)-1) == NULL &&
              calc_host_operation_info(host, idx, p->operation_count) == NULL &&
              calc_host_operation_info(host, n, 0) == NULL &&
              calc_host_failure(host, calc_host_failure_count(host)) == NULL);
}

static void test_call(const calc_host_t *host)
{
    double result = 0.0, args[3] = {10.0, 5.0, 7.0}, inf[1];
    inf[0] = HUGE_VAL;

    CHECK("call_add", succeeded(calc_host_call(host, "add", args, 2, &result)) && result == 15.0);
    CHECK("call_by_symbol", succeeded(calc_host_call(host, "-", args, 2, &result)) &&
                                result == 5.0);
    CHECK("call_variadic_max", succeeded(calc_host_call(host, "max", args, 3, &result)) &&
                                   result == 10.0);
    CHECK("call_cpp_atan2", succeeded(calc_host_call(host, "atan2", args, 2, &result)) &&
                                fabs(result - atan2(10.0, 5.0)) < 1e-15);
    result = 42.0;
    CHECK("call_unknown_operation_not_found",
          failed_with(calc_host_call(host, "nope", args, 2, &result), CALC_STATUS_NOT_FOUND,
                      "unknown operation 'nope'") &&
              result == 42.0);
    CHECK("call_wrong_arity", failed_with(calc_host_call(host, "add", args, 1, &result),
                                          CALC_STATUS_INVALID_ARGUMENT,
                                          "add (plugin add): expects 2 operands, got 1") &&
                                  result == 42.0);
    CHECK("call_variadic_with_no_operands",
          failed_with(calc_host_call(host, "max", NULL, 0, &result),
                      CALC_STATUS_INVALID_ARGUMENT, "max (plugin stats)"));
    args[1] = 0.0;
    CHECK("call_division_by_zero",
          failed_with(calc_host_call(host, "/", args, 2, &result), CALC_STATUS_DIVISION_BY_ZERO,
                      "div (plugin div): division by zero") &&
              result == 42.0);
    CHECK("call_c_function", succeeded(calc_host_call(host, "sqrt", args + 2, 1, &result)) &&
                                 fabs(result * result - 7.0) < 1e-12);
    CHECK("call_cpp_domain_error",
          failed_with(calc_host_call(host, "sin", inf, 1, &result), CALC_STATUS_DOMAIN_ERROR,
                      "sin (plugin cpp_trig): not defined for an infinite operand"));
    CHECK("call_null_operation", failed_with(calc_host_call(host, NULL, args, 2, &result),
                                             CALC_STATUS_NULL_ARGUMENT, "operation"));
    CHECK("call_null_args", failed_with(calc_host_call(host, "add", NULL, 2, &result),
                                        CALC_STATUS_NULL_ARGUMENT, "args"));
    CHECK("call_null_out_result", failed_with(calc_host_call(host, "add", args, 2, NULL),
                                              CALC_STATUS_NULL_ARGUMENT, "out_result"));
    CHECK("call_invalid_utf8_operation",
          failed_with(calc_host_call(host, "ad\xff", args, 2, &result), CALC_STATUS_INVALID_UTF8,
                      "operation"));
}

static void test_eval(const calc_host_t *host)
{
    calc_status_t status;
    double result;

    CHECK("eval_c_and_rust", eval(host, "2 * (3 + 4)", &status) == 14.0 && succeeded(status));
    CHECK("eval_precedence_and_variadic",
          eval(host, "2 ^ 10 - max(3, 4) / 2", &status) == 1022.0 && succeeded(status));
    CHECK("eval_right_associative", eval(host, "2 ^ 3 ^ 2", &status) == 512.0 &&
                                        succeeded(status));
    CHECK("eval_cpp", eval(host, "sin(0) + cos(0)", &status) == 1.0 && succeeded(status));
    CHECK("eval_cpp_and_c", eval(host, "atan2(0, 1) + sqrt(16)", &status) == 4.0 &&
                                succeeded(status));
    CHECK("eval_unary_minus", eval(host, "-2 ^ 2", &status) == -4.0 && succeeded(status));

    result = 42.0;
    status = calc_host_eval(host, "1 / 0", &result);
    CHECK("eval_division_by_zero",
          failed_with(status, CALC_STATUS_DIVISION_BY_ZERO, "div (plugin div): division by zero") &&
              result == 42.0);
    CHECK("status_code_is_remembered", calc_last_error_code() == CALC_STATUS_DIVISION_BY_ZERO);
    CHECK("success_clears_last_error", eval(host, "1 + 1", &status) == 2.0 &&
                                           succeeded(status));
    (void)eval(host, "2 +* 3", &status);
    CHECK("eval_parse_error",
          failed_with(status, CALC_STATUS_PARSE_ERROR, "at column 4"));
    (void)eval(host, "nope(1)", &status);
    CHECK("eval_unknown_function", failed_with(status, CALC_STATUS_PARSE_ERROR, "nope"));
    (void)eval(host, "sqrt(0 - 1)", &status);
    CHECK("eval_domain_error", failed_with(status, CALC_STATUS_DOMAIN_ERROR,
                                           "sqrt (plugin cmath): sqrt of a negative number"));
    (void)eval(host, "10 ^ 400", &status);
    CHECK("eval_overflow", failed_with(status, CALC_STATUS_OVERFLOW, "pow (plugin pow)"));
    (void)eval(host, "1 + \xff", &status);
    CHECK("eval_invalid_utf8", failed_with(status, CALC_STATUS_INVALID_UTF8, "expression"));
    CHECK("eval_null_expression", failed_with(calc_host_eval(host, NULL, &result),
                                              CALC_STATUS_NULL_ARGUMENT, "expression"));
    CHECK("eval_null_out_result", failed_with(calc_host_eval(host, "1 + 1", NULL),
                                              CALC_STATUS_NULL_ARGUMENT, "out_result"));
}

/* Compiled expressions evaluated over columns. */
static void test_expr(const calc_host_t *host)
{
    const char *xy[2] = {"x", "y"};
    const char *bad_names[2] = {"x", NULL};
    double xs[5] = {1.0, 2.0, -3.0, 0.5, 4.0}, ys[5] = {2.0, 4.0, 1.0, 0.0, 8.0}, out[5];
    const double *columns[2];
    double *big_x, *big_out;
    size_t i, rows = 10000, failed = 12345;
    int all_equal = 1;
    calc_expr_t *poly = NULL, *ratio = NULL, *missing = NULL;

    columns[0] = xs;
    columns[1] = ys;
    CHECK("expr_new", succeeded(calc_expr_new(host, "x^2 + 3*x - 1", xy, 1, &poly)) &&
                          poly != NULL);
    CHECK("expr_eval", succeeded(calc_expr_eval(poly, columns, 5, out, &failed)) &&
                           failed == 12345 && out[0] == 3.0 && out[1] == 9.0 &&
                           out[2] == -1.0 && out[3] == 0.75 && out[4] == 27.0);
    CHECK("expr_eval_no_rows", succeeded(calc_expr_eval(poly, columns, 0, NULL, NULL)));

    big_x = malloc(rows * sizeof(double));
    big_out = malloc(rows * sizeof(double));
    if (big_x == NULL || big_out == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (i = 0; i < rows; i++) {
        big_x[i] = (double)i * 0.5 - 2500.0;
    }
    columns[0] = big_x;
    CHECK("expr_eval_many_rows", succeeded(calc_expr_eval(poly, columns, rows, big_out, NULL)));
    for (i = 0; i < rows; i++) {
        all_equal &= big_out[i] == big_x[i] * big_x[i] + 3.0 * big_x[i] - 1.0;
    }
    CHECK("expr_eval_many_rows_exact", all_equal);
    free(big_x);
    free(big_out);

    columns[0] = xs;
    CHECK("expr_new_two_variables", succeeded(calc_expr_new(host, "x / y", xy, 2, &ratio)));
    CHECK("expr_eval_reports_first_failed_row",
          failed_with(calc_expr_eval(ratio, columns, 5, out, &failed),
                      CALC_STATUS_DIVISION_BY_ZERO, "row 3: div (plugin div): division by zero") &&
              failed == 3 && out[0] == 0.5 && out[1] == 0.5 && out[2] == -3.0);
    CHECK("expr_new_unknown_variable",
          failed_with(calc_expr_new(host, "x + z", xy, 2, &missing), CALC_STATUS_PARSE_ERROR,
                      "unknown variable 'z' at column 5") &&
              missing == NULL);
    CHECK("expr_new_parse_error",
          failed_with(calc_expr_new(host, "x +* 2", xy, 1, &missing), CALC_STATUS_PARSE_ERROR,
                      "at column 4") &&
              missing == NULL);
    CHECK("expr_new_null_variable", failed_with(calc_expr_new(host, "x", bad_names, 2, &missing),
                                                CALC_STATUS_NULL_ARGUMENT, "variables[1]") &&
                                        missing == NULL);
    CHECK("expr_new_null_out", failed_with(calc_expr_new(host, "x", xy, 1, NULL),
                                           CALC_STATUS_NULL_ARGUMENT, "out_expr"));
    columns[1] = NULL;
    CHECK("expr_eval_null_column", failed_with(calc_expr_eval(ratio, columns, 5, out, NULL),
                                               CALC_STATUS_NULL_ARGUMENT, "columns[1]"));
    CHECK("expr_eval_null_out", failed_with(calc_expr_eval(poly, columns, 5, NULL, NULL),
                                            CALC_STATUS_NULL_ARGUMENT, "out"));
    CHECK("expr_eval_too_many_rows",
          failed_with(calc_expr_eval(poly, columns, (size_t)-1 / 2, out, NULL),
                      CALC_STATUS_INVALID_ARGUMENT, "more than memory can hold"));
    calc_expr_free(poly);
    poly = NULL;
    calc_expr_free(ratio);
    ratio = NULL;
    CHECK("expr_eval_null_expr", failed_with(calc_expr_eval(poly, columns, 5, out, NULL),
                                             CALC_STATUS_NULL_ARGUMENT, "expr"));
}

/* Operation handles: made from a host, they outlive it. */
static void test_ops(calc_host_t **host_ref)
{
    calc_op_t *pow_op = NULL, *div_op = NULL, *atan2_op = NULL, *mul_op = NULL, *missing = NULL;
    calc_expr_t *expr = NULL;
    const char *x_name[1] = {"x"};
    const double *x_column[1];
    double result = 0.0, args[2] = {2.0, 10.0}, zero[2] = {1.0, 0.0}, results[2];
    double bases[4], exponents[4], batch_out[4];
    const double *columns[2];
    size_t failed = 12345;

    CHECK("op_new", succeeded(calc_op_new(*host_ref, "pow", &pow_op)) && pow_op != NULL);
    CHECK("op_call", succeeded(calc_op_call(pow_op, args, 2, &result)) && result == 1024.0);
    CHECK("op_call_wrong_arity", failed_with(calc_op_call(pow_op, args, 1, &result),
                                             CALC_STATUS_INVALID_ARGUMENT, "pow (plugin pow)"));
    CHECK("op_new_by_symbol", succeeded(calc_op_new(*host_ref, "/", &div_op)));
    result = 42.0;
    CHECK("op_call_error", failed_with(calc_op_call(div_op, zero, 2, &result),
                                       CALC_STATUS_DIVISION_BY_ZERO,
                                       "div (plugin div): division by zero") &&
                               result == 42.0);
    CHECK("op_new_not_found",
          failed_with(calc_op_new(*host_ref, "nope", &missing), CALC_STATUS_NOT_FOUND, "nope") &&
              missing == NULL);
    CHECK("op_new_null_operation", failed_with(calc_op_new(*host_ref, NULL, &missing),
                                               CALC_STATUS_NULL_ARGUMENT, "operation") &&
                                       missing == NULL);
    CHECK("op_new_null_out", failed_with(calc_op_new(*host_ref, "pow", NULL),
                                         CALC_STATUS_NULL_ARGUMENT, "out_op"));
    CHECK("op_call_null_op", failed_with(calc_op_call(missing, args, 2, &result),
                                         CALC_STATUS_NULL_ARGUMENT, "op"));
    CHECK("op_call_null_args", failed_with(calc_op_call(pow_op, NULL, 2, &result),
                                           CALC_STATUS_NULL_ARGUMENT, "args"));
    CHECK("op_call_null_out_result", failed_with(calc_op_call(pow_op, args, 2, NULL),
                                                 CALC_STATUS_NULL_ARGUMENT, "out_result"));
    CHECK("op_new_cpp_and_rust", succeeded(calc_op_new(*host_ref, "atan2", &atan2_op)) &&
                                     succeeded(calc_op_new(*host_ref, "mul", &mul_op)));

    /* Batches (calc_host 1.4): one call over whole columns, in place. */
    bases[0] = 2.0; bases[1] = 3.0; bases[2] = -1.0; bases[3] = 10.0;
    exponents[0] = 10.0; exponents[1] = 2.0; exponents[2] = 3.0; exponents[3] = 0.0;
    columns[0] = bases;
    columns[1] = exponents;
    CHECK("op_call_batch", succeeded(calc_op_call_batch(pow_op, columns, 2, 4, batch_out,
                                                        &failed)) &&
                               failed == 12345 && batch_out[0] == 1024.0 &&
                               batch_out[1] == 9.0 && batch_out[2] == -1.0 &&
                               batch_out[3] == 1.0);
    CHECK("op_call_batch_rust", succeeded(calc_op_call_batch(mul_op, columns, 2, 4, batch_out,
                                                             NULL)) &&
                                    batch_out[0] == 20.0 && batch_out[1] == 6.0 &&
                                    batch_out[2] == -3.0 && batch_out[3] == 0.0);
    CHECK("op_call_batch_reports_first_failed_row",
          failed_with(calc_op_call_batch(div_op, columns, 2, 4, batch_out, &failed),
                      CALC_STATUS_DIVISION_BY_ZERO, "row 3: div (plugin div): division by zero") &&
              failed == 3 && batch_out[0] == 0.2 && batch_out[1] == 1.5 &&
              batch_out[2] == -1.0 / 3.0);
    failed = 12345;
    CHECK("op_call_batch_wrong_arity",
          failed_with(calc_op_call_batch(pow_op, columns, 1, 4, batch_out, &failed),
                      CALC_STATUS_INVALID_ARGUMENT, "pow (plugin pow): expects 2 operands, got 1") &&
              failed == 12345 && !contains(calc_last_error_message(), "row"));
    CHECK("op_call_batch_no_rows", succeeded(calc_op_call_batch(pow_op, columns, 2, 0, NULL,
                                                                NULL)));
    columns[1] = NULL;
    CHECK("op_call_batch_null_column",
          failed_with(calc_op_call_batch(pow_op, columns, 2, 4, batch_out, NULL),
                      CALC_STATUS_NULL_ARGUMENT, "columns[1]"));
    columns[1] = exponents;
    CHECK("op_call_batch_null_columns",
          failed_with(calc_op_call_batch(pow_op, NULL, 2, 4, batch_out, NULL),
                      CALC_STATUS_NULL_ARGUMENT, "columns"));
    CHECK("op_call_batch_null_out",
          failed_with(calc_op_call_batch(pow_op, columns, 2, 4, NULL, NULL),
                      CALC_STATUS_NULL_ARGUMENT, "out"));
    CHECK("op_call_batch_too_many_rows",
          failed_with(calc_op_call_batch(pow_op, columns, 2, (size_t)-1, batch_out, NULL),
                      CALC_STATUS_INVALID_ARGUMENT, "rows: ") &&
              contains(calc_last_error_message(), "more than memory can hold"));
    CHECK("op_call_batch_too_many_columns",
          failed_with(calc_op_call_batch(pow_op, columns, (size_t)-1, 4, batch_out, NULL),
                      CALC_STATUS_INVALID_ARGUMENT, "columns: "));
    CHECK("op_call_batch_null_op",
          failed_with(calc_op_call_batch(missing, columns, 2, 4, batch_out, NULL),
                      CALC_STATUS_NULL_ARGUMENT, "op"));

    CHECK("expr_new_before_free",
          succeeded(calc_expr_new(*host_ref, "max(x, 1) * 3 ^ 2", x_name, 1, &expr)));

    /* Free the host: the handles keep their plugins loaded. */
    calc_host_free(*host_ref);
    *host_ref = NULL;
    x_column[0] = args;
    CHECK("expr_outlives_host", succeeded(calc_expr_eval(expr, x_column, 2, results, NULL)) &&
                                    results[0] == 18.0 && results[1] == 90.0);
    calc_expr_free(expr);
    expr = NULL;
    CHECK("op_outlives_host_c", succeeded(calc_op_call(pow_op, args, 2, &result)) &&
                                    result == 1024.0);
    CHECK("op_outlives_host_cpp", succeeded(calc_op_call(atan2_op, zero + 1, 2, &result)) &&
                                      result == 0.0);
    CHECK("op_outlives_host_rust", succeeded(calc_op_call(mul_op, args, 2, &result)) &&
                                       result == 20.0);
    CHECK("op_outlives_host_error", failed_with(calc_op_call(div_op, zero, 2, &result),
                                                CALC_STATUS_DIVISION_BY_ZERO, "division by zero"));
    CHECK("op_batch_outlives_host", succeeded(calc_op_call_batch(mul_op, columns, 2, 4,
                                                                  batch_out, NULL)) &&
                                        batch_out[0] == 20.0 && batch_out[3] == 0.0);
    calc_op_free(pow_op);
    pow_op = NULL;
    calc_op_free(div_op);
    div_op = NULL;
    calc_op_free(atan2_op);
    atan2_op = NULL;
    /* The Rust plugin is the last one alive: freeing its handle unloads it. */
    calc_op_free(mul_op);
    mul_op = NULL;
    CHECK("op_free_then_null_is_safe",
          failed_with(calc_op_call(mul_op, args, 2, &result), CALC_STATUS_NULL_ARGUMENT, "op"));
}

static void test_load_failures(calc_host_t *host, const char *examples_dir, const char *broken_dir)
{
    char path[4096];
    size_t before = calc_host_failure_count(host), plugins = calc_host_plugin_count(host);
    size_t loaded = 77;
    const calc_load_failure_t *f;
    calc_status_t status;

    (void)snprintf(path, sizeof path, "%s/libbroken_bad_magic.so", broken_dir);
    CHECK("load_file_broken", failed_with(calc_host_load_file(host, path),
                                          CALC_STATUS_LOAD_FAILED, path) &&
                                  contains(calc_last_error_message(), "bad magic"));
    f = calc_host_failure(host, before);
    CHECK("load_failure_listed", calc_host_failure_count(host) == before + 1 && f != NULL &&
                                     contains(f->path, "libbroken_bad_magic.so") &&
                                     contains(f->message, "bad magic") &&
                                     calc_host_plugin_count(host) == plugins);
    CHECK("host_works_after_load_failure", eval(host, "2 * (3 + 4)", &status) == 14.0 &&
                                               succeeded(status));

    (void)snprintf(path, sizeof path, "%s/libdoes_not_exist.so", broken_dir);
    CHECK("load_file_missing", failed_with(calc_host_load_file(host, path),
                                           CALC_STATUS_LOAD_FAILED, path) &&
                                   calc_host_failure_count(host) == before + 2);

    (void)snprintf(path, sizeof path, "%s/libadd.so", examples_dir);
    CHECK("load_file_duplicate_plugin",
          failed_with(calc_host_load_file(host, path), CALC_STATUS_LOAD_FAILED, "add") &&
              calc_host_failure_count(host) == before + 3 &&
              calc_host_plugin_count(host) == plugins);

    (void)snprintf(path, sizeof path, "%s/no-such-directory", broken_dir);
    CHECK("load_dir_missing", failed_with(calc_host_load_dir(host, path, &loaded),
                                          CALC_STATUS_LOAD_FAILED, path) &&
                                  loaded == 77 && calc_host_failure_count(host) == before + 4 &&
                                  contains(calc_host_failure(host, before + 3)->path,
                                           "no-such-directory"));
    CHECK("load_file_null_path", failed_with(calc_host_load_file(host, NULL),
                                             CALC_STATUS_NULL_ARGUMENT, "path"));
    CHECK("load_dir_null_dir", failed_with(calc_host_load_dir(host, NULL, &loaded),
                                           CALC_STATUS_NULL_ARGUMENT, "dir"));
    CHECK("load_file_invalid_utf8", failed_with(calc_host_load_file(host, "/tmp/lib\xff.so"),
                                                CALC_STATUS_INVALID_UTF8, "path"));
    CHECK("failures_name_their_files", failures_are_complete(host) &&
                                           calc_host_failure_count(host) == before + 4);
    CHECK("host_works_after_all_failures",
          eval(host, "2 ^ 10 - max(3, 4) / 2", &status) == 1022.0 && succeeded(status));
}

static void test_broken_dir(const char *broken_dir)
{
    calc_host_t *host = NULL;
    calc_status_t status;
    double result = 0.0, one = 1.0;

    CHECK("new_broken_host", succeeded(calc_host_new(&host)));
    /* out_loaded may be NULL. */
    CHECK("load_dir_broken", succeeded(calc_host_load_dir(host, broken_dir, NULL)));
    CHECK("load_dir_broken_counts",
          calc_host_plugin_count(host) >= 2 && calc_host_failure_count(host) >= 17 &&
              find_plugin(host, "good_c") < calc_host_plugin_count(host) &&
              find_plugin(host, "rust_panic") < calc_host_plugin_count(host));
    CHECK("broken_failures_name_their_files", failures_are_complete(host));
    CHECK("broken_dir_good_plugin_works", eval(host, "twice(21)", &status) == 42.0 &&
                                              succeeded(status));
    CHECK("rust_panic_is_reported",
          failed_with(calc_host_call(host, "boom", &one, 1, &result), CALC_STATUS_PANIC,
                      "deliberate panic for testing"));
    CHECK("rust_plugin_works_after_panic",
          succeeded(calc_host_call(host, "fine", &one, 1, &result)) && result == 2.0);
    calc_host_free(host);
    host = NULL;
    CHECK("freed_host_is_null", calc_host_plugin_count(host) == 0);
}

static void test_config(const char *lifecycle_lib)
{
    calc_host_t *host = NULL;
    double result = 0.0;

    CHECK("new_config_host", succeeded(calc_host_new(&host)));
    CHECK("set_plugin_config",
          succeeded(calc_host_set_plugin_config(host, "lifecycle", "value", "7.5")));
    CHECK("set_plugin_config_null_strings",
          failed_with(calc_host_set_plugin_config(host, NULL, "k", "v"),
                      CALC_STATUS_NULL_ARGUMENT, "plugin") &&
              failed_with(calc_host_set_plugin_config(host, "p", NULL, "v"),
                          CALC_STATUS_NULL_ARGUMENT, "key") &&
              failed_with(calc_host_set_plugin_config(host, "p", "k", NULL),
                          CALC_STATUS_NULL_ARGUMENT, "value"));
    CHECK("load_config_errors",
          failed_with(calc_host_load_config(host, NULL), CALC_STATUS_NULL_ARGUMENT, "path") &&
              failed_with(calc_host_load_config(host, "/nonexistent/calc.toml"),
                          CALC_STATUS_INVALID_ARGUMENT, "/nonexistent/calc.toml: cannot read"));
    if (lifecycle_lib != NULL) {
        CHECK("load_file", succeeded(calc_host_load_file(host, lifecycle_lib)) &&
                               calc_host_plugin_count(host) == 1);
        CHECK("plugin_reads_config", succeeded(calc_host_call(host, "value", NULL, 0, &result)) &&
                                         result == 7.5);
        CHECK("enable_hot_reload_after_loading",
              failed_with(calc_host_enable_hot_reload(host), CALC_STATUS_INVALID_ARGUMENT,
                          "already loaded"));
    }
    calc_host_free(host);
    host = NULL;
}

/* Copies file `from` to `to` with stdio; 1 on success. */
static int copy_file(const char *from, const char *to)
{
    char buf[65536];
    size_t n;
    int ok = 1;
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    if (in == NULL || out == NULL) {
        ok = 0;
    }
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0) {
        ok = fwrite(buf, 1, n, out) == n;
    }
    if (in != NULL && ferror(in)) {
        ok = 0;
    }
    if (in != NULL) {
        fclose(in);
    }
    if (out != NULL && fclose(out) != 0) {
        ok = 0;
    }
    return ok;
}

/* Writes `text` to the file `path`; 1 on success. */
static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    int ok = f != NULL && fputs(text, f) >= 0;
    if (f != NULL && fclose(f) != 0) {
        ok = 0;
    }
    return ok;
}

/* Polls the watcher until it applied a change (or 10 s passed); returns how many it applied. */
static size_t poll_until_applied(calc_host_t *host)
{
    size_t applied = 0, total = 0;
    time_t start = time(NULL);
    /* Sleep between polls: a busy loop would starve the watcher thread (under valgrind, which
     * runs one thread at a time, completely). Generous deadline for slow runs. */
    struct timespec pause = {0, 10 * 1000 * 1000};
    while (total == 0 && time(NULL) - start < 30) {
        if (calc_host_poll_changes(host, &applied) != CALC_STATUS_OK) {
            return 0;
        }
        total += applied;
        if (total == 0) {
            nanosleep(&pause, NULL);
        }
    }
    return total;
}

static double call_value(const calc_op_t *op, calc_status_t *status)
{
    double result = -12345.0;
    *status = calc_op_call(op, NULL, 0, &result);
    return result;
}

/* Hot reload of a plugin directory holding a copy of the lifecycle plugin, whose value() returns
 * its "value" configuration: each new version is initialised with the value set before it. */
static void test_reload(const char *lifecycle_lib, const char *reload_dir)
{
    calc_host_t *host = NULL;
    calc_op_t *value_op = NULL;
    char lib[4096], temp[4096];
    size_t loaded = 0, applied = 77;
    calc_status_t status;

    (void)snprintf(lib, sizeof lib, "%s/liblifecycle.so", reload_dir);
    (void)snprintf(temp, sizeof temp, "%s/liblifecycle.so.partial", reload_dir);
    CHECK("new_reload_host", succeeded(calc_host_new(&host)));
    CHECK("reload_needs_hot_reload",
          failed_with(calc_host_reload_file(host, lifecycle_lib), CALC_STATUS_INVALID_ARGUMENT,
                      "calc_host_enable_hot_reload") &&
              failed_with(calc_host_watch(host, 1), CALC_STATUS_INVALID_ARGUMENT,
                          "calc_host_enable_hot_reload") &&
              calc_host_plugin_count(host) == 0);
    CHECK("poll_changes_without_watching",
          failed_with(calc_host_poll_changes(host, &applied), CALC_STATUS_INVALID_ARGUMENT,
                      "calc_host_watch") &&
              applied == 77);
    CHECK("remove_file_not_found", failed_with(calc_host_remove_file(host, lifecycle_lib),
                                               CALC_STATUS_NOT_FOUND, "no loaded plugin"));
    CHECK("reload_null_path",
          failed_with(calc_host_reload_file(host, NULL), CALC_STATUS_NULL_ARGUMENT, "path") &&
              failed_with(calc_host_remove_file(host, NULL), CALC_STATUS_NULL_ARGUMENT, "path"));
    CHECK("enable_hot_reload", succeeded(calc_host_enable_hot_reload(host)) &&
                                   succeeded(calc_host_enable_hot_reload(host)));
    CHECK("watch_needs_a_dir", failed_with(calc_host_watch(host, 1), CALC_STATUS_INVALID_ARGUMENT,
                                           "calc_host_load_dir"));

    CHECK("reload_dir_set_up",
          succeeded(calc_host_set_plugin_config(host, "lifecycle", "value", "1.5")) &&
              copy_file(lifecycle_lib, lib) &&
              succeeded(calc_host_load_dir(host, reload_dir, &loaded)) && loaded == 1 &&
              succeeded(calc_op_new(host, "value", &value_op)) &&
              call_value(value_op, &status) == 1.5 && succeeded(status));

    /* By hand: the handle follows the new version. */
    (void)calc_host_set_plugin_config(host, "lifecycle", "value", "2.5");
    CHECK("reload_file", succeeded(calc_host_reload_file(host, lib)) &&
                             calc_host_plugin_count(host) == 1 &&
                             call_value(value_op, &status) == 2.5 && succeeded(status) &&
                             contains(calc_host_plugin_info(host, 0)->path, "liblifecycle.so"));
    /* A broken new version is refused; the old one keeps serving. */
    (void)calc_host_set_plugin_config(host, "lifecycle", "value", "9");
    CHECK("reload_file_refused_keeps_old_version",
          write_file(temp, "not a library\n") && rename(temp, lib) == 0 &&
              failed_with(calc_host_reload_file(host, lib), CALC_STATUS_LOAD_FAILED,
                          "liblifecycle.so") &&
              calc_host_plugin_count(host) == 1 && call_value(value_op, &status) == 2.5 &&
              succeeded(status) && contains(calc_host_failure(host, 0)->path, "liblifecycle.so"));
    CHECK("reload_file_restored", copy_file(lifecycle_lib, temp) && rename(temp, lib) == 0);

    /* Watched: rebuilt by rename-into-place, then deleted. */
    CHECK("watch", succeeded(calc_host_watch(host, 1)) && succeeded(calc_host_watch(host, 1)));
    CHECK("poll_changes_nothing_yet",
          succeeded(calc_host_poll_changes(host, &applied)) && applied == 0 &&
              succeeded(calc_host_poll_changes(host, NULL)));
    (void)calc_host_set_plugin_config(host, "lifecycle", "value", "3.5");
    CHECK("rebuild_plugin_file", copy_file(lifecycle_lib, temp) && rename(temp, lib) == 0);
    CHECK("poll_changes_reloads", poll_until_applied(host) == 1 &&
                                      calc_host_plugin_count(host) == 1 &&
                                      call_value(value_op, &status) == 3.5 && succeeded(status));
    CHECK("delete_plugin_file", remove(lib) == 0);
    CHECK("poll_changes_removes", poll_until_applied(host) == 1 &&
                                      calc_host_plugin_count(host) == 0 &&
                                      calc_host_plugin_info(host, 0) == NULL);
    CHECK("op_of_removed_plugin_fails", call_value(value_op, &status) == -12345.0 &&
                                            failed_with(status, CALC_STATUS_ERROR, "unloaded"));
    CHECK("unwatch", succeeded(calc_host_watch(host, 0)) &&
                         failed_with(calc_host_poll_changes(host, &applied),
                                     CALC_STATUS_INVALID_ARGUMENT, "calc_host_watch"));

    /* A file put back is loaded again, the handle follows it, and it can be removed by hand. */
    (void)calc_host_set_plugin_config(host, "lifecycle", "value", "4.5");
    CHECK("reload_file_loads_a_new_file",
          copy_file(lifecycle_lib, lib) && succeeded(calc_host_reload_file(host, lib)) &&
              calc_host_plugin_count(host) == 1 && call_value(value_op, &status) == 4.5 &&
              succeeded(status));
    CHECK("remove_file", succeeded(calc_host_remove_file(host, lib)) &&
                             calc_host_plugin_count(host) == 0 &&
                             failed_with(calc_host_remove_file(host, lib), CALC_STATUS_NOT_FOUND,
                                         "liblifecycle.so"));
    CHECK("event_log", events_are(host));
    calc_host_free(host);
    host = NULL;
    /* The handle outlives the host, with nothing behind it. */
    CHECK("op_after_reload_host_freed", call_value(value_op, &status) == -12345.0 &&
                                            failed_with(status, CALC_STATUS_ERROR, "unloaded"));
    calc_op_free(value_op);
    value_op = NULL;
}

int main(int argc, char **argv)
{
    calc_host_t *host = NULL;

    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: capi_test EXAMPLES_DIR BROKEN_DIR [LIFECYCLE_LIB [RELOAD_DIR]]\n");
        return 2;
    }
    test_statics();
    test_empty_host();
    test_config(argc >= 4 ? argv[3] : NULL);
    if (argc == 5) {
        test_reload(argv[3], argv[4]);
    }

    CHECK("new_examples_host", succeeded(calc_host_new(&host)) && host != NULL);
    test_examples(host, argv[1]);
    test_call(host);
    test_eval(host);
    test_expr(host);
    test_load_failures(host, argv[1], argv[2]);
    test_ops(&host); /* frees the host */
    CHECK("host_freed_and_null", host == NULL);
    test_null_host(host);

    test_broken_dir(argv[2]);
    printf("all %d checks passed\n", checks_passed);
    return 0;
}
