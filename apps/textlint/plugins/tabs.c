/*
 * tabs: a textlint plugin in C that reports tab characters, in every file. The message says
 * what to use instead, from the configuration value "indent" (default "spaces"), and numbers
 * the tabs it has reported since it was first loaded: the count survives hot reloads, handed
 * from one version to the next (save_state, get_state). -DTABS_VERSION='"2.0.0"' builds
 * another version, whose findings name it.
 *
 *   cc -std=c99 -O2 -Wall -Wextra -Werror -pedantic -fPIC -fvisibility=hidden -shared \
 *      -Iinclude -Iapps/textlint/include apps/textlint/plugins/tabs.c -o libtabs.so
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "textlint.h"

#ifdef TABS_VERSION
/* Another version says so in its findings. */
#define TABS_NOTE "; tabs " TABS_VERSION
#else
#define TABS_VERSION "1.0.0"
#define TABS_NOTE ""
#endif

typedef struct instance {
    char indent[64];
    unsigned long reported; /* tabs reported so far; updated with atomic builtins */
} instance;

static calc_status_t tabs_init(const calc_host_api_t *host, void **out_instance, char *error_buf,
                               size_t error_buf_size) {
    instance *self = (instance *)calloc(1, sizeof *self);
    const char *indent = host->get_config(host->context, "indent");
    if (self == NULL) {
        snprintf(error_buf, error_buf_size, "out of memory");
        return CALC_STATUS_ERROR;
    }
    if (indent != NULL && strlen(indent) >= sizeof self->indent) {
        snprintf(error_buf, error_buf_size, "indent: longer than %u bytes",
                 (unsigned)sizeof self->indent - 1);
        free(self);
        return CALC_STATUS_INVALID_ARGUMENT;
    }
    strcpy(self->indent, indent != NULL ? indent : "spaces");
    /* The count the previous version handed over, if any (hot reload). */
    if (CALC_HOST_HAS(host, get_state)) {
        const void *state = NULL;
        size_t len = 0;
        if (host->get_state(host->context, &state, &len) && len > 0 && len < 32) {
            char text[32];
            memcpy(text, state, len);
            text[len] = '\0';
            self->reported = strtoul(text, NULL, 10);
        }
    }
    *out_instance = self;
    return CALC_STATUS_OK;
}

static calc_status_t tabs_save_state(void *self, calc_state_write_fn write, void *writer,
                                     char *error_buf, size_t error_buf_size) {
    char text[32];
    int n = snprintf(text, sizeof text, "%lu",
                     __atomic_load_n(&((instance *)self)->reported, __ATOMIC_RELAXED));
    (void)error_buf;
    (void)error_buf_size;
    if (n > 0) write(writer, text, (size_t)n);
    return CALC_STATUS_OK;
}

static void tabs_shutdown(void *self) { free(self); }

static calc_status_t extensions(void *self, const void *input, size_t len,
                                calc_bytes_write_fn write, void *writer, char *error_buf,
                                size_t error_buf_size) {
    (void)self;
    (void)input;
    (void)len;
    (void)error_buf;
    (void)error_buf_size;
    write(writer, "*", 1);
    return CALC_STATUS_OK;
}

static calc_status_t check(void *self, const void *input, size_t len, calc_bytes_write_fn write,
                           void *writer, char *error_buf, size_t error_buf_size) {
    instance *me = (instance *)self;
    const char *text = (const char *)input;
    size_t i, line = 1, column = 1;
    char finding[160];
    (void)error_buf;
    (void)error_buf_size;
    for (i = 0; i < len; i++) {
        if (text[i] == '\t') {
            unsigned long number = __atomic_add_fetch(&me->reported, 1, __ATOMIC_RELAXED);
            int n = snprintf(finding, sizeof finding, "%lu:%lu: tab character #%lu (use %s" TABS_NOTE ")\n",
                             (unsigned long)line, (unsigned long)column, number, me->indent);
            if (n > 0) write(writer, finding, (size_t)n < sizeof finding ? (size_t)n : sizeof finding - 1);
        }
        if (text[i] == '\n') {
            line++;
            column = 1;
        } else {
            column++;
        }
    }
    return CALC_STATUS_OK;
}

static const textlint_vtable_t vtable = {extensions, check};

static const calc_interface_t interfaces[] = {TEXTLINT_INTERFACE(vtable)};

static const calc_plugin_t descriptor = {
    .magic = CALC_PLUGIN_MAGIC,
    .struct_size = sizeof(calc_plugin_t),
    .abi_version = CALC_ABI_VERSION_INIT,
    .name = "tabs",
    .version = TABS_VERSION,
    .author = "calc examples",
    .description = "textlint: tab characters",
    .sdk_version = CALC_SDK_VERSION,
    .api_requirement = CALC_API_REQUIREMENT_DEFAULT,
    .init = tabs_init,
    .shutdown = tabs_shutdown,
    .save_state = tabs_save_state,
    .interfaces = interfaces,
    .interface_count = 1,
    .interface_size = sizeof(calc_interface_t),
};

CALC_PLUGIN_ENTRY { return &descriptor; }
