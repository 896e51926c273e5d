/*
 * A SQLite VFS over the default one (unix) that writes each WAL file's appended frames with
 * one write per commit instead of two per frame. Every other file, and every other method,
 * goes straight to the VFS below. sqlite_vfs.c says when the frames reach the file.
 */
#ifndef FERRY_SQLITE_VFS_H
#define FERRY_SQLITE_VFS_H

#include <sqlite3.h>

/*
 * Registers the VFS "ferry" over the VFS that is the default now, and makes it the default,
 * so every connection opened afterwards without a VFS name uses it. Once per process: later
 * calls do nothing. Returns SQLITE_OK or SQLite's error code. The VFS below must give main
 * database and WAL files io methods of version 3 or later (unix does). It also sets the VFS
 * below's "open", "ftruncate" and "fchown" (sqlite_vfs.c: O_NOATIME, the -shm file zeroed
 * rather than cut at a first open, no chown that changes nothing), for the process.
 */
int sqlite_vfs_register(void);

/*
 * Makes the WAL's frame scans of db's main database read many frames at once
 * (sqlite_vfs.c, wal_read): for a connection that may be the first to open the store, which
 * then rebuilds the WAL index from the whole log. Before db's first read. Returns SQLITE_OK,
 * or SQLITE_NOTFOUND when the database is not open through this VFS (nothing changes).
 */
int sqlite_vfs_read_ahead(sqlite3 *db);

/*
 * open(2) with O_NOATIME where the caller may ask for it (it owns the file), else a plain
 * open. A read of a store file then leaves its inode as it was: reading the WAL after
 * another process wrote it updated its access time (relatime), so the next fdatasync wrote
 * the inode's block before its flush, one disk round trip more (ext4 without a journal
 * writes the inode at every fdatasync that finds it dirty). sqlite_vfs_register makes it
 * the VFS below's "open", so that SQLite opens every store file so.
 */
int sqlite_vfs_open(const char *path, int flags, int mode);

#endif
