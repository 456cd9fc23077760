"""Compare two `cosim analyze --json` outputs of one trace (e.g. a reference taken with an
earlier analyzer and a new one): same verdict, same violations (rule, line, stream, attach,
count, message, entries, cited lines, timeline), same attaches, counts, notes and problems.

    .venv/bin/python bench/compare_analysis.py REF.json NEW.json

Prints each difference (at most 20 per section) and exits 0 when there is none, 1 otherwise.
"""

from __future__ import annotations

import json
import sys
from typing import Any

KEY = ("rule", "line", "sid", "ssid", "attach")


def _vkey(v: dict[str, Any]) -> tuple:
    return tuple(v.get(k) for k in KEY)


def compare(ref: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for field in ("verdict", "incomplete", "counts", "torn", "header", "notes", "problems"):
        if ref.get(field) != new.get(field):
            out.append(f"{field}: {json.dumps(ref.get(field))[:300]} != "
                       f"{json.dumps(new.get(field))[:300]}")
    for section in ("violations", "warnings"):
        a, b = ref.get(section, []), new.get(section, [])
        ka, kb = [_vkey(v) for v in a], [_vkey(v) for v in b]
        if ka != kb:
            sa, sb = set(ka), set(kb)
            only_ref = [k for k in ka if k not in sb]
            only_new = [k for k in kb if k not in sa]
            out.append(f"{section}: {len(a)} in ref, {len(b)} new; only in ref "
                       f"{only_ref[:20]}; only new {only_new[:20]}"
                       + ("; same set, other order" if sa == sb else ""))
        by_key = {_vkey(v): v for v in b}
        n = 0
        for v in a:
            w = by_key.get(_vkey(v))
            if w is None or w == v:
                continue
            diff = [f for f in sorted(set(v) | set(w)) if v.get(f) != w.get(f)]
            n += 1
            if n <= 20:
                out.append(f"{section} {_vkey(v)}: differs in " + ", ".join(
                    f"{f} ({json.dumps(v.get(f))[:200]} != {json.dumps(w.get(f))[:200]})"
                    for f in diff))
        if n > 20:
            out.append(f"{section}: {n - 20} more differing")
    a, b = ref.get("attaches", []), new.get("attaches", [])
    if len(a) != len(b):
        out.append(f"attaches: {len(a)} in ref, {len(b)} new")
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            n += 1
            if n <= 20:
                diff = [f for f in sorted(set(x) | set(y)) if x.get(f) != y.get(f)]
                out.append(f"attach #{x.get('n')}: differs in " + ", ".join(
                    f"{f} ({json.dumps(x.get(f))[:120]} != {json.dumps(y.get(f))[:120]})"
                    for f in diff))
    if n > 20:
        out.append(f"attaches: {n - 20} more differing")
    if not out and ref != new:
        out.append("outputs differ outside the compared fields")
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    with open(args[0]) as f:
        ref = json.load(f)
    with open(args[1]) as f:
        new = json.load(f)
    diffs = compare(ref, new)
    for d in diffs:
        print(d)
    verdict = "identical" if not diffs else f"{len(diffs)} difference(s)"
    print(f"{args[0]} vs {args[1]}: {verdict}")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
