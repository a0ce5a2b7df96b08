#ifndef SANDGATE_CSQLITE_SHIM_H
#define SANDGATE_CSQLITE_SHIM_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <string.h>
#include <sqlite3.h>

/* sqlite3_db_config is variadic, which Swift cannot call; one wrapper per shape we use. */
static inline int sandgate_db_config_int(sqlite3 *db, int op, int value) {
    int current = -1;
    int rc = sqlite3_db_config(db, op, value, &current);
    return rc == SQLITE_OK ? current : -1;
}

/* SQLITE_TRANSIENT is a cast macro that does not import. */
static inline sqlite3_destructor_type sandgate_transient(void) { return SQLITE_TRANSIENT; }

/* glibc's memmem (two-way search, linear time) for the sandbox's bounded instr/replace; it is
   declared only with _GNU_SOURCE, which Swift's Glibc module does not set. */
static inline const void *sandgate_memmem(const void *haystack, size_t haystack_length,
                                          const void *needle, size_t needle_length) {
    return memmem(haystack, haystack_length, needle, needle_length);
}
#endif
