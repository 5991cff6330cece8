/*
 * Test-only plugins for tests/integration/test_plugin_loading.py
 * (LoadErrorsTest, BothSymbolsTest): one source, built once per kind with
 * -DTP_<KIND> (see CMakeLists.txt):
 *
 *   TP_V1         tp_bad_v1.so: smtpd_plugin_init_v1 does what its first
 *                 argument names: fail, fail_silently, or leave a handler the
 *                 library refuses (no_on_message, null_fn, bad_verb,
 *                 null_verb, duplicate_verb, bad_flags, exclusive_flags,
 *                 bad_ehlo, no_table); "ok" gives a usable one.
 *   TP_V0         tp_bad_v0.so: the older smtpd_plugin_init: "fail" returns
 *                 -1, "no_on_message" leaves on_message NULL.
 *   TP_NOSYMBOL   tp_nosymbol.so: exports neither init symbol.
 *   TP_UNDEFINED  tp_undefined.so: needs a symbol nothing defines, so
 *                 dlopen(RTLD_NOW) fails.
 *   TP_BOTH       tp_both.so: exports both; v1 must win (its messages get
 *                 "250 ... v1 handler", the v0 one's "... v0 handler").
 */
#include "smtpd.h"

#include <stddef.h>
#include <string.h>

/* Not every kind uses each of these. */
#define MAYBE_UNUSED __attribute__((unused))

MAYBE_UNUSED static enum smtpd_verdict on_message_v1(void *arg, struct smtpd_session *s,
                                                     const struct smtpd_message *m)
{
    (void)arg;
    (void)m;
    smtpd_reply(s, 250, "2.0.0", "v1 handler");
    return SMTPD_DONE;
}

MAYBE_UNUSED static enum smtpd_verdict on_message_v0(void *arg, struct smtpd_session *s,
                                                     const struct smtpd_message *m)
{
    (void)arg;
    (void)m;
    smtpd_reply(s, 250, "2.0.0", "v0 handler");
    return SMTPD_DONE;
}

MAYBE_UNUSED static enum smtpd_verdict xfoo(void *arg, struct smtpd_session *s, const char *params,
                                            size_t len)
{
    (void)arg;
    (void)s;
    (void)params;
    (void)len;
    return SMTPD_DONE;
}

#if defined(TP_V1)
struct table {
    const char *name;
    struct smtpd_command commands[2];
    size_t n;
};

static const struct table tables[] = {
    {"ok", {{.verb = "XFOO", .fn = xfoo}, {.verb = "XBAR", .fn = xfoo}}, 2},
    {"null_fn", {{.verb = "XBAR", .fn = xfoo}, {.verb = "XFOO", .fn = NULL}}, 2},
    {"bad_verb", {{.verb = "X_FOO", .fn = xfoo}}, 1},
    {"null_verb", {{.verb = NULL, .fn = xfoo}}, 1},
    {"duplicate_verb", {{.verb = "XFOO", .fn = xfoo}, {.verb = "xfoo", .fn = xfoo}}, 2},
    {"bad_flags", {{.verb = "XFOO", .fn = xfoo, .flags = 8}}, 1},
    {"exclusive_flags",
     {{.verb = "XFOO", .fn = xfoo, .flags = SMTPD_CMD_NEED_MAIL | SMTPD_CMD_NO_TRANSACTION}},
     1},
    {"bad_ehlo", {{.verb = "XFOO", .fn = xfoo, .ehlo = "XFOO\r\n250 FAKE"}}, 1},
};

int smtpd_plugin_init_v1(const struct smtpd_plugin_host *host, struct smtpd_plugin *plugin);

int smtpd_plugin_init_v1(const struct smtpd_plugin_host *host, struct smtpd_plugin *plugin)
{
    const char *what = host->argc > 0 ? host->argv[0] : "ok";
    plugin->handler.on_message = on_message_v1;
    if (strcmp(what, "fail") == 0) {
        plugin->error = "tp_bad_v1 refused on purpose";
        return -1;
    }
    if (strcmp(what, "fail_silently") == 0)
        return -1;
    if (strcmp(what, "no_on_message") == 0) {
        plugin->handler.on_message = NULL;
        return 0;
    }
    if (strcmp(what, "no_table") == 0) {
        plugin->handler.n_commands = 2;
        return 0;
    }
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++)
        if (strcmp(what, tables[i].name) == 0) {
            plugin->handler.commands = tables[i].commands;
            plugin->handler.n_commands = tables[i].n;
            return 0;
        }
    plugin->error = "tp_bad_v1: unknown case";
    return -1;
}
#endif

#if defined(TP_V0) || defined(TP_BOTH)
int smtpd_plugin_init(struct smtpd_handler *h, int argc, char **argv);

int smtpd_plugin_init(struct smtpd_handler *h, int argc, char **argv)
{
    const char *what = argc > 0 ? argv[0] : "ok";
    if (strcmp(what, "fail") == 0)
        return -1;
    if (strcmp(what, "no_on_message") != 0)
        h->on_message = on_message_v0;
    return 0;
}
#endif

#if defined(TP_BOTH)
int smtpd_plugin_init_v1(const struct smtpd_plugin_host *host, struct smtpd_plugin *plugin);

int smtpd_plugin_init_v1(const struct smtpd_plugin_host *host, struct smtpd_plugin *plugin)
{
    (void)host;
    plugin->handler.on_message = on_message_v1;
    return 0;
}
#endif

#if defined(TP_NOSYMBOL)
/* Close to the real names, but neither of them. */
int smtpd_plugin_init_v2(const struct smtpd_plugin_host *host, struct smtpd_plugin *plugin);

int smtpd_plugin_init_v2(const struct smtpd_plugin_host *host, struct smtpd_plugin *plugin)
{
    (void)host;
    plugin->handler.on_message = on_message_v1;
    return 0;
}
#endif

#if defined(TP_UNDEFINED)
/* Defined nowhere: the module links (shared objects may leave symbols
 * undefined), but dlopen(RTLD_NOW) refuses it. */
int tp_no_such_function(void);

int smtpd_plugin_init_v1(const struct smtpd_plugin_host *host, struct smtpd_plugin *plugin);

int smtpd_plugin_init_v1(const struct smtpd_plugin_host *host, struct smtpd_plugin *plugin)
{
    (void)host;
    plugin->handler.on_message = on_message_v1;
    return tp_no_such_function();
}
#endif
