/*
 * The "local" storage provider: a directory on a filesystem the bridge can reach (a local
 * disk, NFS, a mounted USB disk). Vault: {"provider": "local", "path": "/absolute/dir"}.
 *
 * put writes a temporary file beside the target, fsyncs it, then renames it into place (or
 * links it, for an exclusive put) and fsyncs the directory: a crash leaves the old object or
 * the new one, and a stray ".tmp-*" file that list ignores.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage.h"

typedef struct local {
    char *root;
} local;

static int io_error(rerr *e, const char *what, const char *path)
{
    int err = errno;
    return rerr_set(e, errno_kind(err) == E_NOTFOUND ? E_FAIL : errno_kind(err), "%s %s: %s", what,
                    path, strerror(err));
}

static void *local_open(const json_t *vault, rerr *e)
{
    const char *path = json_string_value(json_object_get(vault, "path"));
    if (path == NULL || path[0] != '/') {
        rerr_set(e, E_INVALID, "a local storage's vault needs \"path\": an absolute directory");
        return NULL;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        /* A missing storage directory is created, but only inside an existing parent: a
         * missing parent usually means an unmounted disk, and writing backups onto the
         * root filesystem instead would fill it behind the operator's back. */
        char *parent = xstrdup(path);
        char *slash = strrchr(parent, '/');
        if (slash == parent)
            slash[1] = '\0';
        else
            *slash = '\0';
        int parent_ok = stat(parent, &st) == 0 && S_ISDIR(st.st_mode);
        if (!parent_ok) {
            rerr_set(e, E_TRANSIENT,
                     "storage path %s is not available: %s does not exist "
                     "(a disk not mounted?)",
                     path, parent);
            free(parent);
            return NULL;
        }
        free(parent);
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            io_error(e, "cannot create storage directory", path);
            return NULL;
        }
    } else if (!S_ISDIR(st.st_mode)) {
        rerr_set(e, E_INVALID, "storage path %s is not a directory", path);
        return NULL;
    }
    local *l = xcalloc(1, sizeof(*l));
    l->root = xstrdup(path);
    return l;
}

static void local_close(void *self)
{
    local *l = self;
    free(l->root);
    free(l);
}

static char *full_path(const local *l, const char *key)
{
    return xasprintf("%s/%s", l->root, key);
}

/* Creates the directories above path (inside the root) when they are missing. */
static int make_parents(const local *l, const char *path, rerr *e)
{
    char *dir = xstrdup(path);
    size_t rootlen = strlen(l->root);
    int rc = 0;
    for (char *p = dir + rootlen + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            rc = io_error(e, "cannot create directory", dir);
        *p = '/';
        if (rc)
            break;
    }
    free(dir);
    return rc;
}

static int write_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void sync_dir_of(const char *path)
{
    char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

static int local_put(void *self, const char *key, const void *data, size_t len, unsigned flags,
                     rerr *e)
{
    local *l = self;
    char *path = full_path(l, key);
    char name[64];
    tmp_name(name, sizeof(name));
    char *dir_end = strrchr(path, '/');
    char *tmp = xasprintf("%.*s/%s", (int)(dir_end - path), path, name);
    int rc = ST_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == ENOENT) {
        if (make_parents(l, path, e) != 0) {
            rc = ST_ERROR;
            goto out;
        }
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    }
    if (fd < 0) {
        rc = io_error(e, "cannot create", tmp);
        goto out;
    }
    if (write_all(fd, data, len) != 0 || (!(flags & STOR_PUT_NOSYNC) && fsync(fd) != 0)) {
        rc = io_error(e, "cannot write", tmp);
        close(fd);
        unlink(tmp);
        goto out;
    }
    close(fd);
    if (flags & STOR_PUT_EXCLUSIVE) {
        if (link(tmp, path) != 0)
            rc = errno == EEXIST ? ST_EXISTS : io_error(e, "cannot create", path);
        unlink(tmp);
    } else if (rename(tmp, path) != 0) {
        rc = io_error(e, "cannot rename into", path);
        unlink(tmp);
    }
    if (rc == ST_OK && !(flags & STOR_PUT_NOSYNC))
        sync_dir_of(path);
out:
    free(tmp);
    free(path);
    return rc;
}

static int local_get(void *self, const char *key, uint64_t offset, uint64_t len, buf *out, rerr *e)
{
    local *l = self;
    char *path = full_path(l, key);
    int rc = ST_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0) {
        rc = errno == ENOENT ? ST_NOTFOUND : io_error(e, "cannot open", path);
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        rc = io_error(e, "cannot stat", path);
        goto out;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (offset > size || (len && offset + len > size)) {
        rc = rerr_set(e, E_CORRUPT, "%s is %llu bytes, shorter than expected (%llu)", path,
                      (unsigned long long)size, (unsigned long long)(offset + len));
        goto out;
    }
    if (len == 0)
        len = size - offset;
    buf_reserve(out, len);
    uint64_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, out->data + out->len + done, len - done, (off_t)(offset + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? io_error(e, "cannot read", path)
                       : rerr_set(e, E_CORRUPT, "%s: unexpected end of file", path);
            goto out;
        }
        done += (uint64_t)n;
    }
    out->len += len;
out:
    if (fd >= 0)
        close(fd);
    free(path);
    return rc;
}

/* Lists dir (a path under the root, with key prefix rel) recursively; with temporaries, only
 * the temporary files (".tmp-*"). */
static int list_dir(const local *l, const char *rel, int temporaries, stor_list_cb cb, void *arg,
                    rerr *e)
{
    char *path = full_path(l, rel);
    DIR *d = opendir(path);
    int rc = 0;
    if (d == NULL) {
        if (errno != ENOENT)
            rc = io_error(e, "cannot list", path);
        free(path);
        return rc;
    }
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        int tmp = strncmp(de->d_name, ".tmp-", 5) == 0;
        if (de->d_name[0] == '.' && !(temporaries && tmp))
            continue; /* ".", "..", and temporary files of puts in progress */
        char *key = xasprintf("%s%s", rel, de->d_name);
        struct stat st;
        char *full = full_path(l, key);
        if (lstat(full, &st) == 0) {
            if (S_ISDIR(st.st_mode)) {
                char *sub = xasprintf("%s/", key);
                rc = list_dir(l, sub, temporaries, cb, arg, e);
                free(sub);
            } else if (S_ISREG(st.st_mode) && tmp == temporaries &&
                       cb(arg, key, (uint64_t)st.st_size) != 0) {
                rc = 1;
            }
        }
        free(full);
        free(key);
    }
    closedir(d);
    free(path);
    return rc;
}

static int local_list(void *self, const char *prefix, stor_list_cb cb, void *arg, rerr *e)
{
    int rc = list_dir(self, prefix, 0, cb, arg, e);
    return rc < 0 ? ST_ERROR : ST_OK;
}

static int local_list_tmp(void *self, stor_list_cb cb, void *arg, rerr *e)
{
    return list_dir(self, "", 1, cb, arg, e) < 0 ? ST_ERROR : ST_OK;
}

static int local_del(void *self, const char *key, rerr *e)
{
    local *l = self;
    char *path = full_path(l, key);
    int rc = ST_OK;
    if (unlink(path) != 0)
        rc = errno == ENOENT ? ST_NOTFOUND : io_error(e, "cannot delete", path);
    free(path);
    return rc;
}

static int local_exists(void *self, const char *key, uint64_t *size, rerr *e)
{
    local *l = self;
    char *path = full_path(l, key);
    struct stat st;
    int rc = ST_OK;
    if (stat(path, &st) != 0)
        rc = errno == ENOENT ? ST_NOTFOUND : io_error(e, "cannot stat", path);
    else if (size)
        *size = (uint64_t)st.st_size;
    free(path);
    return rc;
}

/* A streaming put: a temporary file in the target's top directory, renamed at commit. */
typedef struct local_writer {
    int fd;
    char *tmp;
    uint64_t written; /* bytes so far */
    uint64_t kicked;  /* bytes whose writeback has been started */
} local_writer;

/* Writeback is started every WRITEBACK_STEP bytes, so the disk works while the pack is still
 * being filled and the fsync at commit finds little left to do. */
#define WRITEBACK_STEP ((uint64_t)4 << 20)

static void *local_wopen(void *self, const char *dir_hint, rerr *e)
{
    local *l = self;
    char name[64];
    tmp_name(name, sizeof(name));
    char *tmp = xasprintf("%s/%s%s", l->root, dir_hint, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == ENOENT && make_parents(l, tmp, e) == 0)
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        io_error(e, "cannot create", tmp);
        free(tmp);
        return NULL;
    }
    local_writer *w = xcalloc(1, sizeof(*w));
    w->fd = fd;
    w->tmp = tmp;
    return w;
}

static int local_wwrite(void *self, void *wp, const void *data, size_t len, rerr *e)
{
    (void)self;
    local_writer *w = wp;
    if (write_all(w->fd, data, len) != 0)
        return io_error(e, "cannot write", w->tmp);
    w->written += len;
    if (w->written - w->kicked >= WRITEBACK_STEP) {
        sync_file_range(w->fd, (off_t)w->kicked, (off_t)(w->written - w->kicked),
                        SYNC_FILE_RANGE_WRITE);
        w->kicked = w->written;
    }
    return ST_OK;
}

static void local_wabort(void *self, void *wp)
{
    (void)self;
    local_writer *w = wp;
    close(w->fd);
    unlink(w->tmp);
    free(w->tmp);
    free(w);
}

static int local_wcommit(void *self, void *wp, const char *key, unsigned flags, rerr *e)
{
    (void)flags; /* one class of storage here */
    local *l = self;
    local_writer *w = wp;
    char *path = full_path(l, key);
    int rc = ST_OK;
    if (fsync(w->fd) != 0)
        rc = io_error(e, "cannot write", w->tmp);
    else if (rename(w->tmp, path) != 0) {
        if (errno != ENOENT)
            rc = io_error(e, "cannot rename into", path);
        else if (make_parents(l, path, e) != 0)
            rc = ST_ERROR;
        else if (rename(w->tmp, path) != 0)
            rc = io_error(e, "cannot rename into", path);
    }
    if (rc == ST_OK)
        sync_dir_of(path);
    close(w->fd);
    w->fd = -1;
    if (rc != ST_OK)
        unlink(w->tmp);
    free(w->tmp);
    free(w);
    free(path);
    return rc;
}

const stor_ops stor_local_ops = {
    .name = "local",
    .open = local_open,
    .put = local_put,
    .get = local_get,
    .list = local_list,
    .del = local_del,
    .exists = local_exists,
    .close = local_close,
    .wopen = local_wopen,
    .wwrite = local_wwrite,
    .wcommit = local_wcommit,
    .wabort = local_wabort,
    .list_tmp = local_list_tmp,
};
