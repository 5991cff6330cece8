/*
 * The XCLIENT command's attributes (Postfix's XCLIENT_README): what a
 * trusted proxy (nginx's mail proxy, a content filter) tells the server
 * about the client it speaks for. Pure: the argument line in, the
 * attributes out.
 */
#ifndef SMTPD_XCLIENT_H
#define SMTPD_XCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest decoded value kept (a host name, a SASL login name). */
#define XCLIENT_VALUE_MAX 255

/* Each attribute: not given, given with a value, or given as unknown
 * ("[UNAVAILABLE]" or "[TEMPUNAVAIL]"). */
enum xclient_has { XCLIENT_ABSENT = 0, XCLIENT_SET, XCLIENT_UNKNOWN };

struct xclient_attrs {
    enum xclient_has addr, port, name, helo, proto, login;
    char addr_value[46]; /* numeric IPv4 or IPv6 ("IPV6:" removed) */
    uint16_t port_value; /* 0..65535 */
    bool esmtp;          /* PROTO=ESMTP (else SMTP) */
    char name_value[XCLIENT_VALUE_MAX + 1];
    char helo_value[XCLIENT_VALUE_MAX + 1];
    char login_value[XCLIENT_VALUE_MAX + 1];
};

/**
 * Parse the argument of "XCLIENT attribute=value ..." (@p len bytes, after
 * the verb): the names NAME, ADDR, PORT, PROTO, HELO, LOGIN, DESTADDR and
 * DESTPORT in any case, values in xtext (RFC 3461 4: "+XX" for a byte),
 * "[UNAVAILABLE]" and "[TEMPUNAVAIL]" for unknown. DESTADDR and DESTPORT
 * are checked and not kept (the server's own address stays). A decoded
 * value must be printable ASCII, without spaces, at most
 * XCLIENT_VALUE_MAX bytes.
 *
 * @return true with @p out filled; false with @p why (the text of a 501
 *         reply, @p whysz bytes) for an empty argument, an unknown
 *         attribute, bad xtext, or a bad address, port or protocol.
 */
bool xclient_parse(const char *arg, size_t len, struct xclient_attrs *out, char *why, size_t whysz);

#endif
