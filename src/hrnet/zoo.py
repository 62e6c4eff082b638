"""The model zoo as ``hrnet models`` prints it, stored with the package so that listing it imports no torch.

``zoo.json`` holds one row per preset (task, checkpoint family, where its checkpoints come from, default input,
params, MACs), counted once by :mod:`hrnet.models.complexity` (``python -m hrnet.zoo`` rewrites it);
``tests/test_models.py`` recounts every row and compares, so the file cannot drift from the presets.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

ZOO_FILE = Path(__file__).with_name("zoo.json")
GIGA_BINARY = 2**30


@functools.cache
def stored_rows() -> dict[str, dict[str, Any]]:
    """``{preset name: {task, family, source, input_size, params, macs}}`` in ``list_models()`` order."""
    return json.loads(ZOO_FILE.read_text(encoding="utf-8"))


def zoo_rows(task: str | None = None) -> list[dict[str, object]]:
    """One row per preset (of ``task``): name, task, params (M), GFLOPs (MACs / 2**30) at its default input."""
    return [{"name": name, "task": row["task"], "params_m": round(row["params"] / 1e6, 3),
             "gflops": round(row["macs"] / GIGA_BINARY, 2), "input": "{}x{}".format(*row["input_size"]),
             "checkpoints": row["source"]}
            for name, row in stored_rows().items() if task is None or row["task"] == task]


def choices(field: str) -> list[str]:
    """The sorted distinct values of ``field`` (``task``, ``family``) over the presets."""
    return sorted({row[field] for row in stored_rows().values()})


def count_row(name: str) -> dict[str, Any]:
    """Preset ``name``'s row counted now (builds the model on the meta device: about a second)."""
    from .models import PRESETS
    from .models.complexity import model_complexity

    preset, counted = PRESETS[name], model_complexity(name)
    return {"task": preset.task, "family": preset.family, "source": preset.source,
            "input_size": list(counted.input_size), "params": counted.params, "macs": counted.macs}


def write_zoo(path: Path = ZOO_FILE) -> None:
    """Count every preset and write ``path``, one preset per line."""
    from .models import list_models

    lines = [f" {json.dumps(name)}: {json.dumps(count_row(name))}" for name in list_models()]
    path.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")


if __name__ == "__main__":
    write_zoo()
