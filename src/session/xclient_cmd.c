/* The XCLIENT command; see xclient_cmd.h. */
#include "xclient_cmd.h"
#include "channel.h"
#include "xclient.h"

/* "XCLIENT attribute=value ...": the session's client is then the one
 * named, the session starts over, and the answer is a new 220 greeting
 * (as Postfix does; the proxy sends its EHLO again). */
static enum smtpd_verdict xclient(void *arg, struct smtpd_session *s, const char *params,
                                  size_t len)
{
    (void)arg;
    struct xclient_attrs a;
    char why[200];
    if (!channel_xclient_allowed(s)) {
        smtpd_reply(s, 550, "5.7.0", "Error: insufficient authorization");
    } else if (smtpd_session_reverse_path(s)) {
        smtpd_reply(s, 503, "5.5.1", "Error: MAIL transaction in progress");
    } else if (!xclient_parse(params, len, &a, why, sizeof(why))) {
        smtpd_reply(s, 501, "5.5.4", why);
    } else {
        channel_xclient(s, &a);
        char greeting[300];
        channel_greeting(s, greeting, sizeof(greeting));
        smtpd_reply(s, 220, NULL, greeting);
        if (a.proto == XCLIENT_SET)
            channel_xclient_esmtp(s, a.esmtp);
    }
    return SMTPD_DONE;
}

static bool advertised(const struct smtpd_session *s)
{
    return channel_xclient_allowed(s);
}

const struct chan_ext xclient_ext = {
    .cmd = {.verb = "XCLIENT",
            .fn = xclient,
            .ehlo = "XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT",
            .help = "XCLIENT attribute=value ..."},
    .advertised = advertised,
};
