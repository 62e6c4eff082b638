"""The docs stay true to the repository: README.md and docs/*.md link only to files (and headings) that
exist, and every ``hrnet ...`` command line they show uses only flags the command accepts."""

from __future__ import annotations

import argparse
import inspect
import re
from pathlib import Path

import pytest


def lightning_classes() -> list[type]:
    """The task LightningModules and DataModules (every entry of the task table) whose ``__init__``
    parameters are ``--model.X`` / ``--data.X``."""
    from hrnet.tasks.registry import TASKS

    return [cls for task in TASKS.values() for cls in task.lightning()]


ROOT = Path(__file__).resolve().parents[1]
LIGHTNING_COMMANDS = ("fit", "validate", "test")
# Lightning's CLI adds these itself (``--optimizer.X`` / ``--lr_scheduler.X`` take any class argument).
LIGHTNING_OWN_FLAGS = {"--config", "--print_config", "--ckpt_path", "--seed_everything", "--optimizer",
                       "--lr_scheduler", "-h", "--help", "--trainer", "--model", "--data"}
# What hrnet.tasks.lightning_cli.TaskCLI adds to Lightning's (test_task_cli_flags_exist checks them).
TASK_CLI_FLAGS = {"--checkpoint_every_n_steps"}

FENCE = re.compile(r"^ {0,3}(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
# `hrnet` in command position (optionally with a path, e.g. .venv/bin/hrnet), its root flags, the subcommand.
COMMAND = re.compile(r"(?:^|(?<=[;&|(]))\s*(?:\$\s+)?(?:[\w./-]*/)?hrnet((?:\s+-[\w-]+)*)\s+([A-Za-z][\w-]*)(.*)$")
FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w.-]*)")


def doc_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def split_fenced(text: str) -> tuple[str, list[str]]:
    """(the prose with fenced blocks blanked out, the fenced blocks' lines)."""
    prose, code, fence = [], [], None
    for line in text.splitlines():
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
            prose.append("")
        elif fence is not None:
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = None
            else:
                code.append(line)
            prose.append("")
        else:
            prose.append(line)
    return "\n".join(prose), code


def inline_code(prose: str) -> list[str]:
    """The contents of the `...` spans of the prose (a span may wrap within a paragraph)."""
    spans = []
    for m in re.finditer(r"(`+)(.+?)\1", prose, flags=re.S):
        if "\n\n" not in m.group(2):
            spans.append(" ".join(m.group(2).split()))
    return spans


def strip_inline_code(prose: str) -> str:
    return re.sub(r"(`+).+?\1", lambda m: "" if "\n\n" not in m.group(0) else m.group(0), prose, flags=re.S)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: rendered text, lower case, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links -> their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    prose, _ = split_fenced(path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    found = set()
    for line in prose.splitlines():
        m = HEADING.match(line)
        if m:
            slug = github_slug(m.group(2))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def link_problems(doc: Path, root: Path = ROOT) -> list[str]:
    """Every relative link of ``doc`` that points at nothing in ``root`` (or at a missing heading)."""
    name = doc.relative_to(root).as_posix()
    prose, _ = split_fenced(doc.read_text(encoding="utf-8"))
    problems = []
    for m in LINK.finditer(strip_inline_code(prose)):
        target = m.group(1)
        if re.match(r"^(https?:|mailto:)", target, flags=re.I) or target.startswith("#"):
            continue
        file_part, _, fragment = target.partition("#")
        resolved = (doc.parent / file_part).resolve()
        if not resolved.is_relative_to(root.resolve()) or not resolved.exists():
            problems.append(f"{name}: link [{target}] points at {file_part}, which does not exist in the repo")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            problems.append(f"{name}: link [{target}]: {file_part} has no heading with the anchor #{fragment}")
    return problems


def command_lines(text: str) -> list[str]:
    """``hrnet ...`` command lines in fenced blocks (backslash continuations joined, ``# comments`` dropped)
    and in inline code."""
    prose, code = split_fenced(text)
    joined, pending = [], ""
    for line in code:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    if pending:
        joined.append(pending)
    lines = [re.split(r"\s#", line, maxsplit=1)[0] for line in joined]
    return [line.strip() for line in lines + inline_code(prose) if COMMAND.search(line)]


def lightning_parameters() -> dict[str, set[str]]:
    """``{"trainer": Trainer's arguments, "model": the LightningModules', "data": the DataModules'}``."""
    from lightning.pytorch import LightningDataModule, Trainer

    params = {"trainer": set(inspect.signature(Trainer.__init__).parameters) - {"self"}, "model": set(), "data": set()}
    for cls in lightning_classes():
        group = "data" if issubclass(cls, LightningDataModule) else "model"
        params[group] |= set(inspect.signature(cls.__init__).parameters) - {"self"}
    return params


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def flag_problems(doc: Path, root: Path = ROOT) -> list[str]:
    """Every flag of an ``hrnet`` command line in ``doc`` that the command does not accept."""
    from hrnet.cli import build_parser

    parser = build_parser()
    commands = subparsers(parser)
    lightning = lightning_parameters()
    name = doc.relative_to(root).as_posix()
    problems = []
    for line in command_lines(doc.read_text(encoding="utf-8")):
        m = COMMAND.search(line)
        root_flags, sub, rest = m.group(1).split(), m.group(2), m.group(3)
        for flag in root_flags:
            if flag not in parser._option_string_actions:
                problems.append(f"{name}: `hrnet {flag}` is not an option of hrnet, in: {line}")
        if sub not in commands:
            problems.append(f"{name}: `hrnet {sub}` is not an hrnet subcommand, in: {line}")
            continue
        for flag in FLAG.findall(rest):
            flag = flag.split("=", 1)[0].rstrip(".")
            if sub in LIGHTNING_COMMANDS:
                group, _, key = flag[2:].partition(".")
                if flag in LIGHTNING_OWN_FLAGS | TASK_CLI_FLAGS or group in ("optimizer", "lr_scheduler"):
                    continue
                if group in lightning and key.split(".")[0] in lightning[group]:
                    continue
                known = f"--{group}.X" if group in lightning else "a Lightning CLI flag"
                problems.append(f"{name}: `hrnet {sub} {flag}` is not {known} ({flag} unknown), in: {line}")
            elif flag not in commands[sub]._option_string_actions:
                problems.append(f"{name}: `hrnet {sub} {flag}`: hrnet {sub} has no option {flag}, in: {line}")
    return problems


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_point_at_files_that_exist(doc: Path) -> None:
    problems = link_problems(doc)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_command_line_flags_exist(doc: Path) -> None:
    problems = flag_problems(doc)
    assert not problems, "\n".join(problems)


def test_docs_show_commands() -> None:
    """The flag check has something to check: the docs show commands of both kinds."""
    shown = {COMMAND.search(line).group(2) for doc in doc_files() for line in command_lines(doc.read_text())}
    assert {"fit", "validate", "predict", "export", "demo"} <= shown


def test_checker_reports_a_bad_link_and_a_bad_flag(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## Real section\n")
    doc = tmp_path / "docs" / "fake.md"
    doc.write_text(
        "# Fake\n\n"
        "See [the missing page](missing.md), [a real one](other.md#real-section),\n"
        "[a missing heading](other.md#no-such-section) and [the web](https://example.com).\n\n"
        "```bash\n"
        "hrnet predict photos/ --weights CKPT \\\n"
        "    --no-such-flag 3          # a comment naming --ignored-in-comment\n"
        "hrnet fit --config c.yaml --trainer.devices 2 --trainer.not_a_trainer_arg 1 --model.not_a_param x\n"
        "```\n\n"
        "Also `hrnet export onnx --weights W --bogus` and `hrnet frobnicate --x`.\n"
    )
    links = link_problems(doc, tmp_path)
    assert len(links) == 2, links
    assert any("docs/fake.md" in p and "missing.md" in p for p in links)
    assert any("#no-such-section" in p for p in links)
    flags = flag_problems(doc, tmp_path)
    assert all(p.startswith("docs/fake.md:") for p in flags)
    for bad in ("--no-such-flag", "--trainer.not_a_trainer_arg", "--model.not_a_param", "--bogus", "frobnicate"):
        assert any(bad in p for p in flags), (bad, flags)
    assert len(flags) == 5, flags  # one each: the good flags and the commented one are not reported


def test_github_slugs() -> None:
    assert github_slug("Quality on trained models") == "quality-on-trained-models"
    assert github_slug("Fast inference: `prepare()`, bf16") == "fast-inference-prepare-bf16"
    assert github_slug("Top-down pose (HRNetV1)") == "top-down-pose-hrnetv1"


def test_task_cli_flags_exist(capsys) -> None:
    from hrnet.cli import main

    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    shown = capsys.readouterr().out
    assert all(flag in shown for flag in TASK_CLI_FLAGS), shown[-2000:]
