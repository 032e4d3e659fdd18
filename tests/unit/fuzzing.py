"""Shared by the property tests (tests/unit/test_properties_*.py): how many inputs
each target gets, and the count of inputs each one ran.

``make test`` runs them with a modest number of examples (PER_TARGET below);
``make fuzz`` sets ``DOM0_FUZZ=1`` (optionally ``DOM0_FUZZ_EXAMPLES=<n>``, default
100,000) for a campaign, and prints per target how many inputs ran and how many
failed.  The seed is hypothesis's: ``--hypothesis-seed=<n>`` fixes it (make fuzz
passes ``FUZZ_SEED``, random unless given, and prints it to rerun a campaign).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, settings

FUZZ = os.environ.get("DOM0_FUZZ", "") not in ("", "0")
#: inputs per target in a fuzz campaign
CAMPAIGN = int(os.environ.get("DOM0_FUZZ_EXAMPLES", "100000"))

RUNS: Counter[str] = Counter()
FAILS: Counter[str] = Counter()


def budget(examples: int) -> Any:
    """Hypothesis settings for one target: *examples* in the unit suite, CAMPAIGN
    under make fuzz (no example database then: a campaign explores, it does not
    replay)."""
    if FUZZ:
        return settings(max_examples=CAMPAIGN, deadline=None, database=None,
                        suppress_health_check=list(HealthCheck))
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@contextlib.contextmanager
def target(name: str) -> Iterator[int]:
    """Count one input of *name* (the count is yielded); a failure (anything the
    property did not expect) is counted and re-raised, for hypothesis to shrink and
    report."""
    RUNS[name] += 1
    try:
        yield RUNS[name]
    except BaseException:
        FAILS[name] += 1
        raise


def _report() -> None:
    if not FUZZ or not RUNS:
        return
    out = sys.__stderr__ or sys.stderr
    print("\nfuzz campaign: inputs per target (a failure is a crash, a hang, a traceback "
          "or a 5xx)", file=out)
    for name in sorted(RUNS):
        print(f"  {name:32} {RUNS[name]:>9} inputs  {FAILS[name]} failures", file=out)


atexit.register(_report)
