# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Datadog through the metrics query API (``GET /api/v1/query``), keys in headers.

Datadog queries carry no time range of their own, so the window (the metric's interval) becomes
``from``/``to``; the value is the last non-null point of the one series returned, as in Flagger.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

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

DEFAULT_ADDRESS = 'https://api.datadoghq.com'
DEFAULT_WINDOW = 60.0
_WHAT = 'Datadog'


class DatadogSource(object):
    name = 'datadog'

    def __init__(self, settings, session=None, clock=None):
        for key in ('api_key', 'application_key'):
            if not settings.get(key):
                raise SourceConfigError('source.' + key, 'is required for the datadog source (Organization Settings '
                                                         '> API Keys / Application Keys)')
        address = (settings.get('address') or DEFAULT_ADDRESS).strip()
        if not address.startswith(('http://', 'https://')):
            raise SourceConfigError('source.address', 'must be an http:// or https:// URL, got "%s"' % address)
        self.address = address.rstrip('/')
        settings = dict(settings)
        headers = dict(settings.get('headers') or {})
        headers['DD-API-KEY'] = settings['api_key']
        headers['DD-APPLICATION-KEY'] = settings['application_key']
        settings['headers'] = headers
        self.http = HttpClient(settings, _WHAT, session=session)
        self._clock = clock or time.time

    def query(self, text, window=None, at=None):
        end = float(at if at is not None else self._clock())
        start = end - float(window or DEFAULT_WINDOW)
        series = self._series(text, start, end)
        if _is_empty(series):
            return series
        for _stamp, value in reversed(series):
            if value is not None:
                return value
        return NoData('every point of the series is null')

    def query_range(self, text, start, end, step):
        series = self._series(text, start, end)
        if _is_empty(series):
            return series
        return [(stamp, float('nan') if value is None else value) for stamp, value in series]

    def is_online(self):
        url = self.address + '/api/v1/validate'
        response = self.http.request('GET', url)
        if response.status_code in (401, 403):
            raise auth_failure(response, _WHAT, self.address)
        body = response_json(response, '%s at %s' % (_WHAT, self.address))
        if response.status_code >= 300 or not (isinstance(body, dict) and body.get('valid')):
            raise SourceUnavailable('%s at %s did not validate the API key (HTTP %d): %s'
                                    % (_WHAT, self.address, response.status_code, body))
        return True

    def _series(self, text, start, end):
        url = self.address + '/api/v1/query'
        response = self.http.request('GET', url, params={'from': int(start), 'to': int(end), 'query': text})
        if response.status_code in (401, 403):
            raise auth_failure(response, _WHAT, self.address)
        body = response_json(response, '%s at %s' % (_WHAT, self.address))
        errors = body.get('errors') if isinstance(body, dict) else None
        if response.status_code == 400 or (isinstance(body, dict) and body.get('status') == 'error'):
            message = body.get('error') or '; '.join(str(e) for e in (errors or [])) or 'no error message'
            raise QueryRejected('Datadog rejected the query: %s' % message)
        if response.status_code >= 300 or not isinstance(body, dict):
            raise SourceUnavailable('%s at %s failed with HTTP %d: %s'
                                    % (_WHAT, self.address, response.status_code, errors or body))
        series = body.get('series') or []
        if not series:
            return NoData('the query returned no series in the window')
        if len(series) > 1:
            scopes = ', '.join(str(s.get('scope') or s.get('expression')) for s in series[:3])
            raise UnexpectedResult('expected exactly one series, got %d (%s); aggregate them or narrow the scope'
                                   % (len(series), scopes))
        points = []
        for point in series[0].get('pointlist') or []:
            if not isinstance(point, list) or len(point) < 2:
                continue
            # Datadog stamps points in milliseconds.
            points.append((float(point[0]) / 1000.0, to_float(point[1])))
        if not points:
            return NoData('the series has no points in the window')
        return points


def _is_empty(value):
    return isinstance(value, NoData)
