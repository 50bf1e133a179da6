# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus through its HTTP API (``/api/v1/query`` and ``/api/v1/query_range``).

Queries are POSTed form-encoded so long PromQL never hits URL length limits. An instant query
must come back as exactly one sample (a one-series vector or a scalar): several series are an
error that lists them, because silently taking the first would judge an arbitrary pod.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import math
import time

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

_WHAT = 'Prometheus'
_SHOWN_SERIES = 3


def _labels(metric):
    pairs = ', '.join('%s="%s"' % (key, value) for key, value in sorted((metric or {}).items()))
    return '{%s}' % pairs


class PrometheusSource(object):
    name = 'prometheus'

    def __init__(self, settings, session=None, clock=None):
        address = (settings.get('address') or '').strip()
        if not address:
            raise SourceConfigError('source.address', 'the Prometheus URL is required (e.g. http://prometheus:9090); '
                                                      'set source.address or spec.metricsServer of the Canary')
        if not address.startswith(('http://', 'https://')):
            raise SourceConfigError('source.address', 'must be an http:// or https:// URL, got "%s"' % address)
        self.address = address.rstrip('/')
        self.http = HttpClient(settings, _WHAT, session=session)
        self._clock = clock or time.time

    # -- the interface -------------------------------------------------------

    def query(self, text, window=None, at=None):
        data = {'query': text}
        if at is not None:
            data['time'] = '%.3f' % at
        body = self._api('/api/v1/query', data)
        result_type = body.get('resultType')
        result = body.get('result')
        if result_type == 'scalar':
            return self._value(result[1] if isinstance(result, list) and len(result) == 2 else None)
        if result_type == 'vector':
            if not result:
                return NoData('the query returned no series (no matching samples in the window)')
            if len(result) > 1:
                shown = ', '.join(_labels(series.get('metric')) for series in result[:_SHOWN_SERIES])
                more = ' and %d more' % (len(result) - _SHOWN_SERIES) if len(result) > _SHOWN_SERIES else ''
                raise UnexpectedResult('expected exactly one series, got %d: %s%s; aggregate them (e.g. sum(...)) '
                                       'or narrow the selector' % (len(result), shown, more))
            value = result[0].get('value') or [None, None]
            return self._value(value[1])
        if result_type == 'matrix':
            raise UnexpectedResult('the query returns a range vector; wrap it in a function such as rate(...) or '
                                   'avg_over_time(...) to get one number')
        raise UnexpectedResult('expected a number, got a Prometheus %s result' % (result_type or 'unknown'))

    def query_vector(self, text, at=None):
        """Every series of an instant query as ``(labels, value)``; NaN values are left out.

        For callers that combine series themselves, such as the watch summing counter increases
        series by series so that a restarted pod's reset counter is not read as a negative count.
        """
        data = {'query': text}
        if at is not None:
            data['time'] = '%.3f' % at
        body = self._api('/api/v1/query', data)
        if body.get('resultType') != 'vector':
            raise UnexpectedResult('expected an instant vector, got a Prometheus %s result'
                                   % (body.get('resultType') or 'unknown'))
        series = []
        for item in body.get('result') or []:
            value = to_float((item.get('value') or [None, None])[1])
            if value is not None and not math.isnan(value):
                series.append((dict(item.get('metric') or {}), value))
        return series

    def query_range(self, text, start, end, step):
        if step <= 0:
            raise QueryRejected('step must be positive, got %r' % (step,))
        body = self._api('/api/v1/query_range', {'query': text, 'start': '%.3f' % start, 'end': '%.3f' % end,
                                                 'step': '%g' % step})
        result = body.get('result') or []
        if body.get('resultType') != 'matrix':
            raise UnexpectedResult('expected a range result (matrix), got %s' % body.get('resultType'))
        if not result:
            return NoData('the query returned no series between the start and the end of the window')
        if len(result) > 1:
            shown = ', '.join(_labels(series.get('metric')) for series in result[:_SHOWN_SERIES])
            raise UnexpectedResult('expected exactly one series, got %d: %s; aggregate them (e.g. sum(...))'
                                   % (len(result), shown))
        points = []
        for stamp, raw in result[0].get('values') or []:
            value = to_float(raw)
            points.append((float(stamp), float('nan') if value is None else value))
        return points

    def is_online(self):
        # The same path, auth and TLS as real queries, so "online" means "queries will work".
        value = self.query('vector(1)')
        if value != 1.0:
            raise SourceUnavailable('%s at %s answered vector(1) with %r instead of 1' % (_WHAT, self.address, value))
        return True

    # -- internals -----------------------------------------------------------

    @staticmethod
    def _value(raw):
        value = to_float(raw)
        if value is None:
            raise UnexpectedResult('expected a number, got %r' % (raw,))
        if math.isnan(value):
            # 0/0, e.g. a success rate over a window without requests: nothing to judge.
            return NoData('the query returned NaN (e.g. 0/0: no requests in the window)')
        return value

    def _api(self, path, data):
        url = self.address + path
        response = self.http.request('POST', url, data=data)
        if response.status_code in (401, 403):
            raise auth_failure(response, _WHAT, self.address)
        body = response_json(response, '%s at %s' % (_WHAT, self.address))
        if not isinstance(body, dict):
            raise SourceUnavailable('%s at %s answered with unexpected JSON (HTTP %d)'
                                    % (_WHAT, self.address, response.status_code))
        if body.get('status') == 'success' and response.status_code < 300:
            return body.get('data') or {}
        error = body.get('error') or 'no error message'
        error_type = body.get('errorType') or ''
        # bad_data is a query that does not parse; execution errors (422) are queries that
        # cannot run as written (e.g. many-to-many matching). Both need a fixed query.
        if response.status_code in (400, 422) or error_type in ('bad_data', 'execution'):
            raise QueryRejected('Prometheus rejected the query (%s): %s' % (error_type or response.status_code, error))
        raise SourceUnavailable('%s at %s failed with HTTP %d (%s): %s'
                                % (_WHAT, self.address, response.status_code, error_type or 'error', error))
