/*
 * Handlers in shared objects: `smtpd -c path.so [args...]`. Loads the
 * object, calls its versioned init (smtpd_plugin_init_v1, or the older
 * smtpd_plugin_init), and later its start, shutdown and teardown.
 */
#ifndef SMTPD_CLI_PLUGIN_H
#define SMTPD_CLI_PLUGIN_H

#include "smtpd.h"

#include <stdbool.h>
#include <stddef.h>

struct plugin {
    void *dl;
    struct smtpd_plugin p;
    bool initialized; /* init succeeded: teardown is owed */
};

/** Whether -c @p name names a shared object rather than a built-in class:
 *  a path, or a name ending in ".so" (found in the working directory). */
bool plugin_is_path(const char *name);

/** Load @p name and run its init with @p host. @return 0, or a sysexits
 *  code with a one-line reason in @p err: EX_USAGE (cannot be loaded,
 *  exports no init), EX_SOFTWARE (init failed, or left a handler the
 *  library refuses). */
int plugin_load(struct plugin *pl, const char *name, const struct smtpd_plugin_host *host,
                char *err, size_t errsz);

/** The server listens (in this process). */
void plugin_start(struct plugin *pl, struct smtpd_server *srv);
/** SIGINT/SIGTERM. */
void plugin_shutdown(struct plugin *pl);
/** Teardown and unload; a plugin never loaded is fine. */
void plugin_unload(struct plugin *pl);

#endif
