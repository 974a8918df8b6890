/*
 * Errors as objects (calc_host 1.3, the `_err` functions): each failure is handed to the
 * caller as a calc_error_t it frees, with the status and the message of that call, whatever
 * other threads do meanwhile; success leaves NULL. Prints "ok <check>" per check; exits 1 at
 * the end when any failed.
 *
 *   capi_err_test DIR_WITH_THE_EXAMPLE_PLUGINS
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calc_host.h"

static int failures = 0;

#define CHECK(cond, what)                                                                     \
    do {                                                                                      \
        if (cond) {                                                                           \
            printf("ok %s\n", what);                                                          \
        } else {                                                                              \
            printf("FAILED %s (line %d)\n", what, __LINE__);                                  \
            failures++;                                                                       \
        }                                                                                     \
    } while (0)

/* Whether `error` holds `status` and a message containing `part`; frees it. */
static int is_error(calc_error_t *error, calc_status_t status, const char *part) {
    int ok = error != NULL && calc_error_status(error) == status &&
             strstr(calc_error_message(error), part) != NULL;
    if (!ok && error != NULL)
        printf("  got status %d: %s\n", (int)calc_error_status(error), calc_error_message(error));
    calc_error_free(error);
    return ok;
}

/* A thread that fails its own way, many times, while the other does too. */
typedef struct worker {
    const calc_host_t *host;
    const char *expression;
    const char *expect;
    int mismatches;
} worker;

static void *work(void *arg) {
    worker *w = (worker *)arg;
    int i;
    for (i = 0; i < 2000; i++) {
        calc_error_t *error = NULL;
        double value = 0;
        calc_status_t s = calc_host_eval_err(w->host, w->expression, &value, &error);
        if (s == CALC_STATUS_OK || error == NULL || calc_error_status(error) != s ||
            strstr(calc_error_message(error), w->expect) == NULL)
            w->mismatches++;
        calc_error_free(error);
    }
    return NULL;
}

int main(int argc, char **argv) {
    calc_host_t *host = NULL;
    calc_error_t *error = (calc_error_t *)&failures; /* not NULL: success must clear it */
    calc_op_t *op = NULL;
    calc_expr_t *expr = NULL;
    double value = 0;
    size_t loaded = 0;
    if (argc != 2) {
        fprintf(stderr, "usage: capi_err_test PLUGIN_DIR\n");
        return 2;
    }

    CHECK(calc_host_new_err(&host, &error) == CALC_STATUS_OK && error == NULL,
          "success leaves no error");
    CHECK(calc_host_load_dir_err(host, argv[1], &loaded, &error) == CALC_STATUS_OK &&
              error == NULL && loaded > 0,
          "load_dir");

    CHECK(calc_host_load_dir_err(host, "/nonexistent/plugins", &loaded, &error) ==
                  CALC_STATUS_LOAD_FAILED &&
              is_error(error, CALC_STATUS_LOAD_FAILED, "/nonexistent/plugins"),
          "a failed load names the directory");
    CHECK(calc_host_eval_err(host, "2 +", &value, &error) == CALC_STATUS_PARSE_ERROR &&
              is_error(error, CALC_STATUS_PARSE_ERROR, "column"),
          "a parse error gives the column");
    CHECK(calc_host_eval_err(host, "1 / 0", &value, &error) == CALC_STATUS_DIVISION_BY_ZERO &&
              is_error(error, CALC_STATUS_DIVISION_BY_ZERO, "div"),
          "an operation's failure names the plugin");
    CHECK(calc_host_call_err(host, "nosuch", NULL, 0, &value, &error) == CALC_STATUS_NOT_FOUND &&
              is_error(error, CALC_STATUS_NOT_FOUND, "nosuch"),
          "call of an unknown operation");
    CHECK(calc_op_new_err(host, "nosuch", &op, &error) == CALC_STATUS_NOT_FOUND &&
              is_error(error, CALC_STATUS_NOT_FOUND, "nosuch") && op == NULL,
          "op_new of an unknown operation");
    CHECK(calc_op_new_err(host, "add", &op, &error) == CALC_STATUS_OK && error == NULL,
          "op_new");
    {
        double args[1] = {1};
        CHECK(calc_op_call_err(op, args, 1, &value, &error) == CALC_STATUS_INVALID_ARGUMENT &&
                  is_error(error, CALC_STATUS_INVALID_ARGUMENT, "expects 2 operands, got 1"),
              "op_call with the wrong operand count");
    }
    {
        const double as[3] = {1, 2, 3}, bs[3] = {10, 20, 30};
        const double *columns[2] = {as, bs};
        double outs[3] = {0, 0, 0};
        size_t row = 99;
        CHECK(calc_op_call_batch_err(op, columns, 2, 3, outs, &row, &error) == CALC_STATUS_OK &&
                  error == NULL && row == 99 && outs[0] == 11 && outs[1] == 22 && outs[2] == 33,
              "op_call_batch");
        CHECK(calc_op_call_batch_err(op, columns, 1, 3, outs, &row, &error) ==
                      CALC_STATUS_INVALID_ARGUMENT &&
                  row == 99 && is_error(error, CALC_STATUS_INVALID_ARGUMENT, "got 1"),
              "op_call_batch with the wrong operand count");
    }
    calc_op_free(op);
    {
        const char *vars[1] = {"x"};
        const double xs[3] = {1, 0, 2};
        const double *columns[1] = {xs};
        double outs[3];
        size_t row = 99;
        CHECK(calc_expr_new_err(host, "1 / x", vars, 1, &expr, &error) == CALC_STATUS_OK &&
                  error == NULL,
              "expr_new");
        CHECK(calc_expr_eval_err(expr, columns, 3, outs, &row, &error) ==
                      CALC_STATUS_DIVISION_BY_ZERO &&
                  row == 1 && is_error(error, CALC_STATUS_DIVISION_BY_ZERO, "div"),
              "expr_eval names the failing row's error");
        calc_expr_free(expr);
    }
    CHECK(calc_host_reload_file_err(host, "x.so", &error) == CALC_STATUS_INVALID_ARGUMENT &&
              is_error(error, CALC_STATUS_INVALID_ARGUMENT, "hot reload"),
          "reload_file without hot reload");
    CHECK(calc_iface_new_err(host, "calc-tests.none", 1, 0, NULL, &error) ==
                  CALC_STATUS_NULL_ARGUMENT &&
              is_error(error, CALC_STATUS_NULL_ARGUMENT, "out_iface"),
          "a NULL out-parameter");
    CHECK(calc_host_eval_err(host, "2 +", &value, NULL) == CALC_STATUS_PARSE_ERROR,
          "a NULL out_error only drops the error");
    CHECK(calc_error_status(NULL) == CALC_STATUS_OK && strcmp(calc_error_message(NULL), "") == 0,
          "NULL errors");
    calc_error_free(NULL);

    /* Two threads failing differently at once each get their own errors. */
    {
        pthread_t threads[2];
        worker workers[2] = {{NULL, "2 +", "column", 0}, {NULL, "1 / 0", "div", 0}};
        int i;
        for (i = 0; i < 2; i++) {
            workers[i].host = host;
            pthread_create(&threads[i], NULL, work, &workers[i]);
        }
        for (i = 0; i < 2; i++) pthread_join(threads[i], NULL);
        CHECK(workers[0].mismatches == 0 && workers[1].mismatches == 0,
              "concurrent failures keep their own errors");
    }

    calc_host_free(host);
    if (failures != 0) {
        printf("%d check(s) failed\n", failures);
        return 1;
    }
    printf("all error-object checks passed\n");
    return 0;
}
