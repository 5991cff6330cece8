/* The machine's FQDN; see fqdn.h. */
#include "fqdn.h"

#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

char *fqdn_lookup(void)
{
    char name[256];
    if (gethostname(name, sizeof(name) - 1) != 0)
        return strdup("localhost");
    name[sizeof(name) - 1] = '\0';
    struct addrinfo hints = {.ai_flags = AI_CANONNAME, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    char *fqdn = NULL;
    if (getaddrinfo(name, NULL, &hints, &res) == 0 && res && res->ai_canonname)
        fqdn = strdup(res->ai_canonname);
    if (res)
        freeaddrinfo(res);
    return fqdn ? fqdn : strdup(name);
}
