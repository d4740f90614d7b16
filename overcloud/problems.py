"""Problems in a user's document (a request, a rule file): every one at once, each with its
place, and one error that carries them all.

Shared by the request loader (`orchestrator/request.py`) and the alert rules loader
(`devlake/alerts/rules.py`), so both print `FILE:LINE: path: message` the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from overcloud.errors import UserError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a document: where (dotted path, 1-based line) and what to do."""

    path: str
    line: int | None
    message: str

    def format(self, source: str) -> str:
        """`FILE:LINE: path: message` (line and path left out when unknown)."""
        where = f"{source}:{self.line}" if self.line else source
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class DocumentInvalid(UserError):
    """A document has problems; `problems` lists all of them, in document order."""

    what = ""
    """Said after the count, e.g. " in the OverCloud request:"."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        n = len(problems)
        super().__init__(f"{source}: {n} problem{'s' * (n != 1)}{self.what}\n"
                         + "\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [p.format(self.source) for p in self.problems]
