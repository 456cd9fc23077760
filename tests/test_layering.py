"""The model depends on the memory interface only, never on the link (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

COSIM = Path(__file__).resolve().parents[1] / "cosim"
MODEL = [COSIM / "memory.py", *sorted((COSIM / "smmu").glob("*.py")),
         *sorted((COSIM / "endpoint").glob("*.py"))]


def imported_modules(source: str, package: str) -> set[str]:
    """Every module (and module.name) a source imports, relative imports resolved."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = parts[:len(parts) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
    return names


def imports_of(path: Path) -> set[str]:
    package = ".".join(path.relative_to(COSIM.parent).with_suffix("").parts[:-1])
    return imported_modules(path.read_text(), package)


def is_link(name: str) -> bool:
    return name == "cosim.link" or name.startswith("cosim.link.")


def test_model_imports_nothing_of_the_link() -> None:
    assert len(MODEL) > 10   # the scan found the packages
    bad = sorted(f"{path.relative_to(COSIM.parent)}: {name}"
                 for path in MODEL for name in imports_of(path) if is_link(name))
    assert not bad, "model code imports the link:\n" + "\n".join(bad)


def test_scan_sees_link_imports() -> None:
    # The scanner itself: it finds the backend's link imports, and relative ones.
    assert {"cosim.link.memory", "cosim.link.transport"} <= imports_of(COSIM / "backend.py")
    assert any(is_link(n) for n in imported_modules("from ..link import protocol",
                                                    "cosim.smmu"))
    assert any(is_link(n) for n in imported_modules("import cosim.link.transport as t",
                                                    "cosim.endpoint"))
    assert not any(is_link(n) for n in imported_modules("from . import linker", "cosim.smmu"))
