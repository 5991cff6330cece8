/*
 * Address ranges for --relay-networks: "CIDR[,CIDR...]" with IPv4 and IPv6
 * prefixes. Pure.
 */
#ifndef SMTPD_CIDR_H
#define SMTPD_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cidr {
    int family;       /* AF_INET or AF_INET6 */
    uint8_t addr[16]; /* network, in network byte order */
    unsigned prefix;  /* bits */
};

/** Parse a comma-separated list of "addr[/prefix]" into @p out (capacity
 *  @p cap). @return the number parsed, or -1 for a syntax error or too many. */
int cidr_parse_list(const char *list, struct cidr *out, size_t cap);

/** Whether numeric address @p addr (IPv4, IPv6, or IPv4-mapped IPv6) is in
 *  one of the @p n ranges. */
bool cidr_match(const struct cidr *nets, size_t n, const char *addr);

#endif
