/*
 * cpp_trig: a calc plugin in C++11 providing the functions sin(x), cos(x), tan(x) and
 * atan2(y, x), in radians, from <cmath>.
 *
 * Build (from the repository root):
 *   c++ -std=c++11 -Wall -Wextra -Werror -pedantic -fPIC -fvisibility=hidden -shared -Iinclude examples-c/cpp_trig/plugin.cpp -Wl,--version-script=examples-c/cpp_trig/plugin.map -o target/debug/plugins/libcpp_trig.so
 *
 * The ABI is C: the header's CALC_PLUGIN_ENTRY macro declares plugin_entry extern "C" and
 * visible. Everything else here lives in an anonymous namespace (internal linkage, like
 * `static` in C). That is not quite enough in C++: inline functions from the standard headers
 * that the compiler emits out of line at -O0 (std::isnan(double) and friends) are weak symbols
 * with default visibility, because libstdc++ marks namespace std visible. The version script
 * plugin.map keeps plugin_entry the only exported symbol with g++ and clang++ alike
 * (-fvisibility-inlines-hidden is enough for g++ but not for clang++).
 *
 * No C++ exception may cross into the host, so every execute function runs its body inside
 * guarded(), which turns any exception into CALC_STATUS_ERROR with a message.
 */
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <exception>

#include "calc_plugin.h"

namespace {

/* Writes a message into the host's error buffer, truncating to error_buf_size. The host puts
 * the operation and plugin name in front ("sin (plugin cpp_trig): ..."). */
void set_error(char *error_buf, std::size_t error_buf_size, const char *message,
               const char *detail = nullptr)
{
    if (error_buf != nullptr && error_buf_size > 0) {
        (void)std::snprintf(error_buf, error_buf_size, "%s%s%s", message,
                            detail != nullptr ? ": " : "", detail != nullptr ? detail : "");
    }
}

/* Runs body() and returns its status; an exception becomes CALC_STATUS_ERROR instead of
 * unwinding into the host (which is undefined behaviour across a C ABI). <cmath> itself does not
 * throw, so this is the structural guarantee rather than an expected path. */
template <typename Body>
calc_status_t guarded(char *error_buf, std::size_t error_buf_size, Body body) noexcept
{
    try {
        return body();
    } catch (const std::exception &e) {
        set_error(error_buf, error_buf_size, "C++ exception", e.what());
    } catch (...) {
        set_error(error_buf, error_buf_size, "unknown C++ exception");
    }
    return CALC_STATUS_ERROR;
}

/* Checks a result the way the C examples do: NaN from non-NaN operands is a domain error (sin,
 * cos and tan of an infinity), an infinity from finite operands an overflow. */
calc_status_t finish(const double *args, std::size_t arg_count, double result, double *out_result,
                     char *error_buf, std::size_t error_buf_size)
{
    bool any_nan = false;
    bool all_finite = true;
    for (std::size_t i = 0; i < arg_count; ++i) {
        any_nan = any_nan || std::isnan(args[i]);
        all_finite = all_finite && std::isfinite(args[i]);
    }
    if (std::isnan(result) && !any_nan) {
        set_error(error_buf, error_buf_size, "not defined for an infinite operand");
        return CALC_STATUS_DOMAIN_ERROR;
    }
    if (std::isinf(result) && all_finite) {
        set_error(error_buf, error_buf_size, "result is too large");
        return CALC_STATUS_OVERFLOW;
    }
    *out_result = result;
    return CALC_STATUS_OK;
}

/* One function of the plugin, described once: the operation table and the execute functions
 * are both generated from this table. */
struct Trig {
    const char *name;
    const char *description;
    unsigned arity;
    double (*unary)(double);
    double (*binary)(double, double);
};

/* std::sin and friends are overloaded (float, double, long double), so take the double ones
 * through small wrappers rather than casting overload sets. */
double sin_of(double x) { return std::sin(x); }
double cos_of(double x) { return std::cos(x); }
double tan_of(double x) { return std::tan(x); }
double atan2_of(double y, double x) { return std::atan2(y, x); }

constexpr Trig functions[] = {
    {"sin", "sin(x): the sine of x radians", 1, sin_of, nullptr},
    {"cos", "cos(x): the cosine of x radians", 1, cos_of, nullptr},
    {"tan", "tan(x): the tangent of x radians", 1, tan_of, nullptr},
    {"atan2", "atan2(y, x): the angle of the point (x, y) in radians, in [-pi, pi]", 2, nullptr,
     atan2_of},
};

/* The number of elements of an array, as a constant expression. */
template <typename T, std::size_t N>
constexpr std::size_t count_of(const T (&)[N]) noexcept
{
    return N;
}

/* The execute function of functions[I]; one instantiation per table entry. */
template <std::size_t I>
calc_status_t execute(void *instance, const double *args, std::size_t arg_count,
                      double *out_result, char *error_buf, std::size_t error_buf_size)
{
    static_assert(I < count_of(functions), "index out of the functions table");
    (void)instance;
    const Trig &f = functions[I];
    return guarded(error_buf, error_buf_size, [&]() -> calc_status_t {
        if (args == nullptr || out_result == nullptr || arg_count != f.arity) {
            set_error(error_buf, error_buf_size,
                      f.arity == 1 ? "expects exactly 1 operand" : "expects exactly 2 operands");
            return CALC_STATUS_INVALID_ARGUMENT;
        }
        const double result = f.arity == 1 ? f.unary(args[0]) : f.binary(args[0], args[1]);
        return finish(args, arg_count, result, out_result, error_buf, error_buf_size);
    });
}

/*
 * The ABI structs are filled field by field, never with positional braces: a later ABI minor
 * appends fields, which positional initialisation would leave out (-Wmissing-field-initializers,
 * an error with -Werror). C++11 has no designated initializers, so each struct is
 * value-initialised first (`T x{}`: every field 0 / NULL, i.e. absent) and then assigned.
 */

/* Operation I of the table handed to the host, built from functions[I]. */
template <std::size_t I>
calc_operation_t operation()
{
    calc_operation_t op{};
    op.name = functions[I].name;
    op.description = functions[I].description;
    op.symbol = nullptr; /* a function, not an infix operator */
    op.execute = execute<I>;
    op.kind = CALC_OPERATION_KIND_FUNCTION;
    op.associativity = CALC_ASSOCIATIVITY_NONE;
    op.precedence = 0;
    op.min_arity = functions[I].arity;
    op.max_arity = functions[I].arity;
    return op;
}

/* Initialised when the library is loaded, before the host can call plugin_entry. */
const calc_operation_t operations[] = {operation<0>(), operation<1>(), operation<2>(),
                                       operation<3>()};
static_assert(count_of(operations) == count_of(functions), "one operation per function");

/* The descriptor. Not set, so 0 / NULL: flags, init and shutdown (no instance state). */
calc_plugin_t make_descriptor()
{
    calc_plugin_t d{};
    d.magic = CALC_PLUGIN_MAGIC;
    d.struct_size = sizeof(calc_plugin_t);
    d.abi_version = CALC_ABI_VERSION_INIT;
    d.name = "cpp_trig";
    d.version = "1.0.0";
    d.author = "calc examples";
    d.description = "Trigonometry in C++11: sin, cos, tan and atan2";
    d.sdk_version = CALC_SDK_VERSION;
    d.api_requirement = CALC_API_REQUIREMENT_DEFAULT;
    d.operations = operations;
    d.operation_count = count_of(operations);
    d.operation_size = sizeof(calc_operation_t);
    return d;
}

const calc_plugin_t descriptor = make_descriptor();

} // namespace

CALC_PLUGIN_ENTRY
{
    return &descriptor;
}
