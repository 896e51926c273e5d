/*
 * Opening paths beneath a directory without ever leaving it or following a symlink: the
 * restore's only way to reach what it creates (restore.c).
 *
 * A path here is relative, its components separated by single slashes, none of them empty,
 * "." or ".." (tree_decode refuses any other). Where the kernel has openat2() (Linux 5.6+)
 * one call resolves the path with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS; elsewhere the path is
 * walked a component at a time with O_NOFOLLOW | O_DIRECTORY. Either way a symlink anywhere
 * in the path fails the open (ELOOP or ENOTDIR), and so does an escape (EXDEV).
 */
#ifndef REPO_BENEATH_H
#define REPO_BENEATH_H

#include <sys/types.h>

/*
 * Opens path beneath dirfd with flags (O_CLOEXEC and O_NOFOLLOW are added) and mode (for
 * O_CREAT). Returns the fd, or -1 with errno set. "" opens dirfd itself (a new fd).
 */
int beneath_open(int dirfd, const char *path, int flags, mode_t mode);

/*
 * Opens the directory holding path's last component (an O_PATH fd, usable as the dirfd of
 * the *at() calls) and points *name at that component inside path. Returns the fd, or -1
 * with errno set. path must not be "".
 */
int beneath_parent(int dirfd, const char *path, const char **name);

/*
 * The last directory beneath_dir_open opened, kept open for the next entry in it: a restore
 * visits entries in tree order, so most share their directory with the one before. One
 * cache serves one dirfd and one thread.
 */
typedef struct beneath_dir {
    char *path; /* of the directory, relative to dirfd */
    size_t len;
    int fd; /* -1: empty */
} beneath_dir;
#define BENEATH_DIR_INIT ((beneath_dir){.path = NULL, .len = 0, .fd = -1})

/*
 * Like beneath_parent, through the cache c: returns the directory's fd (owned by c: valid
 * until the next call, never to be closed by the caller), or -1 with errno set.
 */
int beneath_dir_open(beneath_dir *c, int dirfd, const char *path, const char **name);
void beneath_dir_close(beneath_dir *c);

/*
 * Which resolver is in use: 1 openat2, 0 the O_NOFOLLOW walk. beneath_use_openat2(0) forces
 * the walk (tests); so does FERRY_TEST_BENEATH_WALK=1 in the environment, read once. The
 * walk is also taken for good when the kernel answers ENOSYS, and for the one call when
 * openat2 answers EPERM (a seccomp filter that does not know it).
 */
int beneath_openat2(void);
void beneath_use_openat2(int on);

#endif
