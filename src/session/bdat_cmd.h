/*
 * BDAT (CHUNKING, RFC 3030) as an entry on the extension mechanism: the
 * command parses its argument and asks the channel to read the chunk
 * (channel_bdat); counting octets, the size limit and the answers are the
 * state machine's. A server offers it always: every server puts bdat_ext
 * in its chan_params.exts, and EHLO lists CHUNKING.
 */
#ifndef SMTPD_BDAT_CMD_H
#define SMTPD_BDAT_CMD_H

#include "extension.h"

extern const struct chan_ext bdat_ext;

#endif
