"""Small helpers shared by the integration tests."""

import time


def wait_for(predicate, timeout=60, interval=0.25, message="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out after %ss waiting for %s (last value: %r)" % (timeout, message, last))
