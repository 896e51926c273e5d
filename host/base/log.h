/* The host's own log: one line per event on stderr, with a timestamp and a level. */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3, LOG_OFF = 4 };

/* Sets the least severe level printed (default LOG_INFO). */
void log_set_level(enum log_level level);
/* Parses "debug", "info", "warn", "error", "off"; returns -1 for anything else. */
int log_level_parse(const char *name);
/* Prints one line: "2026-11-28T13:05:28.123Z ferry[pid] LEVEL message". */
void hlog(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
