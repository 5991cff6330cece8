/* "host:port" address strings, as the command line and the API take them. Pure. */
#ifndef SMTPD_HOSTPORT_H
#define SMTPD_HOSTPORT_H

#include <stdbool.h>
#include <stddef.h>

/**
 * Split "host:port", "[v6addr]:port" or ":port" into @p host (brackets
 * removed; "" for ":port") and @p port (digits, 0..65535). A bare IPv6
 * address without brackets is refused. @return false on any syntax error or
 * when a part does not fit its buffer.
 */
bool hostport_split(const char *hp, char *host, size_t hostsz, char *port, size_t portsz);

#endif
