/* "host:port" strings; see hostport.h. */
#include "hostport.h"

#include <stdlib.h>
#include <string.h>

bool hostport_split(const char *hp, char *host, size_t hostsz, char *port, size_t portsz)
{
    const char *colon = strrchr(hp, ':');
    if (!colon || colon[1] == '\0')
        return false;
    size_t hlen = (size_t)(colon - hp);
    const char *h = hp;
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    } else if (memchr(hp, ':', hlen)) {
        return false; /* a bare IPv6 address needs brackets */
    }
    size_t plen = strlen(colon + 1);
    if (hlen >= hostsz || plen >= portsz || plen > 5)
        return false;
    for (const char *p = colon + 1; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    if (atol(colon + 1) > 65535)
        return false;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    memcpy(port, colon + 1, plen + 1);
    return true;
}
