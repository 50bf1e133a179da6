"""How many tries each fault gets: all of them under `make chaos` (PD_CHAOS=full), the first
few under `make test`."""

import os

FULL = os.environ.get("PD_CHAOS", "") == "full"


def tries(bounded, full):
    return full if FULL else bounded
