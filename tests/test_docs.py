"""The README against the code: the rejection reasons it lists are the ones /metrics
exports."""

from __future__ import annotations

import re
from pathlib import Path

from p1evse.model import Rejection

REPO = Path(__file__).resolve().parent.parent


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
