/* EHLO keyword lines and the check of command tables; see extension.h. */
#include "extension.h"
#include "reply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

size_t smtpd_ehlo_count(const struct smtpd_ehlo *e)
{
    return e->n;
}

const char *smtpd_ehlo_line(const struct smtpd_ehlo *e, size_t i)
{
    return i < e->n ? e->line[i] : NULL;
}

enum smtpd_err smtpd_ehlo_add(struct smtpd_ehlo *e, const char *line)
{
    size_t len = line ? strlen(line) : 0;
    if (len == 0 || len > EHLO_LINE_MAX)
        return SMTPD_ERR_CONFIG;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            return SMTPD_ERR_CONFIG;
    if (e->n == EHLO_MAX_LINES)
        return SMTPD_ERR_STATE;
    memcpy(e->line[e->n++], line, len + 1);
    return SMTPD_OK;
}

size_t smtpd_ehlo_remove(struct smtpd_ehlo *e, const char *keyword)
{
    size_t kl = strlen(keyword), removed = 0, o = 0;
    for (size_t i = 0; i < e->n; i++) {
        const char *l = e->line[i];
        bool match = strncasecmp(l, keyword, kl) == 0 && (l[kl] == '\0' || l[kl] == ' ');
        if (match) {
            removed++;
        } else {
            if (o != i)
                memcpy(e->line[o], l, strlen(l) + 1);
            o++;
        }
    }
    e->n = o;
    return removed;
}

void ehlo_init(struct smtpd_ehlo *e, const struct smtpd_config *cfg,
               const struct smtpd_command *cmds, size_t n)
{
    e->n = 0;
    if (cfg->data_size_limit) {
        char size[40];
        snprintf(size, sizeof(size), "SIZE %zu", cfg->data_size_limit); /* RFC 1870 */
        smtpd_ehlo_add(e, size);
    }
    if (!cfg->decode_data)
        smtpd_ehlo_add(e, "8BITMIME"); /* RFC 6152 */
    if (cfg->enable_smtputf8)
        smtpd_ehlo_add(e, "SMTPUTF8");        /* RFC 6531 */
    smtpd_ehlo_add(e, "PIPELINING");          /* RFC 2920 */
    smtpd_ehlo_add(e, "ENHANCEDSTATUSCODES"); /* RFC 2034 */
    smtpd_ehlo_add(e, "HELP");
    for (size_t i = 0; i < n; i++)
        if (cmds[i].ehlo)
            smtpd_ehlo_add(e, cmds[i].ehlo);
}

char *ehlo_reply(const struct smtpd_ehlo *e, const char *hostname, size_t *len)
{
    char *buf = malloc((e->n + 1) * REPLY_LINE_MAX);
    if (!buf)
        return NULL;
    size_t o = reply_format(buf, 250, e->n > 0, NULL, hostname);
    for (size_t i = 0; i < e->n; i++)
        o += reply_format(buf + o, 250, i + 1 < e->n, NULL, e->line[i]);
    *len = o;
    return buf;
}

/* A keyword line or HELP text: printable, no CR/LF, at most max bytes. */
static bool printable_line(const char *t, size_t max)
{
    size_t n = strlen(t);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)t[i] < 0x20 || t[i] == 0x7f)
            return false;
    return true;
}

/* A verb: 1 to 32 letters, digits or '-' (RFC 5321 4.1.1, ehlo-keyword). */
static bool valid_verb(const char *v)
{
    size_t n = v ? strlen(v) : 0;
    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') ||
              (v[i] >= '0' && v[i] <= '9') || v[i] == '-'))
            return false;
    return true;
}

enum smtpd_err smtpd_handler_check(const struct smtpd_handler *h, char *why, size_t whysz)
{
    char dummy[1];
    if (!why || whysz == 0) {
        why = dummy;
        whysz = sizeof(dummy);
    }
    why[0] = '\0';
    if (!h || !h->on_message) {
        snprintf(why, whysz, "on_message is NULL (every handler needs one)");
        return SMTPD_ERR_CONFIG;
    }
    if (h->n_commands > 0 && !h->commands) {
        snprintf(why, whysz, "n_commands is %zu but commands is NULL", h->n_commands);
        return SMTPD_ERR_CONFIG;
    }
    for (size_t i = 0; i < h->n_commands; i++) {
        const struct smtpd_command *c = &h->commands[i];
        if (!c->verb) {
            snprintf(why, whysz, "commands[%zu].verb is NULL", i);
            return SMTPD_ERR_CONFIG;
        }
        if (!valid_verb(c->verb)) {
            char esc[100];
            smtpd_escape(esc, sizeof(esc), c->verb, strlen(c->verb));
            snprintf(why, whysz,
                     "commands[%zu].verb \"%s\" is not a verb (1-32 letters, digits "
                     "or '-')",
                     i, esc);
            return SMTPD_ERR_CONFIG;
        }
        if (!c->fn) {
            snprintf(why, whysz, "commands[%zu] (%s): fn is NULL", i, c->verb);
            return SMTPD_ERR_CONFIG;
        }
        if ((c->ehlo && !printable_line(c->ehlo, EHLO_LINE_MAX)) ||
            (c->help && !printable_line(c->help, 400))) {
            snprintf(why, whysz,
                     "commands[%zu] (%s): %s is empty, too long or has control "
                     "characters",
                     i, c->verb,
                     c->ehlo && !printable_line(c->ehlo, EHLO_LINE_MAX) ? "ehlo" : "help");
            return SMTPD_ERR_CONFIG;
        }
        if (c->flags &
            ~(unsigned)(SMTPD_CMD_NEED_GREETING | SMTPD_CMD_NEED_MAIL | SMTPD_CMD_NO_TRANSACTION)) {
            snprintf(why, whysz, "commands[%zu] (%s): unknown flags 0x%x", i, c->verb, c->flags);
            return SMTPD_ERR_CONFIG;
        }
        if ((c->flags & SMTPD_CMD_NEED_MAIL) && (c->flags & SMTPD_CMD_NO_TRANSACTION)) {
            snprintf(why, whysz,
                     "commands[%zu] (%s): NEED_MAIL and NO_TRANSACTION exclude "
                     "each other",
                     i, c->verb);
            return SMTPD_ERR_CONFIG;
        }
        for (size_t j = 0; j < i; j++)
            if (strcasecmp(h->commands[j].verb, c->verb) == 0) {
                snprintf(why, whysz, "commands[%zu] and commands[%zu] are both %s", j, i, c->verb);
                return SMTPD_ERR_CONFIG;
            }
    }
    return SMTPD_OK;
}
