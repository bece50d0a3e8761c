"""The README and docs/ against the repository and the code: every file they name exists,
and the rejection reasons they list are the ones /metrics exports."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from p1evse.model import Rejection

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# a name with one of these suffixes is a file of the repository (a user's file the docs
# name, such as `p1evse.yaml` or `day.csv`, has a namesake in it or another suffix)
FILE_SUFFIXES = {".py", ".sh", ".md", ".yaml", ".yml", ".toml", ".conf", ".service", ".txt"}
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
FILE_NAME = re.compile(r"[\w./-]+\.(?:" + "|".join(s[1:] for s in FILE_SUFFIXES) + r")\b")
SKIPPED_DIRS = {".git", ".venv", "__pycache__", "test-artifacts"}
# what the repository ignores at its top (a user's config/, the broker's mosquitto/data/)
# is made where it is deployed, not shipped
MADE_WHERE_DEPLOYED = tuple(
    line.strip("/") + "/"
    for line in (REPO / ".gitignore").read_text().splitlines()
    if line.startswith("/")
)


def mentions(text: str) -> set[str]:
    """What a Markdown text quotes as code (inline, and each word of a code block), links
    to, or names as a file in its prose."""
    words: set[str] = set()
    for block in FENCE.findall(text):
        words.update(word.strip("'\"(),;[]") for word in block.split()[1:-1])
    prose = FENCE.sub("", text)
    words.update(INLINE_CODE.findall(prose))
    words.update(LINK.findall(prose))
    words.update(FILE_NAME.findall(INLINE_CODE.sub("", prose)))
    return words


def file_names() -> set[str]:
    """The name of every file in the repository."""
    names: set[str] = set()
    for _, subdirectories, files in os.walk(REPO):
        subdirectories[:] = [name for name in subdirectories if name not in SKIPPED_DIRS]
        names.update(files)
    return names


def repository_path(word: str) -> str | None:
    """The repository path `word` names, or None where it names something else: a topic,
    a URL, a settings key, a path on the machine p1evse runs on."""
    word = word.split("#")[0].removeprefix("./")
    if not word or " " in word or "://" in word or "<" in word or word.startswith(("/", "~")):
        return None
    if word.startswith(MADE_WHERE_DEPLOYED):
        return None
    first = word.split("/")[0]
    if "/" in word and (REPO / first).exists():
        return word
    if Path(word).suffix in FILE_SUFFIXES:
        return word
    return None


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.relative_to(REPO).as_posix())
def test_every_repository_file_the_docs_name_exists(doc: Path) -> None:
    names = file_names()
    missing = []
    for word in sorted(mentions(doc.read_text())):
        path = repository_path(word)
        if path is None:
            continue
        exists = (doc.parent / path).exists() or (REPO / path).exists() or path in names
        if not exists:
            missing.append(path)
    assert not missing, f"{doc.name} names files that do not exist: {missing}"


def test_the_checker_sees_the_names_it_must() -> None:
    text = (
        "Use *docker-compose.yml*, `tests/test_install.py`, not `p1evse/grid_ie`,\n"
        "`mqtt.host` or `/config/p1evse.yaml`; see [the guide](docs/nowhere.md).\n"
        "```sh\nsh deploy/missing.sh .\n```\n"
    )
    paths = {repository_path(word) for word in mentions(text)} - {None}
    assert paths == {
        "docker-compose.yml",
        "tests/test_install.py",
        "docs/nowhere.md",
        "deploy/missing.sh",
    }


def readme_rejection_reasons() -> list[str]:
    """The first column of the README's table under "Rejection reasons"."""
    readme = (REPO / "README.md").read_text()
    heading = "\n#### Rejection reasons\n"
    assert heading in readme, f"README.md has no table of rejection reasons ({heading.strip()})"
    table = readme[readme.index(heading) + len(heading) :].lstrip("\n").split("\n\n")[0]
    reasons = []
    for row in table.splitlines()[2:]:
        match = re.fullmatch(r"\| `([a-z_0-9]+)` \|.+\|", row)
        assert match, f"README.md: not a row of the table of rejection reasons: {row!r}"
        reasons.append(match.group(1))
    return reasons


def test_the_readme_lists_every_rejection_reason() -> None:
    listed = readme_rejection_reasons()
    code = [reason.value for reason in Rejection]
    undocumented = [reason for reason in code if reason not in listed]
    unknown = [reason for reason in listed if reason not in code]
    assert not undocumented, (
        f"README.md's table of rejection reasons lacks {undocumented}: add a row with its "
        "meaning for each (p1evse.model.Rejection)"
    )
    assert not unknown, f"README.md lists rejection reasons the code does not have: {unknown}"
    assert len(listed) == len(set(listed)), "README.md lists a rejection reason twice"
