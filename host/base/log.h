/*
 * The host's own log: one line per event on stderr, with a timestamp and a level; as text
 * or, with log_format = "json", one JSON object per line. Under systemd (JOURNAL_STREAM or
 * NOTIFY_SOCKET set) each line starts with its sd-daemon priority, "<6>" for info, which
 * journald reads as the entry's priority and strips.
 */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3, LOG_OFF = 4 };

/* Sets the least severe level printed (default LOG_INFO). */
void log_set_level(enum log_level level);
/* Parses "debug", "info", "warn", "error", "off"; returns -1 for anything else. */
int log_level_parse(const char *name);
/* "text" (default) or "json"; returns -1 (and changes nothing) for anything else. */
int log_set_format(const char *name);
/* Prints one line: "2026-11-28T13:05:28.123Z ferry[pid] LEVEL message", or as JSON
 * {"time":…,"level":…,"pid":…,"message":…}. */
void hlog(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One finished attempt, at info (warn for FAILED and RETRY_SCHEDULED): as text
 * "attempt ended: task=ID function=F machine=M outcome=O attempt=N duration_ms=D
 * reason="…"", as JSON the same as fields (taskId, function, machine, outcome, attempt,
 * durationMs, reason). reason may be NULL; it must already be redacted. */
void log_attempt(const char *task_id, const char *function, const char *machine,
                 const char *outcome, int attempt, int64_t duration_ms, const char *reason);

#endif
