# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""urllib3 ``Retry`` built the same way for every HTTP client of the collection (the Kubernetes
API, metric sources, webhooks and alerts), whatever urllib3 version is installed.

This file is private to the collection: its API may change between minor releases.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

try:
    from urllib3.util.retry import Retry
    HAS_URLLIB3 = True
except ImportError:
    HAS_URLLIB3 = False


def make_retry(methods, retries, backoff_factor, statuses, backoff_max, respect_retry_after_header=True):
    """A Retry for ``retries`` attempts on connection, read and ``statuses`` failures of ``methods``.

    The last response is handed back instead of raising MaxRetryError, so the caller can show
    the server's own error text. None when urllib3 is missing.
    """
    if not HAS_URLLIB3:
        return None
    kwargs = dict(total=retries, connect=retries, read=retries, status=retries, backoff_factor=backoff_factor,
                  status_forcelist=sorted(statuses), raise_on_status=False,
                  respect_retry_after_header=respect_retry_after_header)
    methods = frozenset(methods)
    try:
        return Retry(allowed_methods=methods, backoff_max=backoff_max, **kwargs)
    except TypeError:
        pass
    try:
        # urllib3 1.26: no backoff_max argument (the class cap of 120 s applies).
        return Retry(allowed_methods=methods, **kwargs)
    except TypeError:
        # urllib3 < 1.26 called it method_whitelist.
        return Retry(method_whitelist=methods, **kwargs)
