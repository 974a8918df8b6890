/*
 * Application-defined interfaces through libcalc_host's C API (ABI 1.4, calc_host 1.3): a C
 * application offers its own interface, loads the shapes fixture (tests/fixtures/c/shapes.c),
 * finds its providers, calls their vtables with their instances, and keeps a handle after the
 * host is freed. Prints "ok <check>" per check; exits 1 at the first failure.
 *
 *   capi_iface_test DIR_WITH_LIBSHAPES
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calc_host.h"

/* The fixture's interfaces, as the application's own header would define them. */
typedef struct test_shape_vtable_t {
    calc_status_t (*area)(void *instance, double w, double h, double *out); /* Since 1.0 */
    int32_t (*sides)(void *instance);                                     /* Since 1.1 */
} test_shape_vtable_t;

typedef struct test_counter_vtable_t {
    uint64_t (*next)(void *instance); /* Since 2.0 */
} test_counter_vtable_t;

/* The interface this application offers its plugins. */
typedef struct test_host_vtable_t {
    uint64_t (*step)(void); /* Since 1.0 */
} test_host_vtable_t;

static uint64_t step_by_five(void) { return 5; }

static const test_host_vtable_t host_vtable = {step_by_five};

/* Collects what calc_iface_call_bytes writes. */
typedef struct sink {
    char data[256];
    size_t len;
} sink;

static void collect(void *writer, const void *data, size_t len) {
    sink *s = (sink *)writer;
    if (len > sizeof s->data - s->len) len = sizeof s->data - s->len;
    memcpy(s->data + s->len, data, len);
    s->len += len;
}

static int failures = 0;

#define CHECK(cond, what)                                                                     \
    do {                                                                                      \
        if (cond) {                                                                           \
            printf("ok %s\n", what);                                                          \
        } else {                                                                              \
            printf("FAILED %s (line %d): %s\n", what, __LINE__, calc_last_error_message());   \
            failures++;                                                                       \
        }                                                                                     \
    } while (0)

int main(int argc, char **argv) {
    calc_host_t *host = NULL;
    calc_iface_t *shape = NULL;
    calc_iface_t *counter = NULL;
    calc_iface_t *missing = NULL;
    const test_shape_vtable_t *shape_vtable;
    const test_counter_vtable_t *counter_vtable;
    uint16_t minor = 0;
    uint32_t size = 0;
    double area = 0;
    size_t loaded = 0;
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR_WITH_LIBSHAPES\n", argv[0]);
        return 2;
    }
    CHECK(calc_host_new(&host) == CALC_STATUS_OK, "host_new");

    /* Offers: malformed ones are refused with a message, a good one accepted once. */
    CHECK(calc_host_offer_interface(host, "nodot", 1, 0, &host_vtable, sizeof host_vtable) ==
              CALC_STATUS_INVALID_ARGUMENT,
          "offer refuses a malformed id");
    CHECK(strstr(calc_last_error_message(), "not an interface id") != NULL,
          "offer names the reason");
    CHECK(calc_host_offer_interface(host, "calc-tests.host", 1, 0, NULL, 8) ==
              CALC_STATUS_INVALID_ARGUMENT,
          "offer refuses a NULL vtable");
    CHECK(calc_host_offer_interface(host, "calc-tests.host", 1, 0, &host_vtable, 0) ==
              CALC_STATUS_INVALID_ARGUMENT,
          "offer refuses an empty vtable");
    CHECK(calc_host_offer_interface(host, "calc-tests.host", 1, 0, &host_vtable,
                                    sizeof host_vtable) == CALC_STATUS_OK,
          "offer");
    CHECK(calc_host_offer_interface(host, "calc-tests.host", 1, 1, &host_vtable,
                                    sizeof host_vtable) == CALC_STATUS_INVALID_ARGUMENT,
          "offer refuses the same id and major twice");
    CHECK(calc_host_offer_interface(NULL, "calc-tests.host", 1, 0, &host_vtable,
                                    sizeof host_vtable) == CALC_STATUS_NULL_ARGUMENT,
          "offer with a NULL host");

    CHECK(calc_host_load_dir(host, argv[1], &loaded) == CALC_STATUS_OK && loaded == 1,
          "load_dir");
    CHECK(calc_host_interface_count(host, "calc-tests.shape", 1) == 1, "one shape provider");
    CHECK(calc_host_interface_count(host, "calc-tests.shape", 2) == 0, "no shape 2.x");
    CHECK(calc_host_interface_count(host, "calc-tests.none", 1) == 0, "unknown id");
    CHECK(calc_host_interface_count(NULL, "calc-tests.shape", 1) == 0, "count, NULL host");
    CHECK(calc_host_interface_count(host, NULL, 1) == 0, "count, NULL id");

    CHECK(calc_iface_new(host, "calc-tests.shape", 1, 1, &missing) == CALC_STATUS_NOT_FOUND &&
              missing == NULL,
          "no second provider");
    CHECK(strstr(calc_last_error_message(), "calc-tests.shape") != NULL,
          "not found names the interface");
    CHECK(calc_iface_new(host, "calc-tests.shape", 1, 0, &shape) == CALC_STATUS_OK, "iface_new");
    CHECK(strcmp(calc_iface_plugin_name(shape), "shapes") == 0, "plugin name");
    shape_vtable = (const test_shape_vtable_t *)calc_iface_vtable(shape, &minor, &size);
    CHECK(shape_vtable != NULL && minor == 1 && size == sizeof(test_shape_vtable_t),
          "vtable, minor and size");
    CHECK(shape_vtable->area(calc_iface_instance(shape), 3, 4, &area) == CALC_STATUS_OK &&
              area == 12,
          "call through the vtable with the plugin's instance");
    CHECK(size >= sizeof(test_shape_vtable_t) && shape_vtable->sides(calc_iface_instance(shape)) == 4,
          "a 1.1 field, after checking the size");

    CHECK(calc_iface_new(host, "calc-tests.counter", 2, 0, &counter) == CALC_STATUS_OK,
          "counter");
    counter_vtable = (const test_counter_vtable_t *)calc_iface_vtable(counter, NULL, NULL);
    CHECK(counter_vtable->next(calc_iface_instance(counter)) == 5 &&
              counter_vtable->next(calc_iface_instance(counter)) == 10,
          "the plugin steps by what the application's interface returns");

    /* The plugin's metadata lists its interfaces (calc_host 1.4). */
    {
        const calc_plugin_info_t *info = calc_host_plugin_info(host, 0);
        const calc_interface_info_t *text_info = calc_host_interface_info(host, 0, 2);
        CHECK(info != NULL && info->interface_count == 3 &&
                  strcmp(calc_host_interface_info(host, 0, 0)->id, "calc-tests.shape") == 0 &&
                  calc_host_interface_info(host, 0, 0)->minor == 1 &&
                  calc_host_interface_info(host, 0, 3) == NULL,
              "plugin metadata lists the interfaces");
        CHECK(text_info != NULL && strcmp(text_info->id, "calc-tests.text") == 0 &&
                  text_info->major == 1 && text_info->bytes != 0 &&
                  calc_host_interface_info(host, 0, 1)->bytes == 0,
              "an interface's version and kind");
    }

    /* A bytes interface, called by slot. */
    {
        calc_iface_t *text = NULL;
        sink out = {{0}, 0};
        CHECK(calc_iface_new(host, "calc-tests.text", 1, 0, &text) == CALC_STATUS_OK, "text");
        CHECK(calc_iface_call_bytes(text, 0, "shout", 5, collect, &out) == CALC_STATUS_OK &&
                  out.len == 5 && memcmp(out.data, "SHOUT", 5) == 0,
              "call_bytes");
        out.len = 0;
        CHECK(calc_iface_call_bytes(text, 1, "x", 1, collect, &out) == CALC_STATUS_DOMAIN_ERROR &&
                  out.len == 0,
              "call_bytes failure writes nothing");
        CHECK(strstr(calc_last_error_message(), "refused: x") != NULL,
              "call_bytes failure message");
        CHECK(calc_iface_call_bytes(text, 9, NULL, 0, collect, &out) == CALC_STATUS_INVALID_ARGUMENT,
              "call_bytes slot out of range");
        CHECK(calc_iface_call_bytes(shape, 0, NULL, 0, collect, &out) ==
                  CALC_STATUS_INVALID_ARGUMENT,
              "call_bytes on an interface that is not bytes");
        CHECK(calc_iface_call_bytes(text, 0, NULL, 3, collect, &out) == CALC_STATUS_NULL_ARGUMENT,
              "call_bytes NULL input");
        CHECK(calc_iface_call_bytes(text, 0, "a", 1, NULL, &out) == CALC_STATUS_NULL_ARGUMENT,
              "call_bytes NULL writer");
        calc_iface_free(text);

        /* By interface id: the provider the rollout key chooses, with fallback. */
        out.len = 0;
        CHECK(calc_host_interface_call_bytes(host, "calc-tests.text", 1, 0, "user-1", 6, "hey", 3,
                                             collect, &out) == CALC_STATUS_OK &&
                  out.len == 3 && memcmp(out.data, "HEY", 3) == 0,
              "interface_call_bytes");
        CHECK(calc_host_interface_call_bytes(host, "calc-tests.text", 1, 1, NULL, 0, "y", 1,
                                             collect, &out) == CALC_STATUS_DOMAIN_ERROR &&
                  strstr(calc_last_error_message(), "refused: y") != NULL,
              "interface_call_bytes failure, no key");
        CHECK(calc_host_interface_call_bytes(host, "calc-tests.none", 1, 0, NULL, 0, NULL, 0,
                                             collect, &out) == CALC_STATUS_NOT_FOUND,
              "interface_call_bytes without a provider");
    }

    /* The handles outlive the host: the plugin stays loaded until the last is freed. */
    calc_host_free(host);
    CHECK(shape_vtable->area(calc_iface_instance(shape), 2, 2, &area) == CALC_STATUS_OK &&
              area == 4,
          "a handle outlives its host");
    calc_iface_free(shape);
    CHECK(counter_vtable->next(calc_iface_instance(counter)) == 15, "the other handle too");
    calc_iface_free(counter);
    calc_iface_free(NULL);
    CHECK(calc_iface_vtable(NULL, &minor, &size) == NULL && calc_iface_instance(NULL) == NULL &&
              calc_iface_plugin_name(NULL) == NULL,
          "NULL handles");

    if (failures != 0) {
        printf("%d check(s) failed\n", failures);
        return 1;
    }
    printf("all interface checks passed\n");
    return 0;
}
