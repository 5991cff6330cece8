/* Sink: accept every message and discard it (for benchmarks and tests). */
#include "smtpd.h"

#include <string.h>

static enum smtpd_verdict sink_message(void *arg, struct smtpd_session *s,
                                       const struct smtpd_message *m)
{
    (void)arg;
    (void)s;
    (void)m;
    return SMTPD_DONE;
}

void smtpd_sink_handler(struct smtpd_handler *h)
{
    memset(h, 0, sizeof(*h));
    h->on_message = sink_message;
}
