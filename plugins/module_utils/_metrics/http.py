# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Any JSON endpoint: ``source.address`` (URL), ``method``, ``headers``, ``body``; the metric's
query is a JMESPath expression that picks the number out of the response.

For ``query_range`` the expression must yield a list: numbers, or ``[time, value]`` pairs.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import json
import math
import time
import traceback

from ansible_collections.progressive.delivery.plugins.module_utils._metrics import (
    HttpClient,
    NoData,
    QueryRejected,
    SourceConfigError,
    SourceUnavailable,
    UnexpectedResult,
    auth_failure,
    response_json,
    to_float,
)

try:
    import jmespath
    import jmespath.exceptions
    HAS_JMESPATH = True
    JMESPATH_IMPORT_ERROR = None
except ImportError:
    HAS_JMESPATH = False
    JMESPATH_IMPORT_ERROR = traceback.format_exc()

_METHODS = ('GET', 'POST')


class HttpSource(object):
    name = 'http'

    def __init__(self, settings, session=None, clock=None):
        if not HAS_JMESPATH:
            raise SourceConfigError(None, 'the http source needs the Python library jmespath (pip install jmespath)')
        address = (settings.get('address') or '').strip()
        if not address.startswith(('http://', 'https://')):
            raise SourceConfigError('source.address', 'the http source needs the URL of a JSON endpoint '
                                                      '(http:// or https://), got "%s"' % address)
        self.address = address
        self.method = (settings.get('method') or 'GET').upper()
        if self.method not in _METHODS:
            raise SourceConfigError('source.method', 'must be one of %s, got "%s"' % (', '.join(_METHODS), self.method))
        self.body = settings.get('body')
        self.http = HttpClient(settings, 'the HTTP source', session=session)
        self._clock = clock or time.time

    def query(self, text, window=None, at=None):
        found = self._search(text)
        if isinstance(found, list) and len(found) == 1:
            found = found[0]
        if found is None or found == [] or found == '':
            return NoData('the expression %s found nothing in the response' % text)
        value = to_float(found)
        if value is None:
            raise UnexpectedResult('the expression %s yields %s, not a number' % (text, _shorten(found)))
        if math.isnan(value):
            return NoData('the expression %s yields NaN' % text)
        return value

    def query_range(self, text, start, end, step):
        found = self._search(text)
        if found is None or found == []:
            return NoData('the expression %s found nothing in the response' % text)
        if not isinstance(found, list):
            raise UnexpectedResult('a series needs the expression %s to yield a list, got %s' % (text, _shorten(found)))
        points = []
        for index, item in enumerate(found):
            if isinstance(item, list) and len(item) == 2:
                stamp, raw = to_float(item[0]), item[1]
            else:
                stamp, raw = float(index), item
            value = to_float(raw) if raw is not None else float('nan')
            if stamp is None or value is None:
                raise UnexpectedResult('item %d of %s is %s: expected a number or a [time, value] pair'
                                       % (index, text, _shorten(item)))
            points.append((stamp, value))
        return points

    def is_online(self):
        self._document()
        return True

    def _document(self):
        kwargs = {}
        if self.body is not None:
            if isinstance(self.body, (dict, list)):
                kwargs['json'] = self.body
            else:
                kwargs['data'] = str(self.body)
        response = self.http.request(self.method, self.address, **kwargs)
        if response.status_code in (401, 403):
            raise auth_failure(response, 'the HTTP source', self.address)
        if response.status_code >= 300:
            raise SourceUnavailable('the HTTP source at %s answered HTTP %d %s: %s'
                                    % (self.address, response.status_code, response.reason or '',
                                       (response.text or '').strip()[:200]))
        return response_json(response, 'the HTTP source at %s' % self.address)

    def check_query(self, expression):
        """The compiled expression, or QueryRejected when it is not valid JMESPath (no request made)."""
        try:
            return jmespath.compile(expression)
        except jmespath.exceptions.JMESPathError as error:
            raise QueryRejected('invalid JMESPath expression %s: %s' % (expression, error))

    def _search(self, expression):
        compiled = self.check_query(expression)
        document = self._document()
        try:
            return compiled.search(document)
        except jmespath.exceptions.JMESPathError as error:
            raise QueryRejected('JMESPath expression %s failed on the response: %s' % (expression, error))


def _shorten(value):
    text = json.dumps(value, default=str)
    return text if len(text) <= 120 else text[:117] + '...'
