/* Paths beneath a directory, no symlink followed. See beneath.h. */
#include "beneath.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* 1 openat2, 0 the walk, -1 not decided yet (read the environment first). */
static int use_openat2 = -1;

int beneath_openat2(void)
{
    int v = __atomic_load_n(&use_openat2, __ATOMIC_RELAXED);
    if (v < 0) {
        const char *walk = getenv("FERRY_TEST_BENEATH_WALK");
#ifdef SYS_openat2
        v = walk && strcmp(walk, "1") == 0 ? 0 : 1;
#else
        (void)walk;
        v = 0;
#endif
        __atomic_store_n(&use_openat2, v, __ATOMIC_RELAXED);
    }
    return v;
}

void beneath_use_openat2(int on)
{
    __atomic_store_n(&use_openat2, on ? 1 : 0, __ATOMIC_RELAXED);
}

/* A component the walk may take: not empty, not "." or "..", shorter than NAME_MAX. */
static int bad_component(const char *p, size_t n)
{
    return n == 0 || n > 255 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.');
}

/* Checks the whole path the way the walk would see it. 0, or -1 with errno EINVAL. */
static int check_path(const char *path)
{
    if (path[0] == '/') {
        errno = EINVAL;
        return -1;
    }
    for (const char *p = path;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (bad_component(p, n)) {
            errno = EINVAL;
            return -1;
        }
        if (slash == NULL)
            return 0;
        p = slash + 1;
    }
}

#ifdef SYS_openat2
static int open2(int dirfd, const char *path, int flags, mode_t mode)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW),
        .mode = flags & O_CREAT ? mode : 0,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    for (int tries = 0;; tries++) {
        long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
        if (fd >= 0)
            return (int)fd;
        /* EAGAIN: a rename elsewhere raced the lookup; the kernel asks for a retry. */
        if (errno != EAGAIN || tries >= 16)
            break;
    }
    if (errno == ENOSYS)
        beneath_use_openat2(0);
    return -1;
}
#endif

/* The walk: each directory opened with O_NOFOLLOW | O_DIRECTORY, then the last component. */
static int walk(int dirfd, const char *path, int flags, mode_t mode)
{
    int fd = dirfd;
    const char *p = path;
    char comp[256];
    for (;;) {
        const char *slash = strchr(p, '/');
        if (slash == NULL)
            break;
        size_t n = (size_t)(slash - p);
        memcpy(comp, p, n);
        comp[n] = '\0';
        int next = openat(fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        if (next >= 0 && (fstat(next, &st) != 0 || !S_ISDIR(st.st_mode))) {
            close(next);
            next = -1;
            errno = ENOTDIR;
        }
        if (fd != dirfd) {
            int err = errno;
            close(fd);
            errno = err;
        }
        if (next < 0)
            return -1;
        fd = next;
        p = slash + 1;
    }
    int out = openat(fd, p, flags | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd != dirfd) {
        int err = errno;
        close(fd);
        errno = err;
    }
    return out;
}

int beneath_open(int dirfd, const char *path, int flags, mode_t mode)
{
    if (path[0] == '\0')
        return openat(dirfd, ".", (flags & ~(O_CREAT | O_EXCL)) | O_CLOEXEC | O_DIRECTORY);
    if (check_path(path) != 0)
        return -1;
#ifdef SYS_openat2
    if (beneath_openat2()) {
        /* ENOSYS: no openat2 in this kernel; EPERM: a seccomp filter (older container
         * runtimes) refuses it. The walk is as strict, so either way it decides. */
        int fd = open2(dirfd, path, flags, mode);
        if (fd >= 0 || (errno != ENOSYS && errno != EPERM))
            return fd;
    }
#endif
    return walk(dirfd, path, flags, mode);
}

int beneath_parent(int dirfd, const char *path, const char **name)
{
    const char *slash = strrchr(path, '/');
    if (path[0] == '\0' || check_path(path) != 0) {
        errno = EINVAL;
        return -1;
    }
    if (slash == NULL) {
        *name = path;
        return openat(dirfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    }
    *name = slash + 1;
    size_t n = (size_t)(slash - path);
    char *dir = malloc(n + 1);
    if (dir == NULL) {
        errno = ENOMEM;
        return -1;
    }
    memcpy(dir, path, n);
    dir[n] = '\0';
    int fd = beneath_open(dirfd, dir, O_PATH | O_DIRECTORY, 0);
    int err = errno;
    free(dir);
    errno = err;
    return fd;
}

int beneath_dir_open(beneath_dir *c, int dirfd, const char *path, const char **name)
{
    const char *slash = strrchr(path, '/');
    size_t len = slash ? (size_t)(slash - path) : 0;
    if (c->fd >= 0 && len == c->len && memcmp(path, c->path, len) == 0) {
        *name = slash ? slash + 1 : path;
        if (bad_component(*name, strlen(*name))) {
            errno = EINVAL;
            return -1;
        }
        return c->fd;
    }
    beneath_dir_close(c);
    int fd = beneath_parent(dirfd, path, name);
    if (fd < 0)
        return -1;
    c->path = malloc(len + 1);
    if (c->path == NULL) {
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    memcpy(c->path, path, len);
    c->path[len] = '\0';
    c->len = len;
    c->fd = fd;
    return fd;
}

void beneath_dir_close(beneath_dir *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->path);
    c->path = NULL;
    c->len = 0;
    c->fd = -1;
}
