#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets into corpus/<target>/.

Each file is one input in the layout its target documents (a few header
bytes choosing parameters, then SMTP bytes). Run it again after changing a
layout; it replaces the seeds it owns and leaves other files alone.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def chunks(*sizes):
    """The chunk spec of fuzz.h: count, then sizes (each byte v = v+1 bytes)."""
    return bytes([len(sizes)] + [s - 1 for s in sizes])


DIALOGUE = (b"EHLO client.example\r\n"
            b"MAIL FROM:<alice@example.org> SIZE=120 BODY=8BITMIME\r\n"
            b"RCPT TO:<bob@example.com>\r\n"
            b"RCPT TO:<carol@example.com>\r\n"
            b"DATA\r\n")
MESSAGE = (b"From: alice@example.org\r\n"
           b"To: bob@example.com\r\n"
           b"Subject: hello\r\n"
           b"\r\n"
           b"Hi Bob,\r\n"
           b"..a line that starts with a dot\r\n"
           b".\r\n")

# ---- line: limit (2 bytes), chunk spec, stream ----
LINE_STREAMS = {
    "dialogue": DIALOGUE + b"QUIT\r\n",
    "pipelined": b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n",
    "bare-lf": b"HELO x\nNOOP\nQUIT\n",
    "cr-only": b"HELO x\rNOOP\r\n\r\r\n",
    "overlong": b"NOOP " + b"A" * 600 + b"\r\nNOOP\r\n",
    "exact-limit": b"X" * 512 + b"\r\n" + b"Y" * 513 + b"\r\n" + b"Z" * 512 + b"\n",
    "partial": b"NOOP\r\nHELO unfinished",
    "nul-bytes": b"HE\x00LO\r\n\x00\r\n",
}
for name, s in LINE_STREAMS.items():
    write("line", name, struct.pack(">H", 512) + chunks() + s)
    write("line", name + "-split", struct.pack(">H", 512) + chunks(1, 7, 3, 64) + s)
write("line", "limit-1000", struct.pack(">H", 1000) + chunks(200) + b"Q" * 1001 + b"\r\n" + b"q" * 1000 + b"\r\n")
write("line", "limit-0", struct.pack(">H", 0) + chunks(2) + b"\r\n\n\r\r\nx\r\n")
write("line", "limit-over-max", struct.pack(">H", 1100) + chunks(255) + b"W" * 1050 + b"\r\n")

# ---- command: one line ----
COMMANDS = {
    "ehlo": b"EHLO client.example",
    "helo-spaces": b"helo   \t name.example  ",
    "mail": b"MAIL FROM:<alice@example.org>",
    "mail-params": b"MAIL FROM:<alice@example.org> SIZE=12345 BODY=8BITMIME SMTPUTF8",
    "mail-null": b"MAIL FROM:<>",
    "mail-bare": b"mail from: alice@example.org",
    "mail-quoted": b'MAIL FROM:<"john \\"q\\" doe"@example.org>',
    "mail-literal": b"MAIL FROM:<user@[192.0.2.1]> SIZE=1",
    "mail-ipv6": b"MAIL FROM:<user@[IPv6:2001:db8::1]>",
    "mail-utf8": "MAIL FROM:<j\u00f6rg@b\u00fccher.example> SMTPUTF8".encode(),
    "rcpt-route": b"RCPT TO:<@relay1.example,@relay2.example:bob@example.com>",
    "rcpt-postmaster": b"RCPT TO:<Postmaster>",
    "rcpt-null": b"RCPT TO:<>",
    "rcpt-param": b"RCPT TO:<bob@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.com",
    "bad-params": b"MAIL FROM:<a@b> SIZE= =x KEY==v -x",
    "bad-domain": b"MAIL FROM:<a@-b-.example>",
    "bad-dots": b"MAIL FROM:<a..b@c>",
    "unclosed": b"MAIL FROM:<a@b",
    "vrfy": b"VRFY <bob@example.com>",
    "help": b"HELP MAIL",
    "data": b"DATA",
    "invalid-utf8": b"MAIL FROM:<\xff\xfe@\xc3.example>",
}
for name, s in COMMANDS.items():
    write("command", name, s)

# ---- data: limit, policy (0 normalize, 1 reject, 2 accept), chunk spec, stream ----
DATA_STREAMS = {
    "message": MESSAGE,
    "empty": b".\r\n",
    "stuffed": b"..\r\n...\r\n.x\r\n.\r\n",
    "two-messages": b"one\r\n.\r\ntwo\r\n.\r\n",
    "smuggle-lf-dot-lf": b"a\r\n\n.\nMAIL FROM:<x@y>\r\n.\r\n",
    "smuggle-lf-dot-crlf": b"a\r\n\n.\r\nMAIL FROM:<x@y>\r\n.\r\n",
    "smuggle-cr-dot-crlf": b"a\r\n\r.\r\nMAIL FROM:<x@y>\r\n.\r\n",
    "smuggle-crlf-dot-lf": b"a\r\n.\nMAIL FROM:<x@y>\r\n.\r\n",
    "smuggle-crlf-dot-cr": b"a\r\n.\rMAIL FROM:<x@y>\r\n.\r\n",
    "bare-lf-body": b"line one\nline two\n.\nthree\r\n.\r\n",
    "bare-cr-body": b"x\ry\r\r\n.\r\n",
    "dot-cr-cr": b".\r\r\n.\r\n",
    "nul-and-8bit": b"\x00\xff\xc3\xa9\r\n.\r\n",
    "unfinished": b"no end yet\r\n.\r",
}
for name, s in DATA_STREAMS.items():
    for policy in (0, 1, 2):
        write("data", "%s-p%d" % (name, policy), bytes([0, policy]) + chunks() + s)
    write("data", name + "-split", bytes([0, 0]) + chunks(1, 2, 3, 5) + s)
write("data", "limit-small", bytes([20, 0]) + chunks(4) + MESSAGE)
write("data", "limit-exact", bytes([5, 2]) + chunks() + b"abc\r\n.\r\n")
write("data", "limit-huge", bytes([252, 2]) + chunks() + b"abc\r\n.\r\n")

# ---- reply: mode 0 format / 1 utf8 / 2 escape ----
def fmt(flags, code, enh, text):
    return bytes([0, flags]) + struct.pack(">hH", code, len(enh)) + enh + text

write("reply", "format-plain", fmt(8 | 0, 250, b"", b""))
write("reply", "format-enh", fmt(2, 550, b"5.1.1", b"User unknown"))
write("reply", "format-more", fmt(3, 250, b"2.0.0", b"mx.example greets you"))
write("reply", "format-ctl", fmt(2, 451, b"4.3.0", b"a\r\nb\tc\x7f\x00d"))
write("reply", "format-long", fmt(2, 552, b"5.3.4", b"x" * 700))
write("reply", "format-odd-code", fmt(0, -7, b"", b"negative"))
write("reply", "utf8-valid", bytes([1]) + "gr\u00fc\u00df \u20ac \U0001F4E7".encode())
write("reply", "utf8-invalid", bytes([1]) + b"\xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82")
write("reply", "escape-mixed", bytes([2]) + struct.pack(">H", 64) + "a\\b\x01\x7f\xff \u00e9".encode())
write("reply", "escape-cut", bytes([2]) + struct.pack(">H", 12) + b"\x01\x02\x03\x04\x05\x06")
write("reply", "escape-cut-utf8", bytes([2]) + struct.pack(">H", 10) + "abcde\u00e9\x01fg".encode())
write("reply", "escape-tiny", bytes([2]) + struct.pack(">H", 3) + b"abcdef")
write("reply", "escape-bidi", bytes([2]) + struct.pack(">H", 40) +
      "evil\u202egpj.exe\u2028\u2066x\u061c".encode())

write("reply", "parse-enh", bytes([3]) + struct.pack(">h", 0) + b"250 2.1.5 Recipient ok")
write("reply", "parse-more", bytes([3]) + struct.pack(">h", 0) + b"250-PIPELINING")
write("reply", "parse-bare-code", bytes([3]) + struct.pack(">h", 0) + b"421")
write("reply", "parse-wrong-class", bytes([3]) + struct.pack(">h", 0) + b"550 4.1.1 mismatch")
write("reply", "parse-long-parts", bytes([3]) + struct.pack(">h", 0) + b"550 5.1234.1 too long")
write("reply", "parse-not-reply", bytes([3]) + struct.pack(">h", 451) + b"4.7.1 text only")

# ---- message: peer length, peer, data ----
def msg(peer, data):
    return bytes([len(peer)]) + peer + data

write("message", "headers-body", msg(b"192.0.2.7", b"Subject: x\r\nFrom: a@b\r\n\r\nbody\r\n"))
write("message", "no-blank-line", msg(b"192.0.2.7", b"Subject: x\r\nFrom: a@b\r\n"))
write("message", "no-line-end", msg(b"2001:db8::1", b"Subject: x"))
write("message", "bare-lf", msg(b"10.0.0.1", b"Subject: x\n\nbody\n"))
write("message", "empty", msg(b"127.0.0.1", b""))
write("message", "starts-blank", msg(b"127.0.0.1", b"\r\nbody only\r\n"))
write("message", "long-peer", msg(b"p" * 120, b"Subject: y\r\n\r\n"))
write("message", "trailing-cr", msg(b"::1", b"Subject: x\r"))

# ---- channel: 6 header bytes, then the client's bytes ----
def chan(flags=0, size=201, misc=3, seed=(1, 2, 3), data=b""):
    return bytes([flags, size, misc]) + bytes(seed) + data

BASIC = (b"HELO client.example\r\n"
         b"MAIL FROM:<alice@example.org>\r\n"
         b"RCPT TO:<bob@example.com>\r\n"
         b"DATA\r\n" + MESSAGE + b"QUIT\r\n")
PIPELINED = DIALOGUE + MESSAGE + b"RSET\r\nNOOP\r\nQUIT\r\n"
write("channel", "helo-basic", chan(data=BASIC))
write("channel", "ehlo-pipelined", chan(data=PIPELINED))
write("channel", "ehlo-pipelined-1byte", chan(flags=0x40, seed=(9, 9, 9), data=PIPELINED))
write("channel", "ehlo-pipelined-chunks", chan(flags=0x80 | 0x08, seed=(4, 5, 6), data=PIPELINED))
write("channel", "debug-log", chan(flags=0x0c, data=PIPELINED))
write("channel", "smtputf8", chan(flags=0x01, data=
      "EHLO c\r\nMAIL FROM:<j\u00f6rg@b\u00fccher.example> SMTPUTF8\r\nRCPT TO:<\u00fc@x.example>\r\nDATA\r\n\u00e9\r\n.\r\n".encode()))
write("channel", "decode-data", chan(flags=0x02, data=
      b"EHLO c\r\nMAIL FROM:<a@b> BODY=8BITMIME\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n\xff\xfe\r\n.\r\n"))
for i, s in enumerate((b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n")):
    for policy in (0, 1, 2):
        write("channel", "smuggle-%d-p%d" % (i, policy), chan(misc=3 | policy << 2, data=
              b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi" + s +
              b"MAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\nforged\r\n.\r\n.\r\nQUIT\r\n"))
write("channel", "overlong-line", chan(data=b"EHLO c\r\nNOOP " + b"A" * 700 + b"\r\nMAIL FROM:<a@b> " + b"X" * 520 + b"\r\nQUIT\r\n"))
write("channel", "invalid-utf8", chan(flags=0x0c, data=b"EHLO \xff\xc3\r\nMAIL FROM:<\xed\xa0\x80@x>\r\nHELP \x01\x02\r\nQUIT\r\n"))
write("channel", "size-limit", chan(size=10, data=
      b"EHLO c\r\nMAIL FROM:<a@b> SIZE=11\r\nMAIL FROM:<a@b> SIZE=5\r\nRCPT TO:<c@d>\r\nDATA\r\n0123456789abcdef\r\n.\r\nQUIT\r\n"))
write("channel", "many-rcpts", chan(misc=0, data=
      b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<>\r\nRCPT TO:<c@x>\r\nDATA\r\n.\r\n"))
write("channel", "commands", chan(data=
      b"NOOP\r\nMAIL FROM:<a@b>\r\nHELO\r\nEHLO\r\nHELO x\r\nEHLO y\r\nHELO z\r\nVRFY <bob@x>\r\nVRFY ???\r\n"
      b"EXPN list\r\nHELP\r\nHELP RCPT\r\nHELP FOO\r\nRSET x\r\nDATA x\r\nRCPT TO:<a@b>\r\nFOO\r\n\r\nQUIT\r\n"))
write("channel", "events", chan(flags=0x20 | 0x80, seed=(7, 7, 7), data=PIPELINED * 3))
write("channel", "bare-lf-commands", chan(data=b"EHLO c\nMAIL FROM:<a@b>\nRCPT TO:<c@d>\nDATA\nx\n.\n.\r\n"))
# BDAT: pipelined chunks with binary octets and a "." line, LAST alone,
# DATA mixed in, a bad size, a chunk over the size limit (size byte 10).
BDAT_MSG = b"Subject: x\r\n\r\n\x00\xff\r\n.\r\n"
BDAT = (b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT %d\r\n%sBDAT 3\r\nab\nDATA\r\n"
        b"BDAT 0 LAST\r\nBDAT x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 5 last\r\n"
        b"a\rb\rBDAT 2\r\nxxQUIT\r\n") % (len(BDAT_MSG), BDAT_MSG)
write("channel", "bdat", chan(data=BDAT))
write("channel", "bdat-1byte", chan(flags=0x40, seed=(9, 9, 9), data=BDAT))
write("channel", "bdat-ext", chan(seed=(0x81, 2, 3), data=BDAT))
write("channel", "bdat-limit", chan(size=10, data=BDAT))
# LMTP (size byte 228..254): LHLO, HELO/EHLO refused, several recipients,
# DATA and BDAT LAST, each answered per recipient.
LMTP = (b"EHLO c\r\nLHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\n"
        b"RCPT TO:<g@h>\r\nDATA\r\nx\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
        b"RCPT TO:<e@f>\r\nBDAT 3 LAST\r\nxyzQUIT\r\n")
write("channel", "lmtp", chan(size=230, data=LMTP))
write("channel", "lmtp-ext", chan(size=240, seed=(0x81, 4, 4), data=LMTP))
write("channel", "lmtp-events", chan(flags=0x20 | 0x80, size=250, seed=(7, 7, 7), data=LMTP * 2))
write("channel", "long-hostname", chan(flags=0x10, data=b"EHLO c\r\nHELP\r\nQUIT\r\n"))

# ---- client: byte 0 LMTP, then operations (see fuzz_client.c) ----
CODES = [220, 250, 251, 252, 221, 354, 334, 421, 450, 451, 452,
         500, 501, 503, 550, 552, 554, 555, 200, 599, 235, 535, 454]
# Indexes into fuzz_client.c's EHLO keywords.
KW_STARTTLS, KW_AUTH_LOGIN, KW_AUTH_EQ = 8, 10, 11
KW_AUTH_PLAIN = 5


def reply(code, more=False, enh=False, kw=None):
    """Operation 2: a template reply line."""
    flags = (1 if more else 0) | (2 if enh else 0) | (8 if kw is not None else 0)
    out = bytes([2, CODES.index(code), flags])
    if enh:
        out += b"\x00"
    if kw is not None:
        out += bytes([kw])
    return out


CONNECTED = b"\x00"
DRAIN = b"\x04"
LOST = b"\x05"
MAIL, RCPT, DATA, RSET, QUIT = (bytes([(w << 3) | 1]) for w in (0, 1, 2, 3, 4))
OPEN = CONNECTED + reply(220) + DRAIN + reply(250, more=True) + reply(250, kw=0) + DRAIN
DATA_WITH_DOTS = bytes([((2 + 5 * 4) << 3) | 1])  # body "a\r\n.\r\nb"
write("client", "smtp-transaction", b"\x00" + OPEN + MAIL + DRAIN + reply(250) + RCPT + DRAIN +
      reply(250) + DATA_WITH_DOTS + DRAIN + reply(354) + DRAIN + reply(250, enh=True) + RSET +
      reply(250) + QUIT)
# The two bugs the machine was written against: 250 to DATA, 354 to MAIL.
write("client", "250-to-data", b"\x00" + OPEN + MAIL + reply(250) + RCPT + reply(250) + DATA +
      DRAIN + reply(250))
write("client", "354-to-mail", b"\x00" + OPEN + MAIL + DRAIN + reply(354) + MAIL)
write("client", "334-to-rcpt", b"\x00" + OPEN + MAIL + reply(250) + RCPT + reply(334))
write("client", "premature-250", b"\x00" + OPEN + MAIL + reply(250) + RCPT + reply(250) + DATA +
      reply(354) + reply(250))
write("client", "lmtp-two-rcpts", b"\x01" + OPEN + MAIL + reply(250) + RCPT + reply(250) + RCPT +
      reply(550) + RCPT + reply(250) + DATA + reply(354) + DRAIN + reply(250) + reply(452) +
      reply(250))
write("client", "ehlo-fallback-helo", b"\x00" + CONNECTED + reply(220) + reply(500) + reply(250) +
      MAIL + reply(421) + LOST)
# SMTP AUTH (byte 0: 0x08 credentials, 0x10 allowed without TLS, 0x04 TLS must).
AUTH_OPEN = CONNECTED + reply(220) + reply(250, more=True)
write("client", "auth-plain", b"\x18" + AUTH_OPEN + reply(250, kw=KW_AUTH_PLAIN) + reply(235) +
      MAIL + reply(250) + RCPT + reply(250) + RSET + reply(250) + MAIL + reply(250))
write("client", "auth-login-after-starttls", b"\x0c" + AUTH_OPEN + reply(250, kw=KW_STARTTLS) +
      reply(220) + b"\x00" + reply(250, more=True) + reply(250, kw=KW_AUTH_LOGIN) + reply(334) +
      reply(334) + reply(235) + MAIL + reply(250))
write("client", "auth-equals-form", b"\x18" + AUTH_OPEN + reply(250, kw=KW_AUTH_EQ) + reply(334) +
      reply(334) + reply(235) + MAIL)
write("client", "auth-refused", b"\x18" + AUTH_OPEN + reply(250, kw=KW_AUTH_PLAIN) + reply(535))
write("client", "auth-temporary", b"\x18" + AUTH_OPEN + reply(250, kw=KW_AUTH_LOGIN) + reply(334) +
      reply(454))
write("client", "auth-334-to-plain", b"\x18" + AUTH_OPEN + reply(250, kw=KW_AUTH_PLAIN) + reply(334))
write("client", "auth-no-mechanism", b"\x18" + AUTH_OPEN + reply(250, kw=0))
write("client", "auth-may-without-tls", b"\x0a" + AUTH_OPEN + reply(250, kw=KW_AUTH_PLAIN))
write("client", "auth-may-starttls-refused", b"\x0a" + AUTH_OPEN + reply(250, kw=KW_STARTTLS) +
      reply(454))
KW_CHUNKING = 16
BDAT_DATA = bytes([((2 + 5 * 5) << 3) | 1])  # chunked (which / 5 odd), body "a\n.\nb"
write("client", "bdat-upstream", b"\x00" + CONNECTED + reply(220) + reply(250, more=True) +
      reply(250, kw=KW_CHUNKING) + MAIL + reply(250) + RCPT + reply(250) + BDAT_DATA + DRAIN +
      reply(250) + MAIL + reply(250) + RCPT + reply(250) + BDAT_DATA + reply(250))
write("client", "bdat-lmtp", b"\x01" + CONNECTED + reply(220) + reply(250, more=True) +
      reply(250, kw=KW_CHUNKING) + MAIL + reply(250) + RCPT + reply(250) + RCPT + reply(250) +
      BDAT_DATA + DRAIN + reply(250) + reply(550))
write("client", "raw-lines", b"\x00" + CONNECTED + b"\x03\x07220 ok \r" + b"\x03\x03xyz" +
      b"\x03\x04250-" + b"\x03\x04251 ")

# ---- channel with the extension table and hooks (seed byte 0x80 set) ----
EXT_DIALOGUE = (b"XSTATE\r\nXOUT\r\nEHLO client.example\r\nXOUT x\r\nXTXN\r\nHELP\r\nHELP xstate\r\n"
                b"MAIL FROM:<a@b.example> SIZE=10\r\nXTXN y\r\nXOUT\r\nRCPT TO:<c@d.example>\r\n"
                b"VRFY anything\r\nXSTATE\r\nanswer to a question\r\nDATA\r\nSubject: x\r\n\r\n"
                b"body\r\n.\r\nRSET\r\nHELO again\r\nQUIT\r\n")
write("channel", "ext-dialogue", chan(seed=(0x81, 2, 3), data=EXT_DIALOGUE))
write("channel", "ext-dialogue-1byte", chan(flags=0x40, seed=(0x85, 9, 9), data=EXT_DIALOGUE))
write("channel", "ext-events", chan(flags=0x20 | 0x80 | 0x0c, seed=(0xc7, 7, 7), data=EXT_DIALOGUE * 2))
write("channel", "ext-backlog", chan(misc=3 | 0x40, seed=(0x90, 1, 1), data=EXT_DIALOGUE))

# ---- channel with AUTH (seed byte: 0x08 AUTH, 0x04 auth_insecure, 0x02
# auth_required, 0x01 no failure delay; 0x40 STARTTLS offered, 0x10 implicit
# TLS) ----
def b64(b):
    import base64
    return base64.b64encode(b)

PW_PLAIN = b"s3cretpasswor1"    # 7 + 14 bytes: an unpadded PLAIN response
PW_LOGIN = b"s3cretpassword1"   # 15 bytes: an unpadded LOGIN response
AUTH_MAIL = (b"MAIL FROM:<alice@example.org> AUTH=<>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
             + MESSAGE)
AUTH_PLAIN_IR = b"EHLO c\r\nAUTH PLAIN " + b64(b"\0alice\0" + PW_PLAIN) + b"\r\n" + AUTH_MAIL + b"QUIT\r\n"
AUTH_LOGIN = (b"EHLO c\r\nAUTH LOGIN\r\n" + b64(b"alice") + b"\r\n" + b64(PW_LOGIN) + b"\r\n"
              + AUTH_MAIL + b"QUIT\r\n")
AUTH_STARTTLS = (b"EHLO c\r\nMAIL FROM:<a@b>\r\nAUTH PLAIN\r\nSTARTTLS\r\nEHLO c\r\nAUTH PLAIN\r\n"
                 + b64(b"alice\0alice\0" + PW_LOGIN) + b"\r\nAUTH PLAIN =\r\n" + AUTH_MAIL
                 + b"QUIT\r\n")
AUTH_FAILURES = (b"EHLO c\r\n" + b"AUTH PLAIN " + b64(b"\0alice\0wrongpasswor") + b"\r\n"
                 + b"AUTH LOGIN " + b64(b"alice") + b"\r\n*\r\n"
                 + b"AUTH LOGIN\r\n!!!!\r\nAUTH PLAIN\r\n" + b"A" * 700 + b"\r\n"
                 + b"AUTH CRAM-MD5\r\nAUTH\r\nAUTH PLAIN " + b64(b"bob\0alice\0x") + b"\r\n"
                 + b"AUTH PLAIN " + b64(b"\0\0x") + b"\r\nMAIL FROM:<a@b>\r\nAUTH PLAIN\r\nRSET\r\n"
                 + b"AUTH PLAIN " + b64(b"\0alice\0" + PW_PLAIN) + b"\r\nAUTH LOGIN\r\n"
                 + AUTH_MAIL + b"QUIT\r\n")
write("channel", "auth-plain-implicit", chan(flags=0x0c, seed=(0x58, 1, 2), data=AUTH_PLAIN_IR))
write("channel", "auth-login-insecure", chan(flags=0x0c, seed=(0x0c, 3, 4), data=AUTH_LOGIN))
write("channel", "auth-login-1byte", chan(flags=0x4c, seed=(0x0e, 5, 5), data=AUTH_LOGIN))
write("channel", "auth-starttls-required", chan(flags=0x0c, seed=(0x4a, 5, 6), data=AUTH_STARTTLS))
write("channel", "auth-failures", chan(flags=0x8c, misc=0x13, seed=(0x5c, 7, 8), data=AUTH_FAILURES))
write("channel", "auth-failures-no-delay", chan(flags=0x0c, misc=0x03, seed=(0x0d, 9, 1), data=AUTH_FAILURES))
write("channel", "auth-events", chan(flags=0x20 | 0x80 | 0x0c, seed=(0xdc, 7, 7), data=AUTH_FAILURES * 2))

# ---- proxy: the bytes a connection begins with (a PROXY header, then SMTP) ----
V2_SIG = b"\r\n\r\n\0\r\nQUIT\n"
V2_TCP4 = bytes([0x21, 0x11, 0, 12, 192, 0, 2, 10, 198, 51, 100, 1, 0xdc, 0x04, 0, 25])
V2_TCP6 = (bytes([0x21, 0x21, 0, 36]) + bytes([0x20, 0x01, 0x0d, 0xb8] + [0] * 11 + [1])
           + bytes([0] * 15 + [1]) + bytes([1, 0xbb, 0, 25]))
write("proxy", "v1-tcp4", b"PROXY TCP4 192.0.2.10 198.51.100.1 56324 25\r\nEHLO c\r\n")
write("proxy", "v1-tcp6", b"PROXY TCP6 2001:db8::1 ::1 65535 25\r\nEHLO c\r\n")
write("proxy", "v1-unknown", b"PROXY UNKNOWN\r\nEHLO c\r\n")
write("proxy", "v2-tcp4", V2_SIG + V2_TCP4 + b"EHLO c\r\n")
write("proxy", "v2-tcp6", V2_SIG + V2_TCP6 + b"EHLO c\r\n")
write("proxy", "v2-tlvs", V2_SIG + bytes([0x21, 0x11, 0, 20]) + V2_TCP4[4:]
      + b"\x01\x00\x02h2\x04\x00\x00" + b"QUIT\r\n")
write("proxy", "v2-local", V2_SIG + bytes([0x20, 0, 0, 0]) + b"EHLO c\r\n")
write("proxy", "smtp", b"EHLO c\r\n")

# ---- xclient: the argument of an XCLIENT command ----
write("xclient", "full", b"NAME=client.example ADDR=192.0.2.7 PORT=4444 PROTO=ESMTP "
      b"HELO=client.example LOGIN=alice+40example.org DESTADDR=198.51.100.1 DESTPORT=25")
write("xclient", "ipv6", b"ADDR=IPV6:2001:db8::7 PORT=[UNAVAILABLE] NAME=[TEMPUNAVAIL]")
write("xclient", "xtext", b"HELO=+5Bhelo+5D LOGIN=a+2Bb")
write("xclient", "bad", b"ADDR=300.1.1.1 FOO=bar")
