/*
 * STARTTLS (RFC 3207) as an entry on the extension mechanism: the command
 * checks and answers, and asks the channel to start TLS
 * (channel_request_tls); the switch itself is the transport's. A server
 * with a TLS context puts starttls_ext in its chan_params.exts.
 */
#ifndef SMTPD_STARTTLS_H
#define SMTPD_STARTTLS_H

#include "extension.h"

extern const struct chan_ext starttls_ext;

#endif
