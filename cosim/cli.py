"""The `cosim` command: run, model, analyze, trace, compare, setup, mutate, matrix, findings."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from . import launcher
from .setup import KERNEL_CHOICES, SetupError, check_kernel_choice, ensure, ensure_all


def _tests_arg(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if names == ["all"]:
        return list(launcher.AREAS)
    known = launcher.AREAS + launcher.EXTRA_AREAS
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown test area(s) {', '.join(bad) or '(none)'}; choose from "
            f"{', '.join(known)} or 'all'")
    return names


# What a guest test's own options may hold: they go onto the guest shell's command line.
_GUEST_ARG_CHARS = re.compile(r"[A-Za-z0-9_=.,:/+ -]*")


def _test_args_arg(text: str) -> tuple[str, str]:
    """AREA=ARGS: options for one area's guest test binary (its own --help lists them)."""
    area, sep, args = text.partition("=")
    area = area.strip()
    areas = [a for a in launcher.AREAS + launcher.EXTRA_AREAS if a != "kunit"]
    if not sep or area not in areas:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give AREA=ARGS with AREA one of {', '.join(areas)}")
    if not _GUEST_ARG_CHARS.fullmatch(args):
        raise argparse.ArgumentTypeError(
            f"{text!r}: guest test options may hold only letters, digits, spaces and _=.,:/+-")
    return area, args.strip()


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return v


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="cosim", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="boot the guest against the model and run guest tests")
    r.add_argument("--kernel", default="debian-6.12",
                   help=f"{', '.join(KERNEL_CHOICES)}, or a path to an arm64 Image or to a "
                        "kernel source tree (built with kernel/cosim.config)")
    r.add_argument("--tests", type=_tests_arg, default=list(launcher.AREAS),
                   help=f"comma-separated areas: {', '.join(launcher.AREAS)} (default all: "
                        f"these), or {', '.join(launcher.EXTRA_AREAS)} (only when named)")
    r.add_argument("--smmu", choices=("cosim", "builtin"), default="cosim",
                   help="cosim: the Python SMMU model and endpoint (default); "
                        "builtin: QEMU's own smmuv3, no endpoint")
    r.add_argument("--interactive", action="store_true", help="leave the user at the guest shell")
    r.add_argument("--timeout", type=_positive, default=900.0, help="whole-run timeout, seconds")
    r.add_argument("--boot-timeout", type=_positive, default=180.0)
    r.add_argument("--runs-dir", type=Path, default=Path("runs"))
    r.add_argument("--smp", type=int, default=2)
    r.add_argument("--replaces", type=int, default=200, help="replaces in the 'replace' area")
    r.add_argument("--test-args", type=_test_args_arg, action="append", default=[],
                   metavar="AREA=ARGS",
                   help="options for one area's guest test (repeatable), e.g. "
                        "--test-args 'sva=--count 20'; after --replaces for replace")
    r.add_argument("--append", default="", help="extra kernel command line")
    r.add_argument("--model-arg", action="append", default=[], metavar="ARG",
                   help="pass ARG to the model (repeatable), e.g. --model-arg=--inv-ignore")
    r.add_argument("--quiet-setup", action="store_true", help="print set-up output only on failure")
    r.add_argument("--analyze-after", action="store_true",
                   help="analyse the trace once the run is over, not while the model writes "
                        "it (the same verdict; the guest then has both cores to itself)")

    m = sub.add_parser("model", help="run the model process (the launcher starts it for you)")
    try:
        from .backend import add_model_arguments
        add_model_arguments(m)
    except ImportError as e:
        m.set_defaults(_model_missing=str(e))

    from .analyzer.cli import DESCRIPTION, add_arguments
    a = sub.add_parser("analyze", help="check a trace against the invariants",
                       description=DESCRIPTION)
    add_arguments(a)

    from .trace import export
    t = sub.add_parser("trace", help="convert a trace between the binary format and JSON lines")
    tsub = t.add_subparsers(dest="trace_cmd", required=True)
    export.add_arguments(tsub.add_parser("export", help="write a trace (either format) as "
                                         "JSON lines (--jsonl) or binary (--cst)",
                                         description=export.__doc__))

    c = sub.add_parser("compare", help="results of several runs side by side (markdown)")
    c.add_argument("runs", nargs="+", type=Path, help="run directories (runs/<timestamp>)")

    s = sub.add_parser("setup", help="build (or take from cache) QEMU, kernel and initramfs")
    s.add_argument("--kernel", default="debian-6.12",
                   help="a kernel choice or path, or several, comma-separated (each built in "
                        "turn; the Debian sources all fetched in the background from the start)")

    mu = sub.add_parser("mutate", help="run driver mutants (mutants/) and tell which the "
                                       "analysis catches (docs/mutants.md)")
    mu.add_argument("--kernel", default="debian-6.12",
                    help="debian-6.12 / debian-7.2 (a pristine copy made under the cache), or "
                         "a clean git work tree of a kernel source")
    mu.add_argument("--mutants", metavar="GLOB", default=None,
                    help="mutant names (e.g. '0[1-3]-*') in the kernel's catalogue, or a path "
                         "glob of .patch files (default: the whole catalogue)")
    mu.add_argument("--tests", type=_tests_arg, default=None,
                    help="areas to run for every mutant (default: each mutant's own Areas)")
    mu.add_argument("--model-arg", action="append", default=[], metavar="ARG",
                    help="pass ARG to the model in every run, baseline included (repeatable)")
    mu.add_argument("--replaces", type=int, default=50, help="replaces in the 'replace' area")
    mu.add_argument("--timeout", type=_positive, default=1800.0, help="per-run timeout, seconds")
    mu.add_argument("--runs-dir", type=Path, default=Path("runs"))
    mu.add_argument("--reanalyze", type=Path, metavar="DIR", default=None,
                    help="no build or guest: judge the runs of an earlier runs/mutate-<ts> "
                         "again with the current analysis and rewrite its table")

    mx = sub.add_parser("matrix", help="the suite over kernels x cache modes x areas, one guest "
                                       "run per cell, in one table (docs/matrix.md)")
    mx.add_argument("--kernels", metavar="LIST", default=None,
                    help=f"comma-separated, from {', '.join(KERNEL_CHOICES)} (default: each "
                         "that builds here)")
    mx.add_argument("--modes", metavar="LIST", default=None,
                    help="the model's cache modes, comma-separated (default coherent,strict)")
    mx.add_argument("--areas", metavar="LIST", default=None,
                    help=f"one cell per area, comma-separated, from {', '.join(launcher.AREAS)}"
                         "; a+b is one cell running both (default: every area)")
    mx.add_argument("-j", "--jobs", metavar="N", default="1",
                    help="cells run at once (default 1: one guest takes about 2 cores)")
    mx.add_argument("--replaces", metavar="N", default="50", help="replaces in the 'replace' area")
    mx.add_argument("--timeout", type=_positive, default=1800.0, help="per-cell timeout, seconds")
    mx.add_argument("--runs-dir", type=Path, default=Path("runs"))
    mx.add_argument("--no-perfetto", action="store_true",
                    help="write no Perfetto file per cell (each costs a second analysis)")
    mx.add_argument("--collect", type=Path, nargs="+", metavar="DIR", default=None,
                    help="run nothing: build the table from the run directories at or under "
                         "DIR... (e.g. one CI job's per cell)")

    fd = sub.add_parser("findings", help="the recorded kernel findings as pages for the "
                                         "mailing list (docs/findings/)")
    fd.add_argument("--write", type=Path, metavar="DIR", default=None,
                    help="write DIR/<id>.md for each finding (default: list them)")
    fd.add_argument("--check", type=Path, metavar="DIR", default=None,
                    help="exit 1 when DIR's pages differ from what would be written")
    fd.add_argument("--matrix", type=Path, metavar="DIR", default=None,
                    help="a matrix or run directory: add the cells that show each finding")
    return ap


def print_summary(out: launcher.RunOutcome) -> None:
    print()
    print(f"Run: {out.run_dir}")
    print(f"Guest: {out.guest}")
    width = max((len(r.name) for r in out.results), default=10)
    for r in out.results:
        line = f"  {r.status.upper():11s} {r.name:{width}s}"
        if r.reason:
            line += f"  {r.reason}"
        print(line)
        if r.status in ("fail", "error"):
            for o in r.output[-15:]:
                print(f"      | {o}")
    counts = {}
    for r in out.results:
        counts[r.status] = counts.get(r.status, 0) + 1
    print("Results: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) if counts
          else "Results: none")
    if out.analysis is not None:
        print(f"Analysis: {out.analysis.get('verdict')}"
              + (f" ({out.analysis.get('why')})" if out.analysis.get("why") else ""))
        rep = out.run_dir / "report.txt"
        if rep.exists():
            # The report's head: totals, then one line per violation found.
            lines = rep.read_text().splitlines()
            head = [ln for ln in lines[1:4]] + [ln for ln in lines if ln.startswith("  [")][:12]
            for ln in head:
                print(f"  {ln.strip()}")
            print(f"  full report: {rep}")


def print_expectations(run_dir: Path) -> None:
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return
    exp = summary.get("expectations")
    if not exp:
        return
    if exp["match"]:
        print(f"Expectations: this run matches {exp['file']} exactly")
    else:
        print(f"Expectations: this run DIFFERS from {exp['file']}:")
        for m in exp["mismatches"]:
            print(f"  - {m}")
    for f in exp["findings"]:
        print(f"  known finding {f['id']} (invariant {f['invariant']}): {f['title']}")


def _area_args(replaces: int, given: list[tuple[str, str]]) -> dict[str, str]:
    """Each area's guest test options: --replaces for replace, then --test-args in order
    (the test's own parser takes the last of a repeated option)."""
    out = {"replace": f"--count {replaces}"}
    for area, args in given:
        out[area] = f"{out.get(area, '')} {args}".strip()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.cmd == "run":
        try:
            check_kernel_choice(args.kernel)
            products = ensure(args.kernel, quiet=args.quiet_setup)
        except SetupError as e:
            print(f"cosim run: {e}", file=sys.stderr)
            return 2
        cfg = launcher.RunConfig(products=products, tests=args.tests, smmu=args.smmu,
                                 timeout=args.timeout, boot_timeout=args.boot_timeout,
                                 interactive=args.interactive, runs_dir=args.runs_dir,
                                 smp=args.smp, model_args=args.model_arg, append=args.append,
                                 test_args=_area_args(args.replaces, args.test_args),
                                 kernel_choice=args.kernel,
                                 live_analysis=not args.analyze_after)
        try:
            out = launcher.execute(cfg)
        except launcher.RunError as e:
            print(f"cosim run: {e}", file=sys.stderr)
            return 2
        print_summary(out)
        print_expectations(out.run_dir)
        return out.exit_code
    if args.cmd == "model":
        if getattr(args, "_model_missing", None):
            print(f"cosim model: the model backend is not available: {args._model_missing}",
                  file=sys.stderr)
            return 2
        from .backend import run_model
        return run_model(args)
    if args.cmd == "analyze":
        from .analyzer.cli import run as analyze_run
        return analyze_run(args)
    if args.cmd == "trace":
        from .trace import export
        return export.run(args)
    if args.cmd == "compare":
        from .compare import CompareError, load_summary, side_by_side
        try:
            print(side_by_side([load_summary(r) for r in args.runs]))
        except CompareError as e:
            print(f"cosim compare: {e}", file=sys.stderr)
            return 2
        return 0
    if args.cmd == "mutate":
        return _mutate(args)
    if args.cmd == "matrix":
        return _matrix(args)
    if args.cmd == "findings":
        return _findings(args)
    if args.cmd == "setup":
        kernels = [k.strip() for k in args.kernel.split(",") if k.strip()]
        try:
            if not kernels:
                raise SetupError("--kernel: no kernel given")
            built = ensure_all(kernels)
        except SetupError as e:
            print(f"cosim setup: {e}", file=sys.stderr)
            return 2
        for p in built:
            print(f"qemu:      {p.qemu}\nkernel:    {p.image} ({p.kernel_version})\n"
                  f"modules:   {p.kmod_dir or '(none: not a source-built kernel)'}\n"
                  f"initramfs: {p.initramfs}")
        return 0
    return 2


def _mutate(args: argparse.Namespace) -> int:
    from . import mutate
    opts = mutate.Options(kernel=args.kernel, mutants=args.mutants, tests=args.tests,
                          model_args=args.model_arg, runs_dir=args.runs_dir,
                          replaces=args.replaces, timeout=args.timeout)
    if args.replaces < 1:
        print("cosim mutate: --replaces must be >= 1", file=sys.stderr)
        return 2
    try:
        if args.reanalyze is not None:
            rows, out_dir = mutate.reanalyze(args.reanalyze, args.kernel)
        else:
            rows, out_dir = mutate.execute(opts)
    except (mutate.MutateError, SetupError) as e:
        print(f"cosim mutate: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cosim mutate: interrupted; the applied mutant was reverted", file=sys.stderr)
        return 130
    print()
    print(mutate.render_table(rows), end="")
    print(f"Table: {out_dir / 'mutate.md'} and {out_dir / 'mutate.json'}")
    return mutate.exit_code(rows)


def _count(text: str, what: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{what} must be a whole number >= 1, not {text!r}")
    return n


def _matrix(args: argparse.Namespace) -> int:
    from . import matrix
    try:
        if args.collect is not None:
            given = [o for o, v in (("--kernels", args.kernels), ("--modes", args.modes),
                                    ("--areas", args.areas)) if v is not None]
            if given:
                raise matrix.MatrixError(f"--collect runs nothing: {', '.join(given)} "
                                         "cannot apply to it")
            results = matrix.collect(args.collect)
            out_dir = matrix.new_out_dir(args.runs_dir)
            matrix.write_table(out_dir, results)
        else:
            opts = matrix.Options(kernels=matrix.parse_kernels(args.kernels),
                                  modes=matrix.parse_modes(args.modes),
                                  areas=matrix.parse_areas(args.areas),
                                  jobs=_count(args.jobs, "-j"),
                                  replaces=_count(args.replaces, "--replaces"),
                                  runs_dir=args.runs_dir, timeout=args.timeout,
                                  perfetto=not args.no_perfetto,
                                  kernels_given=args.kernels is not None)
            results, out_dir = matrix.execute(opts)
    except (matrix.MatrixError, SetupError, ValueError) as e:
        print(f"cosim matrix: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cosim matrix: interrupted; every cell's guest was stopped", file=sys.stderr)
        return 130
    print()
    print(matrix.render_markdown(results, None), end="")
    print(f"Table: {out_dir / 'index.html'}, {out_dir / 'matrix.md'}, {out_dir / 'matrix.json'}")
    return matrix.exit_code(results)


def _findings(args: argparse.Namespace) -> int:
    from . import findings
    try:
        pages = findings.pages(findings.load_all(), matrix_dir=args.matrix)
        if args.check is not None:
            stale = findings.differing(pages, args.check)
            for name in stale:
                print(f"cosim findings: {args.check / name} is not what the expectation files "
                      f"give; run `cosim findings --write {args.check}`", file=sys.stderr)
            return 1 if stale else 0
        if args.write is not None:
            for p in findings.write(pages, args.write):
                print(p)
            return 0
    except findings.FindingsError as e:
        print(f"cosim findings: {e}", file=sys.stderr)
        return 2
    for name, _ in pages:
        print(name)
    return 0
