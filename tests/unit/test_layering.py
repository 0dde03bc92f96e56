"""The packages below serving stay free of it: streaming workers, the feature store, models and data must run
without the web service (a worker image need not ship FastAPI), so none of them may import serving."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOWER_PACKAGES = ("data", "recsys", "feature_store", "streaming")


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_lower_packages_never_import_serving():
    offenders = []
    for package in LOWER_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            bad = sorted(m for m in _imported_modules(path) if m == "serving" or m.startswith("serving."))
            if bad:
                offenders.append(f"{path.relative_to(ROOT)}: {', '.join(bad)}")
    assert not offenders, "imports of serving below it:\n" + "\n".join(offenders)


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from serving.app import create_app\n")
    assert "serving.app" in _imported_modules(module)
