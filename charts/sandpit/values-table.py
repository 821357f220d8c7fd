#!/usr/bin/env python3
"""The values table of docs/install.md, made from values.schema.json (the
descriptions, types and limits) and values.yaml (the defaults), so the two
cannot drift.

  charts/sandpit/values-table.py                 print the table
  charts/sandpit/values-table.py --write FILE    replace the table in FILE
  charts/sandpit/values-table.py --check FILE    exit 1 when FILE's table differs
                                                 (tests/integration/test_helm_values.py)

The table sits between the lines <!-- values-table:start --> and
<!-- values-table:end -->."""

import json
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
START, END = "<!-- values-table:start -->", "<!-- values-table:end -->"


def fmt_default(v):
    if v is None:
        return ""
    if v == "" or v == [] or v == {}:
        return f"`{json.dumps(v)}`"
    return "`" + json.dumps(v, separators=(", ", ": ")).replace("|", "\\|") + "`"


def fmt_type(node):
    t = node.get("type", "")
    t = "/".join(t) if isinstance(t, list) else t
    if "enum" in node:
        t = " \\| ".join(f"`{e}`" for e in node["enum"])
    extra = []
    if "minimum" in node and "maximum" in node:
        extra.append(f"{node['minimum']}–{node['maximum']}")
    elif "minimum" in node:
        extra.append(f"≥ {node['minimum']}")
    return t + (f" ({', '.join(extra)})" if extra else "")


def rows(schema, defaults, path=""):
    for key, node in schema.get("properties", {}).items():
        p = f"{path}.{key}" if path else key
        d = defaults.get(key) if isinstance(defaults, dict) else None
        if node.get("type") == "object" and node.get("properties"):
            yield from rows(node, d or {}, p)
            continue
        desc = node.get("description", "").replace("|", "\\|")
        yield f"| `{p}` | {fmt_type(node)} | {fmt_default(d)} | {desc} |"


def table():
    schema = json.loads((HERE / "values.schema.json").read_text())
    defaults = yaml.safe_load((HERE / "values.yaml").read_text())
    head = ["| value | type | default | description |", "|---|---|---|---|"]
    return "\n".join(head + [r for r in rows(schema, defaults) if not r.startswith("| `global`")]) + "\n"


def replace(text, tbl):
    a, b = text.index(START) + len(START), text.index(END)
    return text[:a] + "\n" + tbl + text[b:]


def main(argv):
    if len(argv) == 1:
        sys.stdout.write(table())
        return 0
    if len(argv) == 3 and argv[1] in ("--write", "--check"):
        f = Path(argv[2])
        text = f.read_text()
        new = replace(text, table())
        if argv[1] == "--write":
            f.write_text(new)
            return 0
        if new != text:
            print(f"{f}: the values table differs from values.schema.json/values.yaml; "
                  f"run charts/sandpit/values-table.py --write {f}", file=sys.stderr)
            return 1
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
