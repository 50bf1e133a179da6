"""Fault-injection suite: the ledger of faults tried and what each try ended in.

`make chaos` sets PD_CHAOS=full and runs every try; `make test` runs a bounded slice
(the first few seeds of each fault). At the end of the session a table of fault, tries
and outcomes is printed and written to build/chaos/results.{json,md}.
"""

import collections
import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
# The integration helpers (ansible_runner, helpers) and the dev tooling (hack/) beside them.
sys.path[:0] = [HERE, os.path.dirname(HERE)]
from chaos_budget import FULL  # noqa: E402

_LEDGER = []


class Ledger(object):
    """Each fault test records every try; a try that breaks an invariant fails its test too."""

    def record(self, fault, outcome, ok=True, detail=""):
        _LEDGER.append({"fault": fault, "outcome": outcome, "ok": bool(ok), "detail": detail})


@pytest.fixture(scope="session")
def ledger():
    return Ledger()


def _table(rows):
    by_fault = collections.OrderedDict()
    for row in rows:
        by_fault.setdefault(row["fault"], []).append(row)
    lines = ["| fault | tries | outcomes | invariant broken |", "|---|---:|---|---:|"]
    for fault, entries in by_fault.items():
        outcomes = collections.Counter(entry["outcome"] for entry in entries)
        shown = ", ".join("%s %d" % (name, count) for name, count in sorted(outcomes.items()))
        broken = sum(1 for entry in entries if not entry["ok"])
        lines.append("| %s | %d | %s | %d |" % (fault, len(entries), shown, broken))
    return lines


def pytest_terminal_summary(terminalreporter):
    if not _LEDGER:
        return
    lines = _table(_LEDGER)
    terminalreporter.write_sep("=", "fault injection (%s)" % ("full" if FULL else "bounded slice"))
    for line in lines:
        terminalreporter.write_line(line)
    out = os.path.join(REPO, "build", "chaos")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as handle:
        json.dump({"full": FULL, "tries": _LEDGER}, handle, indent=1)
    with open(os.path.join(out, "results.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
