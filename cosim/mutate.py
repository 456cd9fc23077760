"""`cosim mutate`: apply each driver mutant of a catalogue to a kernel source tree, rebuild it
incrementally through `cosim run`'s own `--kernel PATH` path, run the guest areas the mutant
declares, and tell which analysis rules (beyond the unmutated tree's own findings) and which
guest checks caught it.

A mutant is a `patch -p1` file whose header (lines before the diff) declares it:

    # Mutant: one line: what the driver now does wrong
    # Breaks: which invariant / spec rule that violates
    # Areas: replace,blocked          (the guest areas that exercise it)
    # Model-args: --cache-mode=caching (optional: run the model so)
    # Undetectable: why no trace rule can see it (optional; then a miss is not a failure)

The catalogue is mutants/linux-<VERSION.PATCHLEVEL>/ of the kernel (linux-6.12, linux-7.2): the
driver differs between versions, so each has its own. The tree is a git work tree. For a Debian
choice (debian-6.12, debian-7.2) the command makes a pristine copy of the unpacked source once,
under the cache, committed as is. It refuses a tree with uncommitted changes it did not make;
the mutant it applies is recorded in the tree's .git dir first and reverted afterwards on every
exit path (Ctrl-C included), and a later run reverts a mutant an earlier, killed run left behind.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import fnmatch
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import expectations, launcher
from .setup import (
    KERNEL_CHOICES,
    ROOT,
    SOURCE_PACKAGES,
    Products,
    SetupError,
    cache_dir,
    ensure,
)
from .trace import TraceError, TraceReader
from .trace.reader import numbered

CATALOGUE = ROOT / "mutants"
# Debian choices -> the folder of the catalogue written for that kernel's driver.
CATALOGUE_FOR = {"debian-6.12": "linux-6.12", "debian-7.2": "linux-7.2"}
# The Debian choices with a catalogue, and their source packages.
SOURCE_PKG = {k: SOURCE_PACKAGES[k] for k in CATALOGUE_FOR}
PRISTINE_MARK = "cosim-pristine"   # in .git: this tree is a copy the command made
APPLIED_MARK = "cosim-mutant"      # in .git: the text of the mutant currently applied
HEADER_KEYS = ("Mutant", "Breaks", "Areas", "Model-args", "Undetectable")


class MutateError(Exception):
    """Bad input or an unusable tree: one line for the user, exit 2."""


@dataclass(frozen=True)
class Mutant:
    name: str
    path: Path
    statement: str
    breaks: str
    areas: tuple[str, ...]
    model_args: tuple[str, ...] = ()
    undetectable: str = ""


def parse_mutant(path: Path) -> Mutant:
    """Read a mutant's header; MutateError when it lacks a field or names an unknown area."""
    try:
        text = path.read_text()
    except OSError as e:
        raise MutateError(f"cannot read mutant {path}: {e.strerror}") from None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith(("--- ", "diff ", "Index: ")):
            break
        m = re.match(r"#\s*([A-Za-z-]+):\s*(.*)$", line)
        if m and m.group(1) in HEADER_KEYS:
            fields[m.group(1)] = m.group(2).strip()
    for key in ("Mutant", "Breaks", "Areas"):
        if not fields.get(key):
            raise MutateError(f"mutant {path.name}: its header has no '# {key}:' line")
    if "\n+++ " not in text:
        raise MutateError(f"mutant {path.name}: no diff after the header")
    areas = tuple(a.strip() for a in fields["Areas"].split(",") if a.strip())
    bad = [a for a in areas if a not in launcher.AREAS]
    if bad or not areas:
        raise MutateError(f"mutant {path.name}: unknown area(s) {', '.join(bad) or '(none)'} in "
                          f"'# Areas:' (choose from {', '.join(launcher.AREAS)})")
    return Mutant(path.stem, path, fields["Mutant"], fields["Breaks"], areas,
                  tuple(fields.get("Model-args", "").split()), fields.get("Undetectable", ""))


def tree_version(tree: Path) -> str:
    """VERSION.PATCHLEVEL from a kernel tree's top Makefile ("7.2"); "" when it has none."""
    try:
        head = (tree / "Makefile").read_text(errors="replace")[:4000]
    except OSError:
        return ""
    v = re.search(r"^VERSION\s*=\s*(\d+)\s*$", head, re.M)
    p = re.search(r"^PATCHLEVEL\s*=\s*(\d+)\s*$", head, re.M)
    return f"{v.group(1)}.{p.group(1)}" if v and p else ""


def catalogue_folder(kernel: str) -> Path:
    """The catalogue written for the kernel's driver: a Debian choice's own; for a source tree,
    the one of its VERSION.PATCHLEVEL when there is one (the mutants are written against one
    driver version and do not apply to another), else 6.12's."""
    if kernel in CATALOGUE_FOR:
        return CATALOGUE / CATALOGUE_FOR[kernel]
    version = tree_version(Path(kernel).expanduser())
    if version and (CATALOGUE / f"linux-{version}").is_dir():
        return CATALOGUE / f"linux-{version}"
    return CATALOGUE / "linux-6.12"


def load_catalogue(kernel: str, pattern: str | None) -> list[Mutant]:
    """The mutants matching `pattern`: comma-separated globs, each on the names in the kernel's
    catalogue folder, or (with a '/' or ending in .patch) on file paths; sorted by name."""
    folder = catalogue_folder(kernel)
    paths: set[Path] = set()
    for glob in (pattern or "*").split(","):
        glob = glob.strip()
        if "/" in glob or glob.endswith(".patch"):
            base = Path("/") if glob.startswith("/") else Path()
            found = {p for p in base.glob(glob.lstrip("/"))}
        else:
            found = {p for p in folder.glob("*.patch") if fnmatch.fnmatch(p.stem, glob)}
        if not found:
            raise MutateError(f"no mutant matches {glob}"
                              + ("" if "/" in glob else f" in {folder}"))
        paths |= found
    return [parse_mutant(p) for p in sorted(paths, key=lambda p: p.stem)]


# -- the tree ----------------------------------------------------------------------------------

def _git(tree: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True,
                          check=check)


def unpacked_source(choice: str) -> Path | None:
    """The unpacked Debian source of a choice under the cache (`cosim setup` unpacks it)."""
    srcs = sorted(p.parent for p in (cache_dir() / "src").glob(f"{SOURCE_PKG[choice]}-*/.unpacked"))
    return srcs[-1] if srcs else None


def pristine_copy(choice: str, say: Callable[[str], None] = print) -> Path:
    """The command's own pristine git copy of a Debian source choice (made once)."""
    src = unpacked_source(choice)
    if src is None:
        raise MutateError(f"{SOURCE_PKG[choice]} is not unpacked under {cache_dir() / 'src'}; "
                          f"run `cosim setup --kernel {choice}` first")
    dest = cache_dir() / "mutate" / src.name
    if (dest / ".git" / PRISTINE_MARK).exists():
        return dest
    say(f"==> mutate: making a pristine git copy of {src} at {dest} (once)")
    tmp = dest.with_name(dest.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", str(src), str(tmp)], check=True)
    (tmp / ".unpacked").unlink(missing_ok=True)
    _git(tmp, "init", "-q")
    # Debian's top-level .gitignore ignores everything ("/*"): add with -f.
    _git(tmp, "add", "-f", "-A", ".")
    _git(tmp, "-c", "user.name=cosim mutate", "-c", "user.email=cosim@localhost",
         "commit", "-q", "-m", f"pristine {src.name} (cosim mutate)")
    (tmp / ".git" / PRISTINE_MARK).write_text(f"{src}\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def resolve_tree(kernel: str, say: Callable[[str], None] = print) -> Path:
    """The git work tree to mutate: a Debian choice's pristine copy, or the user's tree."""
    if kernel in SOURCE_PKG:
        return pristine_copy(kernel, say)
    if kernel in KERNEL_CHOICES:
        raise MutateError(f"--kernel {kernel} is a binary kernel; mutants need a source tree")
    tree = Path(kernel).expanduser()
    if not tree.is_dir():
        raise MutateError(f"--kernel {kernel}: not a directory (give a kernel source tree "
                          "or debian-6.12)")
    tree = tree.resolve()
    if not (tree / "Makefile").is_file() or not (tree / "arch" / "arm64").is_dir():
        raise MutateError(f"--kernel {kernel}: not a kernel source tree (no Makefile or "
                          "arch/arm64)")
    r = _git(tree, "rev-parse", "--show-toplevel", check=False)
    if r.returncode != 0 or Path(r.stdout.strip()).resolve() != tree:
        raise MutateError(f"--kernel {kernel}: not the top of a git work tree (the command "
                          "needs git to tell its own changes from yours)")
    return tree


def _changes(tree: Path) -> list[str]:
    r = _git(tree, "status", "--porcelain", "--untracked-files=no")
    return [ln for ln in r.stdout.splitlines() if ln.strip()]


def ensure_clean(tree: Path, say: Callable[[str], None] = print) -> None:
    """Revert a mutant an earlier run left applied; refuse any other uncommitted change."""
    mark = tree / ".git" / APPLIED_MARK
    if mark.exists():
        say(f"==> mutate: reverting the mutant an earlier run left applied ({mark})")
        _patch(tree, mark.read_text(), reverse=True, check=False)
        mark.unlink()
    changed = _changes(tree)
    if changed:
        raise MutateError(f"{tree} has uncommitted changes the command did not make "
                          f"({changed[0].strip()}{', ...' if len(changed) > 1 else ''}); "
                          "commit or stash them first")


def _patch(tree: Path, text: str, reverse: bool = False, dry_run: bool = False,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["patch", "-p1", "-s", "--no-backup-if-mismatch", "-r", "-"]
    cmd += ["-R"] if reverse else ["--forward"]
    cmd += ["--dry-run"] if dry_run else []
    r = subprocess.run(cmd, cwd=tree, input=text, capture_output=True, text=True)
    if check and r.returncode != 0:
        what = "revert" if reverse else "apply"
        msg = (r.stdout + r.stderr).strip().splitlines()
        why = msg[0] if msg else "patch failed"
        raise MutateError(f"cannot {what} the mutant in {tree}: {why}")
    return r


def check_applies(tree: Path, mutants: list[Mutant]) -> None:
    for m in mutants:
        r = _patch(tree, m.path.read_text(), dry_run=True, check=False)
        if r.returncode != 0:
            raise MutateError(f"mutant {m.name} does not apply cleanly to {tree}")


@contextmanager
def applied(tree: Path, mutant: Mutant) -> Iterator[None]:
    """The mutant applied for the block; reverted however the block ends."""
    text = mutant.path.read_text()
    mark = tree / ".git" / APPLIED_MARK
    mark.write_text(text)  # first: a killed run's successor knows what to revert
    try:
        _patch(tree, text)
        yield
    finally:
        _patch(tree, text, reverse=True, check=False)
        if not _changes(tree):
            mark.unlink(missing_ok=True)


# -- runs and findings -------------------------------------------------------------------------

@dataclass
class RunFacts:
    """What one guest run showed: analysis findings (rule@test) and failed guest checks."""
    run_dir: str
    guest: str
    findings: dict[str, str] = field(default_factory=dict)  # "rule@test" -> evidence line
    failed: list[str] = field(default_factory=list)         # TAP names that failed / errored
    verdict: str = ""                                       # the analysis verdict
    # Per area, whether any of its tests ran (passed or failed), and why the first one that
    # did not run was left out: a mutant whose areas ran nothing is not "missed".
    ran: dict[str, bool] = field(default_factory=dict)
    not_run: dict[str, str] = field(default_factory=dict)


def tests_by_line(trace: Path) -> list[tuple[int, str]]:
    """(line, test label) for each test-begin marker of the trace, in file order: the line
    (record number, in a binary trace) that findings cite."""
    out: list[tuple[int, str]] = []
    try:
        with TraceReader(trace) as reader:
            for n, rec in numbered(reader):
                if rec["k"] == "marker" and rec.get("tag") == "test-begin":
                    out.append((n, str(rec.get("label") or "?")))
    except TraceError:
        pass
    return out


def test_at(begins: list[tuple[int, str]], line: int) -> str:
    """The test a trace line belongs to, by its family: the label's first word, so the ATS and
    untranslated variants of a test ("replace ats", "replace") are one. A recorded finding
    spans both variants, and which of them shows it in one run is chance."""
    name = "-"
    for n, label in begins:
        if n > line:
            break
        name = label
    return name.split()[0] if name.split() else "-"


def facts_from_summary(summary: dict, begins: list[tuple[int, str]]) -> RunFacts:
    """RunFacts of a launcher summary.json; `begins` from tests_by_line of its trace."""
    facts = RunFacts(str(summary.get("run_dir", "")), str(summary.get("guest", "")))
    analysis = summary.get("analysis") or {}
    facts.verdict = str(analysis.get("verdict", "none"))
    for v in analysis.get("violations", []):
        key = f"{v['rule']}@{test_at(begins, int(v.get('line') or 0))}"
        if key not in facts.findings:
            facts.findings[key] = _evidence(v)
    facts.failed = [t["name"] for t in summary.get("tests", [])
                    if t.get("status") in ("fail", "error")]
    for t in summary.get("tests", []):
        area = str(t.get("area") or str(t.get("name", "")).split("/")[0])
        ran = t.get("status") in ("pass", "fail")
        facts.ran[area] = facts.ran.get(area, False) or ran
        if not ran and area not in facts.not_run:
            facts.not_run[area] = f"{t.get('name')}: {t.get('status')} {t.get('reason', '')}"
    return facts


def recorded_findings(kernel: str) -> set[str]:
    """The kernel's recorded real findings (tests/expectations/<kernel>.toml) as rule@test
    keys: a guest test "replace/replace_ats" is the family "replace" of its trace labels."""
    if kernel not in KERNEL_CHOICES or not expectations.available(kernel):
        return set()
    out: set[str] = set()
    for f in expectations.load(kernel).findings:
        out |= expectations.finding_keys(f)
    return out


def _evidence(v: dict) -> str:
    marked = [ln[2:] for ln in v.get("timeline", []) if ln.startswith("> ")]
    return (marked[0] if marked else f"#{v.get('line')}") + f"  ({v.get('message', '')})"


@dataclass
class Row:
    mutant: str
    statement: str
    areas: list[str]
    verdict: str   # caught | guest-only | missed | undetectable | error
    rules: list[str]
    checks: list[str]
    evidence: str
    run_dir: str = ""
    note: str = ""


def classify(m: Mutant, facts: RunFacts | None, baseline: RunFacts | None,
             error: str = "", recorded: frozenset[str] = frozenset()) -> Row:
    """One table row: the mutant's findings and failed checks beyond the baseline's (its run
    and the kernel's `recorded` findings)."""
    if facts is None or baseline is None:
        return Row(m.name, m.statement, list(m.areas), "error", [], [], "", note=error)
    present = [a for a in m.areas if a in facts.ran]
    if present and not any(facts.ran[a] for a in present):
        # Nothing of the mutant's areas ran (a module that did not build, an unsupported
        # uAPI): the mutant was never exercised, which says nothing about the analysis.
        why = "; ".join(facts.not_run[a].strip() for a in present)
        return Row(m.name, m.statement, list(m.areas), "error", [], [], "", facts.run_dir,
                   note=f"its areas ran no test on this kernel: {why}")
    new = {k: e for k, e in facts.findings.items()
           if k not in baseline.findings and k not in recorded}
    rules = sorted({k.split("@", 1)[0] for k in new})
    checks = [c for c in facts.failed if c not in baseline.failed]
    if facts.guest != "booted":
        checks.append(f"guest:{facts.guest}")
    evidence = ""
    if new:
        first = sorted(new.items(), key=lambda kv: _line_of(kv[1]))[0]
        evidence = f"{first[0]}: {first[1]}"
    if rules:
        verdict = "caught"
    elif m.undetectable:
        verdict = "undetectable"
    elif checks:
        verdict = "guest-only"
    else:
        verdict = "missed"
    return Row(m.name, m.statement, list(m.areas), verdict, rules, checks, evidence,
               facts.run_dir, m.undetectable or error)


def _line_of(evidence: str) -> int:
    m = re.match(r"#(\d+)", evidence)
    return int(m.group(1)) if m else 1 << 62


def exit_code(rows: list[Row]) -> int:
    return 0 if rows and all(r.verdict in ("caught", "undetectable") for r in rows) else 1


def _checks_cell(checks: list[str], limit: int = 3) -> str:
    """The failed checks, the first few named (a write_entry mutant fails ~20 KUnit cases)."""
    if len(checks) <= limit:
        return ", ".join(checks) or "-"
    return ", ".join(checks[:limit]) + f" (+{len(checks) - limit} more)"


def render_table(rows: list[Row], markdown: bool = False) -> str:
    head = ["mutant", "verdict", "rules fired (beyond baseline)", "guest checks failed",
            "first evidence"]
    body = [[r.mutant, r.verdict, ", ".join(r.rules) or "-", _checks_cell(r.checks),
             r.evidence or r.note or "-"] for r in rows]
    if markdown:
        esc = [[c.replace("|", "\\|") for c in row] for row in body]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in esc]) + "\n"
    width = [max(len(head[i]), *(len(row[i]) for row in body)) if body else len(head[i])
             for i in range(4)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head[:4], width, strict=True)) + "  " + head[4]]
    for row in body:
        ev = row[4] if len(row[4]) <= 160 else row[4][:157] + "..."
        out.append("  ".join(c.ljust(w) for c, w in zip(row[:4], width, strict=True)) + "  " + ev)
    return "\n".join(out) + "\n"


# -- the command -------------------------------------------------------------------------------

@dataclass
class Options:
    kernel: str
    mutants: str | None
    tests: list[str] | None
    model_args: list[str]
    runs_dir: Path
    replaces: int = 50
    timeout: float = 1800.0


def _run(products: Products, areas: list[str], model_args: list[str], opts: Options,
         runs_dir: Path, echo: bool) -> RunFacts:
    cfg = launcher.RunConfig(products=products, tests=areas, runs_dir=runs_dir,
                             timeout=opts.timeout, model_args=model_args,
                             test_args={"replace": f"--count {opts.replaces}"}, echo=echo)
    out = launcher.execute(cfg)
    if out.guest == "interrupted":
        raise KeyboardInterrupt
    summary = json.loads((out.run_dir / "summary.json").read_text())
    return facts_from_summary(summary, tests_by_line(launcher.trace_of(out.run_dir)))


def _areas(m: Mutant, opts: Options) -> list[str]:
    # The boot log's KUnit results come free with every boot: always read them.
    areas = list(opts.tests) if opts.tests else list(m.areas)
    return areas + ([] if "kunit" in areas else ["kunit"])


@contextmanager
def tree_lock(kernel: str, say: Callable[[str], None] = print) -> Iterator[None]:
    """One `cosim mutate` per kernel tree at a time: two would apply, build and revert mutants
    in the same work tree under each other (and make the pristine copy twice)."""
    key = kernel if kernel in SOURCE_PKG else str(Path(kernel).expanduser().resolve())
    locks = cache_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(key.encode()).hexdigest()[:16]
    with open(locks / f"mutate-{name}.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"==> mutate: waiting for another cosim mutate on {kernel} to finish")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def execute(opts: Options, say: Callable[[str], None] = print) -> tuple[list[Row], Path]:
    """Run the catalogue; returns the rows and the directory the table was written to."""
    mutants = load_catalogue(opts.kernel, opts.mutants)
    with tree_lock(opts.kernel, say):
        return _execute(opts, mutants, say)


def _execute(opts: Options, mutants: list[Mutant],
             say: Callable[[str], None]) -> tuple[list[Row], Path]:
    tree = resolve_tree(opts.kernel, say)
    ensure_clean(tree, say)
    check_applies(tree, mutants)
    out_dir = opts.runs_dir / f"mutate-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out_dir.mkdir(parents=True, exist_ok=False)
    rows: list[Row] = []
    recorded = frozenset(recorded_findings(opts.kernel))

    def on_signal(signum, frame):  # noqa: ARG001 - SIGTERM/SIGHUP end the run like Ctrl-C
        raise KeyboardInterrupt

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        # One baseline per set of model options, over every area its mutants run: findings
        # are keyed by test, so a test's baseline does not depend on the other areas run.
        groups: dict[tuple[str, ...], list[str]] = {}
        for m in mutants:
            key = tuple(opts.model_args) + m.model_args
            groups.setdefault(key, [])
            groups[key] += [a for a in _areas(m, opts) if a not in groups[key]]
        say(f"==> mutate: building the unmutated tree {tree}")
        products = ensure(str(tree), quiet=True)
        baselines: dict[tuple[str, ...], RunFacts] = {}
        for i, (margs, areas) in enumerate(groups.items()):
            say(f"==> mutate: baseline {i + 1}/{len(groups)}: {','.join(areas)}"
                + (f" (model {' '.join(margs)})" if margs else ""))
            baselines[margs] = _run(products, areas, list(margs), opts,
                                    out_dir / f"baseline-{i + 1}", echo=False)
            b = baselines[margs]
            say(f"    baseline: guest {b.guest}, findings {', '.join(sorted(b.findings)) or '-'}"
                f", failed checks {', '.join(b.failed) or '-'}")
        _write(out_dir, rows, baselines, tree)
        for m in mutants:
            margs = tuple(opts.model_args) + m.model_args
            say(f"==> mutate: {m.name}: {m.statement}")
            try:
                with applied(tree, m):
                    products = ensure(str(tree), quiet=True)
                    facts = _run(products, _areas(m, opts), list(margs), opts, out_dir / m.name,
                                 echo=False)
                row = classify(m, facts, baselines[margs], recorded=recorded)
            except SetupError as e:
                row = classify(m, None, None, error=f"build failed: {e}")
            rows.append(row)
            say(f"    {row.verdict}: rules {', '.join(row.rules) or '-'}; checks "
                f"{', '.join(row.checks) or '-'}")
            _write(out_dir, rows, baselines, tree)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return rows, out_dir


def _rejudge(run_parent: Path) -> RunFacts | None:
    """The facts of one earlier run (`<dir>/latest`), with its trace analysed again by the
    analysis as it is now; its summary.json and report.txt are rewritten to match."""
    run_dir = (run_parent / "latest").resolve() if (run_parent / "latest").exists() else None
    if run_dir is None or not (run_dir / "summary.json").is_file():
        return None
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["analysis"] = launcher._analyze(run_dir)
    tmp = run_dir / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, run_dir / "summary.json")
    return facts_from_summary(summary, tests_by_line(launcher.trace_of(run_dir)))


def reanalyze(out_dir: Path, kernel: str, say: Callable[[str], None] = print
              ) -> tuple[list[Row], Path]:
    """Judge an earlier `cosim mutate` directory again with today's analysis: no build, no
    guest; every run's trace is analysed anew and the table rewritten in place."""
    doc_path = out_dir / "mutate.json"
    try:
        doc = json.loads(doc_path.read_text())
        names = [r["mutant"] for r in doc["mutants"]]
        base_args = [tuple(b.get("model_args", [])) for b in doc["baselines"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MutateError(f"{doc_path}: not a cosim mutate result ({e})") from e
    catalogue = {m.name: m for m in load_catalogue(kernel, None)}
    unknown = [n for n in names if n not in catalogue]
    if unknown:
        raise MutateError(f"{unknown[0]} is not in the {kernel} catalogue "
                          f"({catalogue_folder(kernel)}): give the --kernel the run used")
    baselines: dict[tuple[str, ...], RunFacts] = {}
    for i, margs in enumerate(base_args):
        say(f"==> mutate: re-analysing baseline {i + 1}/{len(base_args)}")
        facts = _rejudge(out_dir / f"baseline-{i + 1}")
        if facts is None:
            raise MutateError(f"{out_dir / f'baseline-{i + 1}'}: the baseline run is missing")
        baselines[margs] = facts
    recorded = frozenset(recorded_findings(kernel))
    rows: list[Row] = []
    for name in names:
        m = catalogue[name]
        # The baseline run with this mutant's model options: the longest whose options end
        # with the mutant's own (the run's --model-arg come first).
        fits = [a for a in base_args if a[len(a) - len(m.model_args):] == m.model_args]
        margs = max(fits, key=len) if fits else None
        say(f"==> mutate: re-analysing {name}")
        facts = _rejudge(out_dir / name)
        row = classify(m, facts, baselines.get(margs) if margs is not None else None,
                       error="" if facts is not None else "no run of it in this directory",
                       recorded=recorded)
        rows.append(row)
        say(f"    {row.verdict}: rules {', '.join(row.rules) or '-'}; checks "
            f"{', '.join(row.checks) or '-'}")
    _write(out_dir, rows, baselines, Path(str(doc.get("tree", ""))))
    return rows, out_dir


def _write(out_dir: Path, rows: list[Row], baselines: dict[tuple[str, ...], RunFacts],
           tree: Path) -> None:
    doc = {"tree": str(tree),
           "baselines": [{"model_args": list(k), **asdict(v)} for k, v in baselines.items()],
           "mutants": [asdict(r) for r in rows], "exit_code": exit_code(rows)}
    (out_dir / "mutate.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = ["# cosim mutate", "", f"Tree: `{tree}`", ""]
    for k, b in baselines.items():
        md.append(f"Baseline{' (model ' + ' '.join(k) + ')' if k else ''}: findings "
                  f"{', '.join(sorted(b.findings)) or '-'}; failed checks "
                  f"{', '.join(b.failed) or '-'}")
    md += ["", render_table(rows, markdown=True)]
    (out_dir / "mutate.md").write_text("\n".join(md))
