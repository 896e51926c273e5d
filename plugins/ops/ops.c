/*
 * The ops plugin's entry: the table of its functions. Each function lives in its own file
 * (os_update.c, run_tests.c, conditional.c, health_check.c, script.c); see docs/functions.md.
 *
 * Config (plugin = { ops = { ... }; } in ferry.conf, all optional):
 *   suites = { NAME = "shell command"; ... };   run_tests suites known on this bridge
 *   reboot_command = "shutdown -r +1";         how os_update reboots a machine
 *   script_dirs = ["/etc/ferry/scripts"];      where script's script_file may be read
 */
#include "ops.h"

static const ferry_function *const ops_functions[] = {
    &ops_fn_os_update,
    &ops_fn_run_tests,
    &ops_fn_conditional,
    &ops_fn_conditional_backup,
    &ops_fn_health_check,
    &ops_fn_script,
    NULL,
};

FERRY_PLUGIN(.name = "ops", .version = "1.0.0",
             .summary =
                 "os_update, run_tests, conditional jobs, health checks and scripts on machines",
             .functions = ops_functions)
