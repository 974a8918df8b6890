"""The declarations of calc_host.h (and of calc_plugin.h's status type) that this package
calls, for cffi. tests/test_cdef.py checks each one against the header."""

CDEF = """
#define CALC_STATUS_OK 0
#define CALC_STATUS_ERROR 1
#define CALC_STATUS_INVALID_ARGUMENT 2
#define CALC_STATUS_DOMAIN_ERROR 3
#define CALC_STATUS_DIVISION_BY_ZERO 4
#define CALC_STATUS_OVERFLOW 5
#define CALC_STATUS_PANIC 6
#define CALC_STATUS_NULL_ARGUMENT 100
#define CALC_STATUS_INVALID_UTF8 101
#define CALC_STATUS_NOT_FOUND 102
#define CALC_STATUS_PARSE_ERROR 103
#define CALC_STATUS_LOAD_FAILED 104
#define CALC_STATUS_INTERNAL 105
#define CALC_STATUS_UNTRUSTED 106

typedef int32_t calc_status_t;
typedef int32_t calc_operation_kind_t;
typedef int32_t calc_associativity_t;
typedef struct calc_host_t calc_host_t;
typedef struct calc_op_t calc_op_t;
typedef struct calc_expr_t calc_expr_t;
typedef struct calc_error_t calc_error_t;

typedef struct calc_plugin_info_t {
    const char *name;
    const char *version;
    const char *author;
    const char *description;
    const char *path;
    const char *abi_version;
    const char *sdk_version;
    const char *api_requirement;
    size_t operation_count;
    size_t interface_count;
} calc_plugin_info_t;

typedef struct calc_operation_info_t {
    const char *name;
    const char *description;
    const char *symbol;
    calc_operation_kind_t kind;
    calc_associativity_t associativity;
    int32_t precedence;
    uint32_t min_arity;
    uint32_t max_arity;
} calc_operation_info_t;

typedef struct calc_interface_info_t {
    const char *id;
    uint16_t major;
    uint16_t minor;
    uint32_t vtable_size;
    int bytes;
} calc_interface_info_t;

typedef struct calc_load_failure_t {
    const char *path;
    const char *message;
} calc_load_failure_t;

typedef struct calc_event_t {
    int kind;
    const char *plugin;
    const char *version;
    const char *old_version;
    const char *path;
    const char *message;
} calc_event_t;

const char *calc_status_describe(calc_status_t status);
const char *calc_host_version(void);
calc_status_t calc_error_status(const calc_error_t *error);
const char *calc_error_message(const calc_error_t *error);
void calc_error_free(calc_error_t *error);

calc_status_t calc_host_new_err(calc_host_t **out_host, calc_error_t **out_error);
void calc_host_free(calc_host_t *host);
calc_status_t calc_host_load_config_err(calc_host_t *host, const char *path, calc_error_t **out_error);
calc_status_t calc_host_set_plugin_config_err(calc_host_t *host, const char *plugin, const char *key, const char *value, calc_error_t **out_error);
calc_status_t calc_host_load_file_err(calc_host_t *host, const char *path, calc_error_t **out_error);
calc_status_t calc_host_load_dir_err(calc_host_t *host, const char *dir, size_t *out_loaded, calc_error_t **out_error);
size_t calc_host_plugin_count(const calc_host_t *host);
const calc_plugin_info_t *calc_host_plugin_info(const calc_host_t *host, size_t index);
const calc_operation_info_t *calc_host_operation_info(const calc_host_t *host, size_t plugin_index, size_t op_index);
const calc_interface_info_t *calc_host_interface_info(const calc_host_t *host, size_t plugin_index, size_t index);
size_t calc_host_failure_count(const calc_host_t *host);
const calc_load_failure_t *calc_host_failure(const calc_host_t *host, size_t index);
size_t calc_host_event_count(const calc_host_t *host);
const calc_event_t *calc_host_event(const calc_host_t *host, size_t index);
calc_status_t calc_host_call_err(const calc_host_t *host, const char *operation, const double *args, size_t arg_count, double *out_result, calc_error_t **out_error);
calc_status_t calc_host_eval_err(const calc_host_t *host, const char *expression, double *out_result, calc_error_t **out_error);
calc_status_t calc_host_enable_hot_reload_err(calc_host_t *host, calc_error_t **out_error);
calc_status_t calc_host_reload_file_err(calc_host_t *host, const char *path, calc_error_t **out_error);
calc_status_t calc_host_remove_file_err(calc_host_t *host, const char *path, calc_error_t **out_error);
calc_status_t calc_host_watch_err(calc_host_t *host, int enable, calc_error_t **out_error);
calc_status_t calc_host_poll_changes_err(calc_host_t *host, size_t *out_applied, calc_error_t **out_error);
calc_status_t calc_op_new_err(const calc_host_t *host, const char *operation, calc_op_t **out_op, calc_error_t **out_error);
calc_status_t calc_op_call_err(const calc_op_t *op, const double *args, size_t arg_count, double *out_result, calc_error_t **out_error);
calc_status_t calc_op_call_batch_err(const calc_op_t *op, const double *const *columns, size_t column_count, size_t rows, double *out, size_t *out_failed_row, calc_error_t **out_error);
void calc_op_free(calc_op_t *op);
calc_status_t calc_expr_new_err(const calc_host_t *host, const char *expression, const char *const *variables, size_t variable_count, calc_expr_t **out_expr, calc_error_t **out_error);
calc_status_t calc_expr_eval_err(const calc_expr_t *expr, const double *const *columns, size_t rows, double *out, size_t *out_failed_row, calc_error_t **out_error);
void calc_expr_free(calc_expr_t *expr);
"""
