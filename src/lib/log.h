/*
 * log.h - diagnostics to stderr. Daemons log one line per event with the
 * program name; secrets never reach a log call.
 */
#ifndef HSM_LOG_H
#define HSM_LOG_H

enum { HSM_LOG_ERR = 0, HSM_LOG_WARN = 1, HSM_LOG_INFO = 2, HSM_LOG_DEBUG = 3 };

/* Set the program tag ("hsmesh ca", "keyholder") and the maximum level printed. */
void hsm_log_init(const char *tag, int level);
void hsm_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...) hsm_log(HSM_LOG_ERR, __VA_ARGS__)
#define log_warn(...) hsm_log(HSM_LOG_WARN, __VA_ARGS__)
#define log_info(...) hsm_log(HSM_LOG_INFO, __VA_ARGS__)
#define log_debug(...) hsm_log(HSM_LOG_DEBUG, __VA_ARGS__)

#endif
