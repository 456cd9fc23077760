"""`cosim findings`: each recorded kernel finding as a page for the linux-arm-kernel / iommu
mailing lists (docs/findings/<id>.md).

A page is made from the expectation files alone: each kernel's record of the finding
(tests/expectations/<kernel>.toml: its tests, rules, driver lines, trace evidence) and the
finding's kernel-independent description (tests/expectations/findings/<id>.toml: what
happens, why, the guest's ioctl sequence, what a fix must achieve, what upstream knows). So
the committed pages can be checked against the files (`--check`). `--matrix DIR` adds the
cells of a matrix (or any run directories) that show the finding, with a trace excerpt of
the first; such a page is for sending, not for committing.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from . import expectations, launcher
from .setup import KERNEL_CHOICES

DESCRIPTIONS = expectations.DIR / "findings"
DESCRIPTION_KEYS = ("summary", "why", "sequence", "fix", "upstream")
# The invariants under test (README.md, docs/architecture.md), as a page states them.
INVARIANTS = {
    1: "after the attach returns, the device gets no translation from the domain it left",
    2: "after an ATC invalidation of a domain returns, the device holds no cached translation "
       "of that domain",
    3: "while an attach is in progress the device may see old and new translations mixed, but "
       "never an abort where both domains map",
}


class FindingsError(Exception):
    """Expectation files that do not make a page: one line for the user, exit 2."""


@dataclass
class KernelRecord:
    kernel: str                  # the kernel choice (file name)
    version: str
    tests: list[str]
    kernel_source: str
    architecture: str
    evidence: str


@dataclass
class Finding:
    id: str
    title: str
    invariant: int
    rules: list[str]
    kernels: list[KernelRecord] = field(default_factory=list)
    text: dict[str, str] = field(default_factory=dict)   # DESCRIPTION_KEYS -> prose

    @property
    def areas(self) -> list[str]:
        areas = (expectations.area_of(t) for k in self.kernels for t in k.tests)
        return list(dict.fromkeys(areas))


def _toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except OSError as e:
        raise FindingsError(f"{path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise FindingsError(f"{path}: not TOML ({e})") from None


def _kernel_files(directory: Path) -> list[Path]:
    order = {k: i for i, k in enumerate(KERNEL_CHOICES)}
    return sorted(directory.glob("*.toml"), key=lambda p: (order.get(p.stem, len(order)), p.stem))


def load_all(directory: Path = expectations.DIR) -> list[Finding]:
    """Every finding recorded in `directory`'s kernel files, with its description."""
    found: dict[str, Finding] = {}
    for path in _kernel_files(directory):
        data = _toml(path)
        for f in data.get("finding", []):
            fid = str(f.get("id", ""))
            if not fid:
                raise FindingsError(f"{path}: a [[finding]] has no id")
            rec = KernelRecord(path.stem, str(data.get("kernel_version", "")),
                               [str(t) for t in f.get("tests", [])],
                               str(f.get("kernel_source", "")).strip(),
                               str(f.get("architecture", "")).strip(),
                               str(f.get("evidence", "")).strip())
            head = (str(f.get("title", "")), int(f.get("invariant", 0)),
                    sorted(str(r) for r in f.get("rules", [])))
            if fid not in found:
                found[fid] = Finding(fid, *head)
            elif (found[fid].title, found[fid].invariant, found[fid].rules) != head:
                raise FindingsError(f"{path}: finding {fid} has another title, invariant or "
                                    f"rules than in {found[fid].kernels[0].kernel}.toml")
            found[fid].kernels.append(rec)
    for fid, finding in found.items():
        desc = directory / "findings" / f"{fid}.toml"
        if not desc.is_file():
            raise FindingsError(f"finding {fid} has no description: write {desc} "
                                f"({', '.join(DESCRIPTION_KEYS)})")
        data = _toml(desc)
        missing = [k for k in DESCRIPTION_KEYS if not str(data.get(k, "")).strip()]
        if missing:
            raise FindingsError(f"{desc}: no {', '.join(missing)}")
        finding.text = {k: str(data[k]).strip() for k in DESCRIPTION_KEYS}
    return list(found.values())


# -- the page ----------------------------------------------------------------------------------

def _kernel_name(k: KernelRecord) -> str:
    return f"{k.kernel} ({k.version})" if k.version else k.kernel


def _block(text: str) -> list[str]:
    return ["```", text, "```"]


def render(f: Finding, observed: list[str] | None = None) -> str:
    """The page of a finding; `observed` adds Markdown lines from a matrix (see observed())."""
    versions = ", ".join(k.version or k.kernel for k in f.kernels)
    out = [f"# {f.title}", "",
           "<!-- Generated by `cosim findings --write docs/findings` from tests/expectations/ "
           "(edit those files, not this page). -->", "",
           f"Suggested subject: `[BUG] iommu/arm-smmu-v3: {f.title[0].lower()}{f.title[1:]}`",
           "",
           f"Finding `{f.id}`; kernels: {versions}; invariant {f.invariant}: "
           f"{INVARIANTS.get(f.invariant, '(not one of the three)')}.", "",
           "## What happens", "", f.text["summary"], "",
           "## Kernels", "",
           "| kernel | guest tests that fail | analysis rules that fire |", "|---|---|---|"]
    for k in f.kernels:
        out.append(f"| {_kernel_name(k)} | {', '.join(f'`{t}`' for t in k.tests)} | "
                   f"{', '.join(f'`{r}`' for r in f.rules)} |")
    out += ["", "Recorded in " + ", ".join(f"`tests/expectations/{k.kernel}.toml`"
                                          for k in f.kernels)
            + "; `make test` fails when a kernel stops showing the finding or shows another.",
            "", "## Why", "", f.text["why"], "", "### The driver", ""]
    for k in f.kernels:
        out += [f"{_kernel_name(k)}:", "", *_block(k.kernel_source), ""]
    out += ["### The architecture", ""]
    archs = {k.architecture for k in f.kernels}
    if len(archs) == 1:
        out += [*_block(f.kernels[0].architecture), ""]
    else:
        for k in f.kernels:
            out += [f"{_kernel_name(k)}:", "", *_block(k.architecture), ""]
    out += ["## Trace excerpt", "",
            "From the cosim SMMU model's trace (`trace.cst`, docs/trace.md: one record per "
            "line, `#N` its line number).", ""]
    for k in f.kernels:
        out += [f"{_kernel_name(k)}:", "", *_block(k.evidence), ""]
    if observed:
        out += observed + [""]
    areas = ",".join(f.areas)
    out += ["## Reproducer", "",
            "cosim (this repository) boots the kernel in QEMU against a Python model of an "
            "SMMUv3 and an ATS-capable PCIe endpoint; the guest runs the test below and the "
            "trace analysis reports the violation (`runs/latest/report.txt`).", "",
            "```sh"]
    for k in f.kernels:
        out.append(f"make setup KERNEL={k.kernel} && .venv/bin/cosim run --kernel {k.kernel} "
                   f"--tests {areas}")
    out += ["```", "", "What the guest test does:", "", f.text["sequence"], "",
            "## What a fix has to achieve", "", f.text["fix"], "",
            "## Upstream", "", f.text["upstream"], ""]
    return "\n".join(out)


def observed(f: Finding, matrix_dir: Path) -> list[str]:
    """Markdown lines: the cells under `matrix_dir` that should show the finding, whether they
    did, and the trace timeline of the first violation that matched it."""
    from . import matrix
    try:
        results = matrix.collect([matrix_dir])
    except matrix.MatrixError as e:
        raise FindingsError(str(e)) from None
    keys = next((expectations.finding_keys({"rules": f.rules, "tests": k.tests})
                 for k in f.kernels), set())
    rows = [r for r in results if f.id in r.findings or f.id in r.missing]
    out = [f"## Observed in {matrix_dir}", "", "| kernel | mode | areas | shows it |",
           "|---|---|---|---|"]
    out += [f"| {r.cell.kernel} | {r.cell.mode} | {'+'.join(r.cell.areas)} | "
            f"{'yes' if f.id in r.findings else 'no'} |" for r in rows]
    for r in rows:
        if f.id not in r.findings:
            continue
        cell, summary = matrix.load_run(Path(r.run_dir))
        begins = matrix.tests_by_line(launcher.trace_of(Path(r.run_dir)))
        for v in (summary.get("analysis") or {}).get("violations", []):
            key = f"{v['rule']}@{matrix.test_at(begins, int(v.get('line') or 0))}"
            if key in keys and v.get("timeline"):
                out += ["", f"First matching violation in {r.run_dir} ({cell.kernel}, "
                        f"{cell.mode}): {v['rule']}: {v.get('message', '')}", "",
                        *_block("\n".join(v["timeline"]))]
                return out
    return out


def pages(found: list[Finding], matrix_dir: Path | None = None) -> list[tuple[str, str]]:
    """(file name, page text) for each finding."""
    return [(f"{f.id}.md", render(f, observed(f, matrix_dir) if matrix_dir else None))
            for f in found]


def write(made: list[tuple[str, str]], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, text in made:
        path = directory / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
        out.append(path)
    return out


def differing(made: list[tuple[str, str]], directory: Path) -> list[str]:
    """The pages missing from `directory` or not as generated, and its pages of no finding."""
    names = {name for name, _ in made}
    bad = [name for name, text in made
           if not (directory / name).is_file() or (directory / name).read_text() != text]
    bad += sorted(p.name for p in directory.glob("*.md") if p.name not in names)
    return bad
