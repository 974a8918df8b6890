/*
 * calc-c: the calc calculator in plain C99 on libcalc_host (include/calc_host.h).
 *
 *   calc-c [--plugin-dir DIR]... EXPR...    evaluate each expression, one result per line
 *   calc-c [--plugin-dir DIR]... --list     list the plugins and their operations
 *
 * Build (from the repository root, after `cargo build -p calc-host-capi`):
 *   cc -std=c99 -Wall -Wextra -Werror -pedantic -Iinclude examples-c/host/main.c -Ltarget/debug -lcalc_host -Wl,-rpath,$PWD/target/debug -o target/debug/calc-c
 *
 * Exit status: 0 on success; 1 when an operation fails (e.g. division by zero); 2 for a usage
 * error, an expression that does not parse or an unknown operation; 3 when --list finds plugins
 * that failed to load. Files that fail to load are reported on stderr and skipped.
 */
#include <stdio.h>
#include <string.h>

#include "calc_host.h"

#define EXIT_CALL_FAILED 1
#define EXIT_USAGE 2
#define EXIT_PLUGINS 3

static void usage(FILE *to)
{
    fputs("usage: calc-c [--plugin-dir DIR]... EXPR...\n"
          "       calc-c [--plugin-dir DIR]... --list\n"
          "At least one --plugin-dir is required. Use -- before an expression that starts\n"
          "with --.\n",
          to);
}

/* Prints a result the way `calc` does for the usual cases: 14, 1022, 2.5, -6, and 0 for -0. */
static void print_number(double x)
{
    if (x == 0.0) {
        x = 0.0; /* -0 prints as 0 */
    }
    printf("%.15g\n", x);
}

/* "infix '^', precedence 40, right-associative", "function of 1 to 3", ... */
static void print_operation(const calc_operation_info_t *op)
{
    printf("  - %s: ", op->name);
    if (op->kind == CALC_OPERATION_KIND_INFIX) {
        printf("infix '%s', precedence %ld, %s-associative", op->symbol, (long)op->precedence,
               op->associativity == CALC_ASSOCIATIVITY_RIGHT ? "right" : "left");
    } else if (op->max_arity == CALC_ARITY_VARIADIC) {
        printf("function of at least %lu (variadic)", (unsigned long)op->min_arity);
    } else if (op->max_arity == op->min_arity) {
        printf("function of %lu", (unsigned long)op->min_arity);
    } else {
        printf("function of %lu to %lu", (unsigned long)op->min_arity,
               (unsigned long)op->max_arity);
    }
    if (op->description[0] != '\0') {
        printf(" - %s", op->description);
    }
    putchar('\n');
}

static void list_plugins(const calc_host_t *host)
{
    size_t i, j;
    for (i = 0; i < calc_host_plugin_count(host); i++) {
        const calc_plugin_info_t *p = calc_host_plugin_info(host, i);
        printf("%s %s (ABI %s) %s\n", p->name, p->version, p->abi_version, p->path);
        for (j = 0; j < p->operation_count; j++) {
            print_operation(calc_host_operation_info(host, i, j));
        }
    }
}

int main(int argc, char **argv)
{
    calc_host_t *host = NULL;
    calc_status_t status;
    int list = 0, dirs = 0, first_expr = argc, exit_code = 0;
    int i;
    size_t f;

    status = calc_host_new(&host);
    if (status != CALC_STATUS_OK) {
        fprintf(stderr, "calc-c: error: %s\n", calc_last_error_message());
        return EXIT_CALL_FAILED;
    }

    /* Options come first; the first other argument (or the one after --) starts the
     * expressions, so that "-6" or "-2 ^ 2" are expressions, not options. */
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--plugin-dir") == 0 && i + 1 < argc) {
            /* A directory that cannot be read is listed by calc_host_failure below. */
            (void)calc_host_load_dir(host, argv[++i], NULL);
            dirs++;
        } else if (strcmp(argv[i], "--list") == 0) {
            list = 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            calc_host_free(host);
            host = NULL;
            return 0;
        } else if (strcmp(argv[i], "--") == 0) {
            first_expr = i + 1;
            break;
        } else if (strncmp(argv[i], "--", 2) == 0) {
            fprintf(stderr, "calc-c: error: unknown option or missing value: %s\n", argv[i]);
            usage(stderr);
            calc_host_free(host);
            host = NULL;
            return EXIT_USAGE;
        } else {
            first_expr = i;
            break;
        }
    }
    if (dirs == 0 || list == (first_expr < argc)) {
        usage(stderr);
        calc_host_free(host);
        host = NULL;
        return EXIT_USAGE;
    }

    for (f = 0; f < calc_host_failure_count(host); f++) {
        fprintf(stderr, "calc-c: skipped %s\n", calc_host_failure(host, f)->message);
    }

    if (list) {
        list_plugins(host);
        exit_code = calc_host_failure_count(host) > 0 ? EXIT_PLUGINS : 0;
    }
    for (i = first_expr; i < argc; i++) {
        double result;
        status = calc_host_eval(host, argv[i], &result);
        if (status != CALC_STATUS_OK) {
            fprintf(stderr, "calc-c: error: %s\n", calc_last_error_message());
            exit_code = (status == CALC_STATUS_PARSE_ERROR || status == CALC_STATUS_NOT_FOUND)
                            ? EXIT_USAGE
                            : EXIT_CALL_FAILED;
            break;
        }
        print_number(result);
    }

    calc_host_free(host);
    host = NULL;
    return exit_code;
}
