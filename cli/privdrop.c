/* Privilege drop; see privdrop.h. */
#include "privdrop.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int privdrop(const char *name, char *err, size_t errsz)
{
    errno = 0;
    struct passwd *pw = getpwnam(name);
    if (!pw) {
        snprintf(err, errsz, "no user \"%s\"", name);
        return -1;
    }
    uid_t uid = pw->pw_uid;
    gid_t gid = pw->pw_gid;
    /* Order matters: groups and gid need root, so they go before the uid. */
    if (setgroups(1, &gid) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
        snprintf(err, errsz, "cannot become \"%s\": %s", name, strerror(errno));
        return -1;
    }
    if (uid != 0 && (setuid(0) == 0 || getuid() != uid || geteuid() != uid || getgid() != gid)) {
        snprintf(err, errsz, "privileges of \"%s\" not fully taken", name);
        return -1;
    }
    return 0;
}
