"""Guards that keep the package's shape (docs/layout.md): which layer may import which."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src"
PACKAGE = SRC / "hrnet"
SHARED = ("hrnet.models", "hrnet.keypoints", "hrnet.files", "hrnet.runtime", "hrnet.seeding")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (relative imports resolved), at any depth of the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(rule: str) -> list[str]:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        for target in imported_modules(path):
            if not within(target, "hrnet"):
                if rule == "models framework-free" and within(name, "hrnet.models") and within(target, "lightning"):
                    bad.append(f"{name} imports {target}")
                continue
            if rule == "tasks apart" and within(name, "hrnet.tasks") and within(target, "hrnet.tasks"):
                own, other = name.split(".")[:3], target.split(".")[:3]
                folders = {p.stem for p in (PACKAGE / "tasks").iterdir() if p.is_dir() and p.stem != "__pycache__"}
                if len(own) == 3 and len(other) == 3 and own[2] in folders and other[2] in folders and own != other:
                    bad.append(f"{name} imports {target}")
            elif rule == "shared below tasks" and any(within(name, s) for s in SHARED):
                if any(within(target, t) for t in ("hrnet.tasks", "hrnet.demos", "hrnet.synthetic", "hrnet.cli")):
                    bad.append(f"{name} imports {target}")
            elif rule == "only cli imports demos" and within(target, "hrnet.demos"):
                if not within(name, "hrnet.demos") and name not in ("hrnet.cli", "hrnet.tasks.registry", "hrnet"):
                    bad.append(f"{name} imports {target}")
    return bad


@pytest.mark.parametrize("rule", ["tasks apart", "shared below tasks", "only cli imports demos",
                                  "models framework-free"])
def test_layering(rule: str) -> None:
    assert violations(rule) == []


def test_the_guard_sees_a_violation(tmp_path, monkeypatch) -> None:
    """The checker itself: a task module importing another task is reported."""
    fake = tmp_path / "hrnet"
    for folder in ("tasks/pose", "tasks/segmentation", "models"):
        (fake / folder).mkdir(parents=True)
        (fake / folder / "__init__.py").write_text("")
    (fake / "tasks/pose/module.py").write_text("from ..segmentation.losses import CrossEntropy\n")
    (fake / "models/hrnet.py").write_text("from ..tasks.pose import module\nimport lightning\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert "hrnet.tasks.pose.module imports hrnet.tasks.segmentation.losses" in violations("tasks apart")
    assert "hrnet.models.hrnet imports hrnet.tasks.pose" in violations("shared below tasks")
    assert violations("models framework-free") == ["hrnet.models.hrnet imports lightning"]


def test_task_names_live_in_the_table() -> None:
    """Outside the task table, the task folders and the demos, no module compares against a task name."""
    from hrnet.tasks.registry import TASKS

    allowed = {"hrnet.tasks.registry"}
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if name in allowed or any(within(name, f"hrnet.tasks.{t}") for t in TASKS) or within(name, "hrnet.demos"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                for side in [node.left, *node.comparators]:
                    if isinstance(side, ast.Constant) and side.value in TASKS:
                        bad.append(f"{name}:{node.lineno} compares with {side.value!r}")
    assert bad == []


def test_import_hrnet_is_light_and_submodules_load_lazily() -> None:
    """``import hrnet`` then ``hrnet.inference.prepare`` works (as the README writes it) and imports
    neither Lightning nor the fast-inference modules before they are used."""
    code = ("import sys, hrnet; assert 'hrnet.inference' not in sys.modules and 'lightning' not in sys.modules; "
            "assert callable(hrnet.inference.prepare) and callable(hrnet.export.export_onnx); "
            "assert 'lightning' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    import hrnet

    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        hrnet.nonexistent  # noqa: B018
