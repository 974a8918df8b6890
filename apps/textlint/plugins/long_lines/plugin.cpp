/*
 * long_lines: a textlint plugin in C++11 that reports lines longer than a limit, in every
 * file. The limit is the configuration value "max" (default 100); init refuses a value that is
 * not a whole number from 1 to 100000.
 *
 *   c++ -std=c++11 -Wall -Wextra -Werror -pedantic -fPIC -fvisibility=hidden -shared -Iinclude \
 *       -Iapps/textlint/include apps/textlint/plugins/long_lines/plugin.cpp \
 *       -Wl,--version-script=apps/textlint/plugins/long_lines/plugin.map -o liblong_lines.so
 *
 * No exception may cross into the host: every function runs its body inside guarded(). The
 * output is built in a std::string (the plugin's memory) and handed to the host's writer, which
 * copies it: nothing allocated here is freed by the host, or the other way round.
 */
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "textlint.h"

namespace {

struct Instance {
    std::size_t max;
};

void set_error(char *error_buf, std::size_t size, const char *message)
{
    if (error_buf != nullptr && size > 0) {
        (void)std::snprintf(error_buf, size, "%s", message);
    }
}

template <typename F>
calc_status_t guarded(char *error_buf, std::size_t size, F body)
{
    try {
        return body();
    } catch (const std::exception &e) {
        set_error(error_buf, size, e.what());
    } catch (...) {
        set_error(error_buf, size, "unknown C++ exception");
    }
    return CALC_STATUS_ERROR;
}

calc_status_t init(const calc_host_api_t *host, void **out_instance, char *error_buf,
                   std::size_t error_buf_size)
{
    return guarded(error_buf, error_buf_size, [&]() -> calc_status_t {
        std::size_t max = 100;
        const char *value = host->get_config(host->context, "max");
        if (value != nullptr) {
            char *end = nullptr;
            unsigned long parsed = std::strtoul(value, &end, 10);
            if (end == value || *end != '\0' || parsed < 1 || parsed > 100000) {
                set_error(error_buf, error_buf_size,
                          "max: not a whole number from 1 to 100000");
                return CALC_STATUS_INVALID_ARGUMENT;
            }
            max = parsed;
        }
        *out_instance = new Instance{max};
        return CALC_STATUS_OK;
    });
}

void shutdown(void *instance)
{
    delete static_cast<Instance *>(instance);
}

calc_status_t extensions(void *, const void *, std::size_t, calc_bytes_write_fn write,
                         void *writer, char *, std::size_t)
{
    write(writer, "*", 1);
    return CALC_STATUS_OK;
}

calc_status_t check(void *instance, const void *input, std::size_t len,
                    calc_bytes_write_fn write, void *writer, char *error_buf,
                    std::size_t error_buf_size)
{
    return guarded(error_buf, error_buf_size, [&]() -> calc_status_t {
        const Instance *me = static_cast<const Instance *>(instance);
        const char *text = static_cast<const char *>(input);
        std::string findings;
        std::size_t line = 1, start = 0;
        for (std::size_t i = 0; i <= len; i++) {
            if (i == len || text[i] == '\n') {
                std::size_t length = i - start;
                if (length > me->max) {
                    findings += std::to_string(line) + ":" + std::to_string(me->max + 1) +
                                ": line of " + std::to_string(length) + " bytes, over " +
                                std::to_string(me->max) + "\n";
                }
                line++;
                start = i + 1;
            }
        }
        if (!findings.empty()) write(writer, findings.data(), findings.size());
        return CALC_STATUS_OK;
    });
}

const textlint_vtable_t vtable = {extensions, check};

const calc_interface_t interfaces[] = {TEXTLINT_INTERFACE(vtable)};

calc_plugin_t make_descriptor()
{
    calc_plugin_t d = calc_plugin_t();
    d.magic = CALC_PLUGIN_MAGIC;
    d.struct_size = sizeof(calc_plugin_t);
    d.abi_version.major = CALC_ABI_VERSION_MAJOR;
    d.abi_version.minor = CALC_ABI_VERSION_MINOR;
    d.name = "long_lines";
    d.version = "1.0.0";
    d.author = "calc examples";
    d.description = "textlint: lines over a length";
    d.sdk_version = CALC_SDK_VERSION;
    d.api_requirement = CALC_API_REQUIREMENT_DEFAULT;
    d.init = init;
    d.shutdown = shutdown;
    d.interfaces = interfaces;
    d.interface_count = 1;
    d.interface_size = sizeof(calc_interface_t);
    return d;
}

const calc_plugin_t descriptor = make_descriptor();

} // namespace

CALC_PLUGIN_ENTRY
{
    return &descriptor;
}
