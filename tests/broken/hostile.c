/*
 * hostile.c: one source for a corpus of hostile calc plugins, whose descriptors attack the
 * host's reading of plugin memory: pointers into unmapped memory, data that runs off the end of
 * a mapping, sizes that would send the loader far past a table, and a `plugin_entry` that is not
 * code. The host must refuse each with one line naming the file, and never fault.
 *
 * Build (from the repository root; <CASE> upper case, <case> the same in lower case):
 *   cc -std=c99 -Wall -Wextra -Werror -pedantic -fPIC -fvisibility=hidden -shared -Iinclude -DHOSTILE_<CASE> tests/broken/hostile.c -o target/debug/hostile/libhostile_<case>.so
 *
 * Cases (define exactly one):
 *   HOSTILE_ENTRY_IS_DATA         `plugin_entry` is an exported data object, not a function
 *   HOSTILE_ENTRY_WILD            plugin_entry returns (void *)0x10
 *   HOSTILE_DESC_RUNS_OFF         the descriptor's last bytes lie in an inaccessible page
 *   HOSTILE_NAME_WILD             name points to address 0x1000 (never mapped)
 *   HOSTILE_NAME_RUNS_OFF         name has no NUL before an inaccessible page
 *   HOSTILE_DESCRIPTION_RUNS_OFF  the operation's description has no NUL before an inaccessible page
 *   HOSTILE_OPS_WILD              operations points to address 0x2000 (never mapped)
 *   HOSTILE_OPS_RUN_OFF           operation_count is 2, the second element lies in an inaccessible page
 *   HOSTILE_OP_SIZE_HUGE          operation_size is 0x40000000
 *   HOSTILE_STRUCT_SIZE_HUGE      struct_size is 0xfffffff0
 *   HOSTILE_OP_COUNT_HUGE         operation_count is 2^32 - 1
 *   HOSTILE_ENTRY_MISALIGNED      plugin_entry returns a descriptor pointer one byte off
 *   HOSTILE_IFACES_WILD           interfaces points to address 0x3000 (never mapped)
 *   HOSTILE_IFACE_COUNT_HUGE      interface_count is 2^32 - 1
 *   HOSTILE_IFACE_ID_RUNS_OFF     an interface id has no NUL before an inaccessible page
 *   HOSTILE_VTABLE_RUNS_OFF       a vtable of 16 bytes whose last 8 lie in an inaccessible page
 *   HOSTILE_BYTES_SLOT_DATA       a bytes interface (every field a function) whose vtable holds
 *                                 data, which a host calling it by slot would execute
 *   HOSTILE_IFACE_FLAGS_UNKNOWN   an interface with flag bits no ABI defines
 *
 * Load-time faults, which kill or hang the process that opens the file (so only a vetting child
 * may open these; see tests/it/vetting.rs):
 *   HOSTILE_CTOR_CRASH            a library constructor dereferences NULL
 *   HOSTILE_CTOR_EXIT             a library constructor calls exit(0)
 *   HOSTILE_CTOR_HANG             a library constructor never returns
 *   HOSTILE_ENTRY_CRASH           plugin_entry dereferences NULL
 *   HOSTILE_ENTRY_HANG            plugin_entry never returns
 *   HOSTILE_CTOR_ABORT            a library constructor calls abort()
 *   HOSTILE_CTOR_KILL             a library constructor sends itself SIGKILL
 *   HOSTILE_CTOR_EXIT3            a library constructor calls _exit(3)
 *   HOSTILE_CTOR_STACK            a library constructor recurses until the stack overflows
 *   HOSTILE_CTOR_CLOSE_STDIN      a library constructor closes descriptor 0 (where the host
 *                                 puts a runner's connection) and returns; the plugin is invalid
 *   HOSTILE_CTOR_WRITE_STDIN      a library constructor writes a forged frame to descriptor 0
 *                                 and garbage to descriptor 1, then returns; invalid
 *   HOSTILE_CTOR_FORK             a library constructor forks a child that sleeps for an hour
 *                                 (its pid written to the file HOSTILE_PID_FILE names, when
 *                                 defined); the plugin is invalid
 *   HOSTILE_ENTRY_ABORT           plugin_entry calls abort()
 *   HOSTILE_CTOR_FORGE            where descriptor 0 is a socket (a vetting child's connection,
 *                                 were it left there), a library constructor writes a forged
 *                                 "valid" verdict to it; in any other process it crashes: a
 *                                 host that believed the forgery would open it and die
 *
 * The "runs off" cases build their data in plugin_entry, at the end of a readable page followed
 * by a PROT_NONE page (mmap), so that a host reading one byte too far faults.
 */
#define _DEFAULT_SOURCE 1
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#ifdef HOSTILE_ENTRY_IS_DATA
/* The header declares plugin_entry as a function: declare that under another name, and export
 * a data object named plugin_entry below. */
#define plugin_entry hostile_unused_entry_declaration
#endif
#include "calc_plugin.h"
#ifdef HOSTILE_ENTRY_IS_DATA
#undef plugin_entry
#endif

#if defined(HOSTILE_ENTRY_IS_DATA) + defined(HOSTILE_ENTRY_WILD) + defined(HOSTILE_DESC_RUNS_OFF) + \
    defined(HOSTILE_NAME_WILD) + defined(HOSTILE_NAME_RUNS_OFF) +                                 \
    defined(HOSTILE_DESCRIPTION_RUNS_OFF) + defined(HOSTILE_OPS_WILD) +                           \
    defined(HOSTILE_OPS_RUN_OFF) + defined(HOSTILE_OP_SIZE_HUGE) +                                \
    defined(HOSTILE_STRUCT_SIZE_HUGE) + defined(HOSTILE_CTOR_CRASH) + defined(HOSTILE_CTOR_EXIT) + \
    defined(HOSTILE_CTOR_HANG) + defined(HOSTILE_ENTRY_CRASH) + defined(HOSTILE_ENTRY_HANG) +     \
    defined(HOSTILE_OP_COUNT_HUGE) + defined(HOSTILE_ENTRY_MISALIGNED) +                          \
    defined(HOSTILE_CTOR_ABORT) + defined(HOSTILE_CTOR_KILL) + defined(HOSTILE_CTOR_EXIT3) +      \
    defined(HOSTILE_CTOR_STACK) + defined(HOSTILE_CTOR_CLOSE_STDIN) +                             \
    defined(HOSTILE_CTOR_WRITE_STDIN) + defined(HOSTILE_CTOR_FORK) + defined(HOSTILE_ENTRY_ABORT) + \
    defined(HOSTILE_CTOR_FORGE) + defined(HOSTILE_IFACES_WILD) + defined(HOSTILE_IFACE_COUNT_HUGE) + \
    defined(HOSTILE_IFACE_ID_RUNS_OFF) + defined(HOSTILE_VTABLE_RUNS_OFF) +                        \
    defined(HOSTILE_BYTES_SLOT_DATA) + defined(HOSTILE_IFACE_FLAGS_UNKNOWN) != 1
#error "define exactly one HOSTILE_* macro"
#endif

static calc_status_t twice_execute(void *instance, const double *args, size_t n, double *out,
                                   char *error_buf, size_t error_buf_size) {
    (void)instance;
    (void)n;
    (void)error_buf;
    (void)error_buf_size;
    *out = 2.0 * args[0];
    return CALC_STATUS_OK;
}

static calc_operation_t operations[] = {{
    .name = "twice",
    .description = "twice(x): 2 * x",
    .execute = twice_execute,
    .kind = CALC_OPERATION_KIND_FUNCTION,
    .associativity = CALC_ASSOCIATIVITY_NONE,
    .min_arity = 1,
    .max_arity = 1,
}};

/* A vtable of the interface the interface cases declare. */
static const uint64_t vtable[2] = {1, 2};
static calc_interface_t interfaces[] = {{
    .id = "calc-tests.hostile",
    .version = {1, 0},
    .vtable_size = sizeof vtable,
    .vtable = vtable,
}};

static calc_plugin_t descriptor = {
    .magic = CALC_PLUGIN_MAGIC,
    .struct_size = sizeof(calc_plugin_t),
    .abi_version = {.major = CALC_ABI_VERSION_MAJOR, .minor = CALC_ABI_VERSION_MINOR},
    .name = "hostile",
    .version = "1.0.0",
    .author = "calc tests",
    .description = "Test plugin: a hostile descriptor",
    .sdk_version = CALC_SDK_VERSION,
    .api_requirement = CALC_API_REQUIREMENT_DEFAULT,
    .operations = operations,
    .operation_count = 1,
    .operation_size = sizeof(calc_operation_t),
    .interfaces = interfaces, /* none declared, but for the interface cases */
    .interface_count = 0,
    .interface_size = sizeof(calc_interface_t),
};

/* A readable page followed by an inaccessible one; returns the address `back` bytes before the
 * boundary, or NULL. Made once: plugin_entry may be called more than once. */
static unsigned char *page_tail(size_t back) {
    static unsigned char *page;
    const size_t size = 4096 * 4; /* enough for any page size up to 8 KiB, times two */
    const size_t half = size / 2;
    if (!page) {
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return NULL;
        if (mprotect((unsigned char *)p + half, half, PROT_NONE) != 0) return NULL;
        page = p;
    }
    return page + half - back;
}

static volatile int *volatile null_pointer = NULL;
static volatile unsigned long spins = 1;

/* Never returns in practice: the volatile counter would need 2^64 iterations to wrap. */
static void hang(void) {
    while (spins != 0) spins++;
}

/* Recurses without end (the volatile array keeps each frame, and the call, from being
 * optimised away). */
static volatile unsigned long depth;
static void recurse(void) {
    volatile char frame[256];
    frame[0] = (char)depth++;
    if (spins != 0) recurse(); /* always: spins is never 0 */
    frame[1] = frame[0];
}

#if defined(HOSTILE_CTOR_CRASH) || defined(HOSTILE_CTOR_EXIT) || defined(HOSTILE_CTOR_HANG) || \
    defined(HOSTILE_CTOR_ABORT) || defined(HOSTILE_CTOR_KILL) || defined(HOSTILE_CTOR_EXIT3) ||   \
    defined(HOSTILE_CTOR_STACK) || defined(HOSTILE_CTOR_CLOSE_STDIN) ||                          \
    defined(HOSTILE_CTOR_WRITE_STDIN) || defined(HOSTILE_CTOR_FORK) || defined(HOSTILE_CTOR_FORGE)
__attribute__((constructor)) static void hostile_constructor(void) {
#if defined(HOSTILE_CTOR_CRASH)
    *null_pointer = 1;
#elif defined(HOSTILE_CTOR_EXIT)
    exit(0);
#elif defined(HOSTILE_CTOR_ABORT)
    abort();
#elif defined(HOSTILE_CTOR_KILL)
    raise(SIGKILL);
#elif defined(HOSTILE_CTOR_EXIT3)
    _exit(3);
#elif defined(HOSTILE_CTOR_STACK)
    recurse();
#elif defined(HOSTILE_CTOR_CLOSE_STDIN)
    close(0);
#elif defined(HOSTILE_CTOR_WRITE_STDIN)
    static const char garbage[] = "\xff\xff\xff\x7fHOSTILE GARBAGE\n";
    if (write(0, garbage, sizeof garbage - 1) < 0 || write(1, garbage, sizeof garbage - 1) < 0) {
        depth = 1;
    }
#elif defined(HOSTILE_CTOR_FORGE)
    /* A `Vetted` reply frame of the runner protocol: payload length, tag 108, verdict length,
     * verdict JSON (lengths little-endian, as on the machines calc runs on). */
    static const char verdict[] =
        "{\"valid\":{\"abi_version\":\"1.3\",\"api_requirement\":\"^1.0\",\"author\":\"x\","
        "\"description\":\"x\",\"name\":\"forged\",\"operations\":[{\"description\":\"x\","
        "\"kind\":\"function\",\"max_arity\":1,\"min_arity\":1,\"name\":\"forged\"}],"
        "\"path\":\"/forged\",\"sdk_version\":\"1.0.0\",\"version\":\"1.0.0\"}}";
    unsigned char frame[9 + sizeof verdict];
    uint32_t text = (uint32_t)(sizeof verdict - 1), payload = 1 + 4 + text;
    struct stat st;
    if (fstat(0, &st) == 0 && S_ISSOCK(st.st_mode)) {
        memcpy(frame, &payload, 4);
        frame[4] = 108;
        memcpy(frame + 5, &text, 4);
        memcpy(frame + 9, verdict, text);
        if (write(0, frame, 9 + text) < 0) depth = 1;
    } else {
        *null_pointer = 1;
    }
#elif defined(HOSTILE_CTOR_FORK)
    pid_t child = fork();
    if (child == 0) {
        sleep(3600);
        _exit(0);
    }
#ifdef HOSTILE_PID_FILE
    FILE *f = fopen(HOSTILE_PID_FILE, "a");
    if (f != NULL) {
        fprintf(f, "%ld\n", (long)child);
        fclose(f);
    }
#endif
#else
    hang();
#endif
}
#endif

/* Refers to everything, so that no case leaves an unused variable or function. */
CALC_PLUGIN_EXPORT const void *hostile_keep(int which) {
    if (which == 4) recurse();
    if (which == 2) hang();
    if (which == 3) *null_pointer = 1;
    return which ? (const void *)&descriptor : (const void *)page_tail(0);
}

#ifdef HOSTILE_ENTRY_IS_DATA
/* Exported under the entry point's name, but data: calling it would execute these bytes. */
CALC_PLUGIN_EXPORT const unsigned char plugin_entry[64] = {0xcc, 0xcc, 0xcc, 0xcc};
#else
CALC_PLUGIN_ENTRY {
#if defined(HOSTILE_ENTRY_WILD)
    return (const calc_plugin_t *)(uintptr_t)0x10;
#elif defined(HOSTILE_DESC_RUNS_OFF)
    /* All of the descriptor but its last 8 bytes. */
    unsigned char *tail = page_tail(sizeof descriptor - 8);
    if (!tail) return NULL;
    memcpy(tail, &descriptor, sizeof descriptor - 8);
    return (const calc_plugin_t *)(void *)tail;
#elif defined(HOSTILE_NAME_WILD)
    descriptor.name = (const char *)(uintptr_t)0x1000;
    return &descriptor;
#elif defined(HOSTILE_NAME_RUNS_OFF) || defined(HOSTILE_DESCRIPTION_RUNS_OFF)
    unsigned char *tail = page_tail(8);
    if (!tail) return NULL;
    memset(tail, 'a', 8);
#if defined(HOSTILE_NAME_RUNS_OFF)
    descriptor.name = (const char *)tail;
#else
    operations[0].description = (const char *)tail;
#endif
    return &descriptor;
#elif defined(HOSTILE_OPS_WILD)
    descriptor.operations = (const calc_operation_t *)(uintptr_t)0x2000;
    return &descriptor;
#elif defined(HOSTILE_OPS_RUN_OFF)
    /* One whole element, then the inaccessible page where the second should be. */
    unsigned char *tail = page_tail(sizeof operations[0]);
    if (!tail) return NULL;
    memcpy(tail, &operations[0], sizeof operations[0]);
    descriptor.operations = (const calc_operation_t *)(void *)tail;
    descriptor.operation_count = 2;
    return &descriptor;
#elif defined(HOSTILE_OP_SIZE_HUGE)
    descriptor.operation_size = 0x40000000u;
    return &descriptor;
#elif defined(HOSTILE_STRUCT_SIZE_HUGE)
    descriptor.struct_size = 0xfffffff0u;
    return &descriptor;
#elif defined(HOSTILE_ENTRY_CRASH)
    *null_pointer = 1;
    return &descriptor;
#elif defined(HOSTILE_ENTRY_HANG)
    hang();
    return &descriptor;
#elif defined(HOSTILE_OP_COUNT_HUGE)
    descriptor.operation_count = 0xffffffffu;
    return &descriptor;
#elif defined(HOSTILE_ENTRY_MISALIGNED)
    return (const calc_plugin_t *)(const void *)((const unsigned char *)&descriptor + 1);
#elif defined(HOSTILE_IFACES_WILD) || defined(HOSTILE_IFACE_COUNT_HUGE) || \
    defined(HOSTILE_IFACE_ID_RUNS_OFF) || defined(HOSTILE_VTABLE_RUNS_OFF) ||  \
    defined(HOSTILE_BYTES_SLOT_DATA) || defined(HOSTILE_IFACE_FLAGS_UNKNOWN)
    descriptor.interface_count = 1;
#if defined(HOSTILE_BYTES_SLOT_DATA)
    interfaces[0].flags = CALC_INTERFACE_FLAG_BYTES; /* `vtable` is two integers, not code */
#elif defined(HOSTILE_IFACE_FLAGS_UNKNOWN)
    interfaces[0].flags = 0x80000000u;
#elif defined(HOSTILE_IFACES_WILD)
    descriptor.interfaces = (const calc_interface_t *)(uintptr_t)0x3000;
#elif defined(HOSTILE_IFACE_COUNT_HUGE)
    descriptor.interface_count = 0xffffffffu;
#elif defined(HOSTILE_IFACE_ID_RUNS_OFF)
    {
        unsigned char *tail = page_tail(8);
        if (!tail) return NULL;
        memset(tail, 'a', 8);
        interfaces[0].id = (const char *)tail;
    }
#else
    {
        unsigned char *tail = page_tail(8);
        if (!tail) return NULL;
        memcpy(tail, vtable, 8);
        interfaces[0].vtable = tail;
    }
#endif
    return &descriptor;
#elif defined(HOSTILE_ENTRY_ABORT)
    abort();
#elif defined(HOSTILE_CTOR_CLOSE_STDIN) || defined(HOSTILE_CTOR_WRITE_STDIN) || \
    defined(HOSTILE_CTOR_FORK) || defined(HOSTILE_CTOR_FORGE)
    return NULL; /* invalid: a process that survives the constructor refuses the file */
#else
    return &descriptor; /* the constructor cases never get here */
#endif
}
#endif
