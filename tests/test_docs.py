"""The README and docs: every relative link resolves, every command they show exists with the flags they give it."""

import argparse
import re
import shlex
from pathlib import Path

import pytest

from visreward import cli
from visreward.core.config import add_config_arguments

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE_BLOCK = re.compile(r"^```[a-z]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def heading_anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = CODE_BLOCK.sub("", page.read_text())
    return {heading_anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def broken_links(page: Path) -> list[str]:
    """Each relative link of `page` whose file, or whose heading in that file, is not there."""
    broken = []
    for target in LINK.findall(CODE_BLOCK.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (fragment and linked.suffix == ".md" and fragment not in anchors(linked)):
            broken.append(target)
    return broken


def shown_commands(page: Path) -> list[list[str]]:
    """Each `visreward COMMAND ...` inside the page's code blocks, as words, found inside quotes too (sbatch --wrap)."""
    def commands_in(words: list[str]) -> list[list[str]]:
        found = []
        for at, word in enumerate(words):
            if word.endswith("visreward") and at + 1 < len(words) and re.fullmatch(r"[a-z][a-z-]+", words[at + 1]):
                found.append(words[at + 1:])
            elif " " in word:
                found += commands_in(shlex.split(word))
        return found

    return [words for block in CODE_BLOCK.findall(page.read_text())
            for line in block.replace("\\\n", " ").splitlines() if not line.lstrip().startswith(("import", "from"))
            for words in commands_in(shlex.split(line.replace("|", " "), comments=True))]


def unknown_options(words: list[str]) -> list[str]:
    command = words[0]
    if command not in cli.COMMANDS:
        return [command]
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, cli._config_class(command, words))
    known = {option for action in parser._actions for option in action.option_strings}
    return [word.split("=")[0] for word in words[1:] if word.startswith("--") and word.split("=")[0] not in known]


def test_readme_fits_on_a_few_screens():
    assert len((ROOT / "README.md").read_text()) <= 10_000


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_the_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "other.md").write_text("# A heading, with punctuation\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#a-heading-with-punctuation) [gone](missing.md) [no heading](other.md#nowhere) "
                    "[web](https://example.com/x.md)\n```\n[in code](ignored.md)\n```\n")
    assert broken_links(page) == ["missing.md", "other.md#nowhere"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_shown_exists_with_its_flags(page):
    wrong = [(" ".join(words), unknown_options(words)) for words in shown_commands(page)]
    assert [(line, options) for line, options in wrong if options] == []


def test_the_command_check_finds_a_made_up_flag_and_command():
    assert unknown_options(["score", "--model", "rm/", "--output", "s.parquet"]) == []
    assert unknown_options(["score", "--model", "rm/", "--colour", "red"]) == ["--colour"]
    assert unknown_options(["rescore", "--model", "rm/"]) == ["rescore"]
