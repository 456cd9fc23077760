"""Side-by-side results of several runs (e.g. one per kernel): `cosim compare RUN_DIR...`."""

from __future__ import annotations

import json
from pathlib import Path


class CompareError(Exception):
    """A run directory has no readable summary.json."""


def load_summary(run_dir: Path) -> dict:
    f = Path(run_dir) / "summary.json"
    try:
        return json.loads(f.read_text())
    except OSError as e:
        raise CompareError(f"{f}: {e.strerror}") from None
    except ValueError:
        raise CompareError(f"{f}: not JSON") from None


def side_by_side(summaries: list[dict]) -> str:
    """A markdown table: one row per test, one column per run (labelled by kernel)."""
    cols = [s.get("kernel", "?") for s in summaries]
    names: list[str] = []
    for s in summaries:
        for t in s.get("tests", []):
            if t["name"] not in names:
                names.append(t["name"])
    status = [{t["name"]: t["status"] for t in s.get("tests", [])} for s in summaries]
    lines = ["| test | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(st.get(n, "-") for st in status) + " |")
    verdicts = []
    for s in summaries:
        a = s.get("analysis") or {}
        by_rule = (a.get("counts") or {}).get("by_rule") or {}
        found = ", ".join(f"{k}={v}" for k, v in by_rule.items() if v)
        verdicts.append(f"{a.get('verdict', 'n/a')}" + (f" ({found})" if found else ""))
    lines.append("| **analysis** | " + " | ".join(verdicts) + " |")
    lines.append("| **guest** | " + " | ".join(s.get("guest", "?") for s in summaries) + " |")
    return "\n".join(lines)
