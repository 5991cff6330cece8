/*
 * XCLIENT (Postfix's XCLIENT_README) as an entry on the extension
 * mechanism: a proxy in front of smtpd (nginx's mail proxy, a content
 * filter) names the client it speaks for. Only clients in
 * smtpd_config.xclient_networks see it in EHLO and may use it; the others
 * get 550 5.7.0. A server with xclient_networks puts xclient_ext in its
 * chan_params.exts.
 */
#ifndef SMTPD_XCLIENT_CMD_H
#define SMTPD_XCLIENT_CMD_H

#include "extension.h"

extern const struct chan_ext xclient_ext;

#endif
