"""Entry points for programs: analyze a file, or a run directory's trace for the launcher."""

from __future__ import annotations

import os
from typing import Any

from cosim.trace import TraceError

from . import report
from .analysis import Analysis, run
from .engine import Ended, Progress


def analyze_file(path: str | os.PathLike[str], progress: Progress | None = None,
                 ended: Ended | None = None) -> Analysis:
    """Analyze one trace file; raises TraceError when it cannot be read as a trace. `ended`:
    the file is still being written until ended() is true (the records are read as they come)."""
    return run(path, progress, ended)


def analyze_path(path: str | os.PathLike[str],
                 report_path: str | os.PathLike[str] | None = None,
                 progress: Progress | None = None,
                 ended: Ended | None = None) -> dict[str, Any]:
    """The JSON summary of a trace (verdict 'unreadable' with `why` if it is not one); writes
    the text report to report_path when given. `ended`: as for analyze_file."""
    try:
        an = analyze_file(path, progress, ended)
    except TraceError as e:
        return {"verdict": "unreadable", "why": str(e)}
    if an.view.problems:
        more = f" (and {len(an.view.problems) - 1} more)" if len(an.view.problems) > 1 else ""
        return {"verdict": "unreadable", "why": f"{an.view.problems[0]}{more}"}
    if report_path is not None:
        with open(report_path, "w") as f:
            f.write(report.render(an, os.fspath(path)))
    summary = dict(an.to_json())
    if an.violations:
        summary["why"] = f"{len(an.violations)} violation(s)"
    elif an.incomplete:
        summary["why"] = "; ".join(an.incomplete)
    return summary
