#ifndef SANDGATE_CSQLITE_SHIM_H
#define SANDGATE_CSQLITE_SHIM_H
#include <sqlite3.h>

/* sqlite3_db_config is variadic, which Swift cannot call; one wrapper per shape we use. */
static inline int sandgate_db_config_int(sqlite3 *db, int op, int value) {
    int current = -1;
    int rc = sqlite3_db_config(db, op, value, &current);
    return rc == SQLITE_OK ? current : -1;
}

/* SQLITE_TRANSIENT is a cast macro that does not import. */
static inline sqlite3_destructor_type sandgate_transient(void) { return SQLITE_TRANSIENT; }
#endif
