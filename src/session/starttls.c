/* The STARTTLS command; see starttls.h. */
#include "starttls.h"
#include "channel.h"

/* RFC 3207 4: the client asks to go on in TLS. Refused in a transaction, as
 * Postfix does: the handshake would forget the transaction anyway (4.2). */
static enum smtpd_verdict starttls(void *arg, struct smtpd_session *s, const char *params,
                                   size_t len)
{
    (void)arg;
    (void)params;
    if (len > 0)
        smtpd_reply(s, 501, "5.5.4", "Syntax: STARTTLS");
    else if (smtpd_session_tls_protocol(s))
        smtpd_reply(s, 503, "5.5.1", "Error: TLS already active");
    else if (smtpd_session_reverse_path(s))
        smtpd_reply(s, 503, "5.5.1", "Error: MAIL transaction in progress");
    else if (channel_request_tls(s))
        smtpd_reply(s, 220, "2.0.0", "Ready to start TLS");
    else
        smtpd_reply(s, 454, "4.7.0", "TLS not available due to temporary reason");
    return SMTPD_DONE;
}

/* Offered in EHLO only before TLS (RFC 3207 4.2). */
static bool offered(const struct smtpd_session *s)
{
    return smtpd_session_tls_protocol(s) == NULL;
}

const struct chan_ext starttls_ext = {
    .cmd = {.verb = "STARTTLS", .fn = starttls, .ehlo = "STARTTLS", .help = "STARTTLS"},
    .offered = offered,
};
