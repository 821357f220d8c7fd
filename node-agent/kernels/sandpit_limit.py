"""The size limit of one event line, for the Python and bash kernels
(docs/code-interpreter.md, "Limits").

The agent takes lines of at most SANDPIT_CODE_EVENT_MAX bytes (the newline
included) and drops longer ones. So a driver encodes each event with lines():
stdout/stderr text too long for one line becomes several events; any other
event too long (a huge result or error value) is cut: media fields (png, ...)
and structured ones (json) are dropped, the longest strings are shortened and
end with a marker saying so, and the event gets "truncated": true.
"""
import json
import os

EVENT_MAX = int(os.environ.pop("SANDPIT_CODE_EVENT_MAX", "") or 1048576)
KEEP = ("type", "is_main_result", "execution_count", "exit_code", "truncated")
MARKER = "\n[sandpit: truncated: %d of %d characters shown; an event is at most %d bytes]"


def encode(obj):
    return (json.dumps(obj, allow_nan=False) + "\n").encode()


def prefix_within(s, budget):
    """The longest prefix of s (about) whose JSON encoding takes <= budget bytes."""
    n = min(len(s), max(budget, 0))
    while n > 0:
        size = len(json.dumps(s[:n]))
        if size <= budget:
            return s[:n]
        n = max(0, n * budget // size - 16)
    return ""


def split_text(obj, limit):
    """A stdout/stderr event as events of at most limit bytes each."""
    text, out, i = obj["text"], [], 0
    step = max(1024, (limit - 64) // 12)  # \\uXXXX\\uXXXX: 12 bytes a character at worst
    while i < len(text):
        out.append(encode({"type": obj["type"], "text": text[i:i + step]}))
        i += step
    return out


def fit(obj, limit):
    """obj cut down so that its line takes at most limit bytes."""
    out = dict(obj)
    out["truncated"] = True
    for _ in range(64):
        size = len(encode(out))
        if size <= limit:
            return out
        sizes = {k: len(json.dumps(v)) for k, v in out.items() if k not in KEEP}
        if not sizes:
            break
        key = max(sizes, key=sizes.get)
        v = out[key]
        if not isinstance(v, str) or key in ("png", "jpeg", "pdf") or sizes[key] < 64:
            del out[key]
            continue
        marker = MARKER % (0, len(v), limit)
        # What the other fields take is theirs only while they fit: a string
        # keeps a quarter of the line at least, and later rounds drop or cut
        # the others (with no floor once the floor stops making progress).
        slack = len(json.dumps(marker)) + 16
        budget = limit - (size - sizes[key]) - slack
        floored = max(budget, limit // 4 - slack)
        budget = floored if floored + slack < sizes[key] else budget
        if budget < 64:  # no room left: drop a field, "text" last
            others = [k for k in sizes if k != "text"]
            del out[max(others, key=sizes.get) if others else key]
            continue
        head = prefix_within(v, budget)
        out[key] = head + MARKER % (len(head), len(v), limit)
    return {"type": obj.get("type"), "truncated": True}


def lines(obj, limit=None):
    """The encoded line(s) of one event, each within the limit."""
    limit = limit or EVENT_MAX
    data = encode(obj)
    if len(data) <= limit:
        return [data]
    if obj.get("type") in ("stdout", "stderr") and isinstance(obj.get("text"), str):
        return split_text(obj, limit)
    return [encode(fit(obj, limit))]
