/*
 * The PROXY protocol header a TCP load balancer (HAProxy's send-proxy,
 * send-proxy-v2) puts before the client's bytes: version 1 (one text line)
 * and version 2 (binary), as HAProxy's "The PROXY protocol" specification
 * (doc/proxy-protocol.txt, versions 1 and 2) defines them. Pure: bytes in,
 * the client's address out.
 */
#ifndef SMTPD_PROXY_H
#define SMTPD_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A version 1 header is at most 107 bytes with its CRLF (spec 2.1). */
#define PROXY_V1_MAX 107
/* A version 2 header: 16 bytes, then its length field's bytes (addresses
 * and TLVs). HAProxy's own TLVs (ALPN, authority, SSL, unique ID) stay far
 * below this; a longer header is refused rather than buffered. */
#define PROXY_V2_MAX (16 + 1024)

/* What a complete header says. */
struct proxy_header {
    int version; /* 1 or 2 */
    /* True: use the connection's own addresses. A v2 LOCAL command (the
     * balancer's health check), a v1 "UNKNOWN" line, or a v2 PROXY command
     * for a family other than TCP over IPv4/IPv6 (spec 2.1, 2.2). */
    bool local;
    /* When !local: the client's (source) and the balancer's (destination)
     * numeric addresses, as inet_ntop writes them, and ports. */
    char src_addr[46], dst_addr[46];
    uint16_t src_port, dst_port;
};

enum proxy_result {
    PROXY_MORE = 0, /* a valid beginning: more bytes are needed */
    PROXY_BAD = -1, /* not a PROXY header, or a malformed one */
};

/**
 * Parse the PROXY header at the start of @p buf (@p len bytes received so
 * far). Either version is recognised by its first bytes; anything else is
 * refused as soon as a byte differs from both signatures, so a client that
 * speaks SMTP at once is told apart without waiting.
 *
 * @return the header's length in bytes (> 0) with @p out filled: the bytes
 *         after it are the client's; PROXY_MORE when @p buf is a valid
 *         prefix; PROXY_BAD when it cannot become a valid header (a wrong
 *         signature, version or command, v1 with a bad protocol, address or
 *         port, a v1 line over PROXY_V1_MAX bytes, a v2 length shorter than
 *         its address block or over PROXY_V2_MAX). v2 TLVs are skipped
 *         unread. @p out is written only on success.
 */
int proxy_parse(const unsigned char *buf, size_t len, struct proxy_header *out);

#endif
