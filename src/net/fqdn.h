/* The machine's fully qualified domain name, as Python's socket.getfqdn()
 * gives it. Blocking: call it once at start-up, never per connection. */
#ifndef SMTPD_FQDN_H
#define SMTPD_FQDN_H

/** @return a malloc'd name (free() it); NULL only when out of memory. */
char *fqdn_lookup(void);

#endif
