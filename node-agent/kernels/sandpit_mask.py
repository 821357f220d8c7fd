"""Secret masking for the Python and bash kernels (docs/code-interpreter.md, "Secrets").

The same semantics as sandpit-init's masker (node-agent/init/mask.c), on text:
every occurrence of a secret value becomes "***", the longest value wins at the
leftmost position, and the end of a stream chunk that could still become a
value (a proper prefix of one) is held back until the next chunk decides or
the stream is flushed. A Masker without values passes everything through.
"""
import json
import os
import re

REPLACEMENT = "***"
NAMES_VAR = "SANDPIT_SECRET_NAMES"
# Base64 of binary data: the masker cannot see a value in it, and masking
# would only corrupt the image.
BINARY_KEYS = ("png", "jpeg", "pdf")


def sandbox_values():
    """The values of the secret names the agent passed in SANDPIT_SECRET_NAMES
    (a JSON array), read from this process's environment. The variable itself
    is removed; the secrets stay in os.environ for the user's code."""
    raw = os.environ.pop(NAMES_VAR, "")
    try:
        names = json.loads(raw) if raw else []
    except ValueError:
        names = []
    if not isinstance(names, list):
        return []
    return [os.environ[n] for n in names if isinstance(n, str) and os.environ.get(n)]


class Values:
    """A set of secret values, longest first, and the regex that finds them."""

    def __init__(self, values):
        self.values = sorted({v for v in values if v}, key=len, reverse=True)
        self.maxlen = len(self.values[0]) if self.values else 0
        # Python's alternation takes the first alternative that matches: longest first
        # gives leftmost-longest.
        self.rx = re.compile("|".join(re.escape(v) for v in self.values)) if self.values else None

    def partial(self, tail):
        """Whether tail is a proper prefix of a value (a longer value may still match)."""
        return any(len(v) > len(tail) and v.startswith(tail) for v in self.values)

    def mask(self, s):
        return self.rx.sub(REPLACEMENT, s) if self.rx else s

    def mask_obj(self, obj):
        """Masks every string in a JSON-able value, dict keys included."""
        if self.rx is None:
            return obj
        if isinstance(obj, str):
            return self.mask(obj)
        if isinstance(obj, list):
            return [self.mask_obj(x) for x in obj]
        if isinstance(obj, dict):
            return {self.mask(k) if isinstance(k, str) else k:
                    (v if k in BINARY_KEYS else self.mask_obj(v)) for k, v in obj.items()}
        return obj


class Stream:
    """One output stream's masker: feed() chunks, flush() at the stream's end."""

    def __init__(self, values):
        self.values = values
        self.held = ""

    def feed(self, text, final=False):
        vals = self.values
        if vals.rx is None:
            return text
        buf = self.held + text
        self.held = ""
        n = len(buf)
        # Below limit every value fits in what is there: no partial match possible.
        limit = n if final else max(0, n - vals.maxlen + 1)
        out = []
        i = 0
        while True:
            m = vals.rx.search(buf, i)
            s = m.start() if m else n
            # A partial match at s beats a full one there (a longer value may follow).
            for j in range(max(i, limit), min(s + 1, n)):
                if vals.partial(buf[j:]):
                    out.append(buf[i:j])
                    self.held = buf[j:]
                    return "".join(out)
            if m is None:
                out.append(buf[i:])
                return "".join(out)
            out.append(buf[i:s])
            out.append(REPLACEMENT)
            i = m.end()

    def flush(self):
        return self.feed("", True)
