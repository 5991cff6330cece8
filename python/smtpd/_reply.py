"""Reply strings of process_message and push(), checked before they are sent.

A reply is RFC 5321 4.2's: "NNN text", or several lines "NNN-text" ending
with "NNN text", one code throughout. parse() gives the code, the enhanced
status code the text starts with (RFC 3463, when its class is the code's)
and the lines' text, or raises ValueError saying what is wrong.
"""

import re

_LINE = re.compile(r"([2-5][0-9][0-9])(?:([ -])(.*))?\Z", re.S)
_ENHANCED = re.compile(r"([245]\.[0-9]{1,3}\.[0-9]{1,3})(?: |\Z)")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def parse(reply, allow_3xx=False):
    if not isinstance(reply, str):
        raise ValueError("a reply is a str, not %s" % type(reply).__name__)
    lines = reply.split("\n")
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()  # a final line end
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    if len(lines) > 64:
        raise ValueError("more than 64 lines")
    code, texts = None, []
    for i, line in enumerate(lines):
        m = _LINE.match(line)
        if not m:
            raise ValueError('line %d is not "NNN text" with NNN 200-599' % (i + 1))
        if code is None:
            code = m.group(1)
        elif m.group(1) != code:
            raise ValueError("lines with different reply codes")
        last = i == len(lines) - 1
        if (m.group(2) == "-") != (not last):
            raise ValueError('only the last line may be "NNN text", the others "NNN-text"')
        text = m.group(3) or ""
        if _CONTROL.search(text):
            raise ValueError("a control character in line %d" % (i + 1))
        texts.append(text)
    if code[0] == "3" and not allow_3xx:
        raise ValueError("3xx is no answer to a message")
    enhanced = None
    m = _ENHANCED.match(texts[0])
    if m and m.group(1)[0] == code[0]:
        enhanced = m.group(1)
        texts = [t[len(enhanced):].lstrip(" ") if t.startswith(enhanced) else t for t in texts]
    return int(code), enhanced, tuple(t or None for t in texts) if len(texts) == 1 else tuple(texts)
