/*
 * textlint.h: the plugin interface of textlint, the second application built on calc (ABI 1.4,
 * docs/INTERFACES.md). A textlint plugin is a calc plugin that implements the bytes interface
 * "calc-apps.lint" 1.0 and no operation; textlint picks the plugins for each file by its
 * extension and prints what they find.
 *
 * A bytes interface (CALC_INTERFACE_FLAG_BYTES): every function has the calc_bytes_fn shape
 * (bytes in, bytes out through the host's writer, a status and a message in the host's buffer),
 * so nothing is allocated on one side and freed on the other, and textlint can run a plugin in
 * a runner process (textlint --isolate). Every function is [any-thread].
 */
#ifndef TEXTLINT_H
#define TEXTLINT_H

#include "calc_plugin.h"

#define TEXTLINT_INTERFACE_ID "calc-apps.lint"
#define TEXTLINT_INTERFACE_MAJOR 1
#define TEXTLINT_INTERFACE_MINOR 0

typedef struct textlint_vtable_t {
    /* The file extensions the plugin checks, without dots, comma-separated ("c,h"), or "*" for
     * every file. The input is empty. Since 1.0. */
    calc_bytes_fn extensions;
    /* Checks one file: the input is the file's bytes (owned by the host, valid during the
     * call). Writes one finding per line, "LINE:COLUMN: message\n" (1-based), nothing when the
     * file is clean. A status other than CALC_STATUS_OK (with a message) means the plugin could
     * not check the file; what it wrote is then dropped. Since 1.0. */
    calc_bytes_fn check;
} textlint_vtable_t;

/* The entry of calc_plugin_t.interfaces for a vtable `v` of this interface (C99 and C++11). */
#define TEXTLINT_INTERFACE(v)                                                                   \
    {                                                                                           \
        TEXTLINT_INTERFACE_ID, {TEXTLINT_INTERFACE_MAJOR, TEXTLINT_INTERFACE_MINOR},             \
            sizeof(textlint_vtable_t), &(v), CALC_INTERFACE_FLAG_BYTES                          \
    }

#endif /* TEXTLINT_H */
