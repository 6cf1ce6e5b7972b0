"""Airflow is an extra: the base package never imports it, and the provider's entry
point (``embedpipe_airflow.get_provider_info``) loads without it."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_base_package_never_imports_airflow():
    offenders = {
        str(path.relative_to(REPO)): sorted(m for m in imported_modules(path)
                                            if m.split(".")[0] in {"airflow", "embedpipe_airflow"})
        for package in ("pipeline", "transforms")
        for path in (REPO / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_provider_entry_point_loads_without_airflow():
    import embedpipe_airflow

    info = embedpipe_airflow.get_provider_info()
    assert info["package-name"] == "embedpipe"
    assert imported_modules(Path(embedpipe_airflow.__file__)) <= {"__future__"}
