/*
 * For unit tests that compile the repo plugin's backup and restore sources into one
 * translation unit: backup.c with its static names that restore.c also uses renamed, and
 * stand-ins for the remote storage providers (the tests use local storages only). Include it
 * before the plugin's other sources.
 */
#define plan        backup_plan
#define run_threads backup_run_threads
#define worker_main backup_worker_main
#define open_file   backup_open_file
#define read_file   backup_read_file
#include "../../plugins/repo/backup.c"
#undef plan
#undef run_threads
#undef worker_main
#undef open_file
#undef read_file

const stor_ops stor_s3_ops = {.name = "s3"};
const stor_ops stor_sftp_ops = {.name = "sftp"};
const stor_ops stor_webdav_ops = {.name = "webdav"};
/* Local storages never see a cancel: no transfer to shield. */
int xfer_shield(int on)
{
    (void)on;
    return 0;
}
