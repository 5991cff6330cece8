/*
 * An example handler built as a shared object: `smtpd -n -c
 * build/examples/counter.so localhost:8025 [LIMIT]`. It accepts messages
 * and answers each with its number since the process started (one count
 * for all sessions; with --workers, each worker process counts its own);
 * once LIMIT messages (default 0: none) have been taken it refuses the rest
 * with 452, and it refuses the reverse-path "blocked@example.com" at MAIL
 * FROM.
 */
#include "smtpd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One counter per loaded plugin: the handler's own state, behind arg. */
struct counter {
    unsigned long accepted;
    unsigned long limit;
};

static enum smtpd_verdict counter_mail(void *arg, struct smtpd_session *s, const char *reverse_path,
                                       const char *const *params, size_t n_params)
{
    (void)arg;
    (void)params;
    (void)n_params;
    if (strcmp(reverse_path, "blocked@example.com") == 0)
        smtpd_reply(s, 550, "5.7.1", "Sender blocked by the counter example");
    return SMTPD_DONE;
}

static enum smtpd_verdict counter_message(void *arg, struct smtpd_session *s,
                                          const struct smtpd_message *m)
{
    struct counter *c = arg;
    char text[128];
    if (c->limit && c->accepted >= c->limit) {
        smtpd_reply(s, 452, "4.3.1", "Counter full, try again later");
        return SMTPD_DONE;
    }
    c->accepted++;
    snprintf(text, sizeof(text), "OK message %lu (%zu bytes)", c->accepted, m->data_len);
    smtpd_reply(s, 250, "2.0.0", text);
    return SMTPD_DONE;
}

int smtpd_plugin_init(struct smtpd_handler *h, int argc, char **argv);

int smtpd_plugin_init(struct smtpd_handler *h, int argc, char **argv)
{
    struct counter *c = calloc(1, sizeof(*c));
    if (!c)
        return -1;
    if (argc > 0)
        c->limit = strtoul(argv[0], NULL, 10);
    h->on_mail = counter_mail;
    h->on_message = counter_message;
    h->arg = c;
    return 0;
}
