/* The BDAT command; see bdat_cmd.h. */
#include "bdat_cmd.h"
#include "channel.h"
#include "command.h"

/* "BDAT chunk-size [LAST]". A bad size gets 501 at once: with no count,
 * nothing can be skipped, so what follows is read as commands. A good size
 * with something else after it: the chunk is skipped, then 501. */
static enum smtpd_verdict bdat(void *arg, struct smtpd_session *s, const char *params, size_t len)
{
    (void)arg;
    uint64_t size = 0;
    bool last = false;
    enum bdat_syntax r = cmd_parse_bdat(params, len, &size, &last);
    if (r == BDAT_BAD_SIZE)
        smtpd_reply(s, 501, "5.5.4", "Syntax: BDAT chunk-size [LAST]");
    else
        channel_bdat(s, size, last, r == BDAT_OK);
    return SMTPD_DONE;
}

const struct chan_ext bdat_ext = {
    .cmd = {.verb = "BDAT", .fn = bdat, .ehlo = "CHUNKING", .help = "BDAT chunk-size [LAST]"},
};
