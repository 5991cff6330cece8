/* Handlers in shared objects; see plugin.h. */
#include "plugin.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

bool plugin_is_path(const char *name)
{
    size_t n = strlen(name);
    return strchr(name, '/') || (n > 3 && strcmp(name + n - 3, ".so") == 0);
}

int plugin_load(struct plugin *pl, const char *name, const struct smtpd_plugin_host *host,
                char *err, size_t errsz)
{
    memset(pl, 0, sizeof(*pl));
    /* dlopen() looks a bare name up in the library path, not here. */
    char path[4096];
    snprintf(path, sizeof(path), "%s%s", strchr(name, '/') ? "" : "./", name);
    pl->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!pl->dl) {
        snprintf(err, errsz, "cannot load %s: %s", path, dlerror());
        return EX_USAGE;
    }
    smtpd_plugin_init_v1_fn v1;
    smtpd_plugin_init_fn v0;
    *(void **)&v1 = dlsym(pl->dl, SMTPD_PLUGIN_SYMBOL_V1);
    *(void **)&v0 = dlsym(pl->dl, SMTPD_PLUGIN_SYMBOL);
    const char *symbol = v1 ? SMTPD_PLUGIN_SYMBOL_V1 : SMTPD_PLUGIN_SYMBOL;
    if (!v1 && !v0) {
        snprintf(err, errsz, "%s exports neither %s nor %s", path, SMTPD_PLUGIN_SYMBOL_V1,
                 SMTPD_PLUGIN_SYMBOL);
        return EX_USAGE;
    }
    int rc = v1 ? v1(host, &pl->p) : v0(&pl->p.handler, host->argc, host->argv);
    if (rc != 0) {
        snprintf(err, errsz, "%s: %s failed: %s", path, symbol,
                 pl->p.error ? pl->p.error : "it gave no reason");
        return EX_SOFTWARE;
    }
    pl->initialized = true;
    char why[256];
    if (smtpd_handler_check(&pl->p.handler, why, sizeof(why)) != SMTPD_OK) {
        snprintf(err, errsz, "%s: %s left a handler smtpd cannot use: %s", path, symbol, why);
        return EX_SOFTWARE;
    }
    return 0;
}

void plugin_start(struct plugin *pl, struct smtpd_server *srv)
{
    if (pl->initialized && pl->p.start)
        pl->p.start(pl->p.handler.arg, srv);
}

void plugin_shutdown(struct plugin *pl)
{
    if (pl->initialized && pl->p.shutdown)
        pl->p.shutdown(pl->p.handler.arg);
}

void plugin_unload(struct plugin *pl)
{
    if (pl->initialized && pl->p.teardown)
        pl->p.teardown(pl->p.handler.arg);
    pl->initialized = false;
    if (pl->dl)
        dlclose(pl->dl);
    pl->dl = NULL;
}
