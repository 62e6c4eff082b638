"""``hrnet`` with one checkpoint save held between its two halves, for the kill test: the ``PAUSE_AT``-th save
of ``last.ckpt`` writes and flushes its temporary file, announces it in the ``PAUSE_MARKER`` file, and waits
there (before the rename) for the test's ``kill -9``. Everything else is the real command."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from hrnet.cli import main

_replace = os.replace
_saves = 0


def _paused_replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    global _saves
    if Path(dst).name == "last.ckpt":
        _saves += 1
        if _saves == int(os.environ["PAUSE_AT"]):
            Path(os.environ["PAUSE_MARKER"]).write_text(str(src))
            time.sleep(600)
    _replace(src, dst)


if __name__ == "__main__":
    os.replace = _paused_replace
    sys.exit(main(sys.argv[1:]))
