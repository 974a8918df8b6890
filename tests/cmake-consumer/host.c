/*
 * A C program using libcalc_host through the installed CMake package (Calc::host or
 * Calc::host_static): loads the plugins of a directory and evaluates expressions.
 *
 *   consumer PLUGIN_DIR EXPR...
 *
 * Prints each result on its own line on stdout, and on stderr every plugin that failed to load
 * and every expression that failed. Exit status: 0 when everything loaded and evaluated, 1
 * otherwise, 2 for a bad command line.
 */
#include <stddef.h>
#include <stdio.h>

#include "calc_host.h"

int main(int argc, char **argv)
{
    calc_host_t *host = NULL;
    size_t loaded = 0;
    size_t i;
    int failed = 0;
    int arg;

    if (argc < 3) {
        fprintf(stderr, "usage: %s PLUGIN_DIR EXPR...\n", argv[0]);
        return 2;
    }
    if (calc_host_new(&host) != CALC_STATUS_OK) {
        fprintf(stderr, "calc_host_new: %s\n", calc_last_error_message());
        return 1;
    }

    /* OK even when some plugins failed: those are listed by calc_host_failure(). */
    if (calc_host_load_dir(host, argv[1], &loaded) != CALC_STATUS_OK) {
        fprintf(stderr, "%s\n", calc_last_error_message());
        failed = 1;
    }
    for (i = 0; i < calc_host_failure_count(host); i++) {
        const calc_load_failure_t *failure = calc_host_failure(host, i);
        fprintf(stderr, "load failed: %s\n", failure->message);
        failed = 1;
    }

    for (arg = 2; arg < argc; arg++) {
        double result = 0.0;
        calc_status_t status = calc_host_eval(host, argv[arg], &result);
        if (status == CALC_STATUS_OK) {
            printf("%.15g\n", result);
        } else {
            fprintf(stderr, "%s: %s (%s)\n", argv[arg], calc_last_error_message(),
                    calc_status_describe(status));
            failed = 1;
        }
    }

    calc_host_free(host);
    host = NULL;
    return failed;
}
