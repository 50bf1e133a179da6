# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Metric sources against a small in-process HTTP server: what goes on the wire (method, form,
headers, auth) and how every kind of answer (one series, none, several, NaN, errors, outages)
comes back through the one interface."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import base64
import json
import math
import socket
import threading
import time

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from ansible_collections.progressive.delivery.plugins.module_utils import _metrics
from ansible_collections.progressive.delivery.plugins.module_utils._metrics import (
    NoData,
    QueryRejected,
    SourceConfigError,
    SourceUnavailable,
    UnexpectedResult,
    make_source,
)
from ansible_collections.progressive.delivery.plugins.module_utils._metrics.datadog import DatadogSource
from ansible_collections.progressive.delivery.plugins.module_utils._metrics.http import HttpSource
from ansible_collections.progressive.delivery.plugins.module_utils._metrics.prometheus import PrometheusSource


class FakeServer(object):
    """Answers each request with the next scripted (status, body) or a handler's answer; records requests."""

    def __init__(self):
        self.requests = []
        self.script = []
        self.handler = None
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(length).decode('utf-8') if length else ''
                parsed = urlparse(self.path)
                request = {'method': self.command, 'path': parsed.path, 'query': parse_qs(parsed.query),
                           'headers': dict(self.headers), 'body': body,
                           'form': parse_qs(body) if 'form' in (self.headers.get('Content-Type') or '') else {}}
                owner.requests.append(request)
                if owner.script:
                    answer = owner.script.pop(0)
                elif owner.handler:
                    answer = owner.handler(request)
                else:
                    answer = (404, {'error': 'nothing scripted'})
                status, payload = answer[0], answer[1]
                delay = answer[2] if len(answer) > 2 else 0
                if delay:
                    time.sleep(delay)
                data = payload.encode('utf-8') if isinstance(payload, str) else json.dumps(payload).encode('utf-8')
                self.send_response(status)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = _serve
            do_POST = _serve

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        self.url = 'http://127.0.0.1:%d' % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={'poll_interval': 0.02}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server():
    fake = FakeServer()
    yield fake
    fake.close()


def closed_port():
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def vector(*series):
    return {'status': 'success', 'data': {'resultType': 'vector', 'result': [
        {'metric': labels, 'value': [1700000000.0, value]} for labels, value in series]}}


def prometheus(server, **settings):
    settings.setdefault('address', server.url)
    settings.setdefault('retries', 2)
    return PrometheusSource(settings)


# --------------------------------------------------------------------------------- factory

def test_factory_picks_each_source_by_name(server):
    assert isinstance(make_source({'address': server.url}), PrometheusSource)
    assert isinstance(make_source({'type': 'prometheus', 'address': server.url}), PrometheusSource)
    assert isinstance(make_source({'type': 'datadog', 'api_key': 'a', 'application_key': 'b'}), DatadogSource)
    assert isinstance(make_source({'type': 'http', 'address': server.url}), HttpSource)


def test_factory_rejects_an_unknown_source_naming_the_choices():
    with pytest.raises(SourceConfigError) as info:
        make_source({'type': 'graphite', 'address': 'http://x'})
    assert info.value.field == 'source.type'
    assert 'prometheus, datadog, http' in str(info.value) and '"graphite"' in str(info.value)


@pytest.mark.parametrize('address', [None, '', 'prometheus:9090'])
def test_prometheus_needs_an_http_address(address):
    with pytest.raises(SourceConfigError) as info:
        make_source({'type': 'prometheus', 'address': address})
    assert info.value.field == 'source.address'


def test_no_data_is_falsy_and_never_a_number():
    nothing = NoData('no series')
    assert not nothing
    assert nothing != 0
    assert _metrics.is_no_data(nothing) and not _metrics.is_no_data(0.0)
    assert 'no series' in repr(nothing)


@pytest.mark.parametrize('raw, expected', [(1, 1.0), ('2.5', 2.5), (' 3 ', 3.0), ('NaN', 'nan'), (True, None),
                                           (None, None), ('abc', None), ([1], None)])
def test_to_float(raw, expected):
    value = _metrics.to_float(raw)
    if expected == 'nan':
        assert math.isnan(value)
    else:
        assert value == expected


# ------------------------------------------------------------------------------ prometheus

def test_prometheus_instant_query_posts_the_form_and_returns_the_one_sample(server):
    server.script.append((200, vector(({'app': 'podinfo'}, '99.5'))))
    assert prometheus(server).query('sum(rate(x[1m]))') == 99.5
    request = server.requests[0]
    assert request['method'] == 'POST' and request['path'] == '/api/v1/query'
    assert request['form']['query'] == ['sum(rate(x[1m]))']


def test_prometheus_passes_the_evaluation_time(server):
    server.script.append((200, vector(({}, '1'))))
    prometheus(server).query('up', at=1700000000.5)
    assert server.requests[0]['form']['time'] == ['1700000000.500']


def test_prometheus_scalar_result(server):
    server.script.append((200, {'status': 'success', 'data': {'resultType': 'scalar', 'result': [1.0, '42']}}))
    assert prometheus(server).query('scalar(x)') == 42.0


def test_prometheus_no_series_is_no_data(server):
    server.script.append((200, vector()))
    value = prometheus(server).query('absent_metric')
    assert _metrics.is_no_data(value) and 'no series' in value.reason


def test_prometheus_nan_is_no_data_not_a_value(server):
    server.script.append((200, vector(({}, 'NaN'))))
    value = prometheus(server).query('a / b')
    assert _metrics.is_no_data(value) and 'NaN' in value.reason


def test_prometheus_infinity_is_a_value(server):
    server.script.append((200, vector(({}, '+Inf'))))
    assert prometheus(server).query('histogram_quantile(0.99, x)') == float('inf')


def test_prometheus_several_series_are_an_error_that_lists_them(server):
    server.script.append((200, vector(({'pod': 'a'}, '1'), ({'pod': 'b'}, '2'), ({'pod': 'c'}, '3'),
                                      ({'pod': 'd'}, '4'))))
    with pytest.raises(UnexpectedResult) as info:
        prometheus(server).query('x')
    message = str(info.value)
    assert 'exactly one series, got 4' in message
    assert '{pod="a"}' in message and 'and 1 more' in message and 'sum(' in message


def test_prometheus_range_vector_is_an_error_with_a_hint(server):
    server.script.append((200, {'status': 'success', 'data': {'resultType': 'matrix', 'result': []}}))
    with pytest.raises(UnexpectedResult) as info:
        prometheus(server).query('x[1m]')
    assert 'rate(' in str(info.value)


def test_prometheus_malformed_query_is_rejected_with_prometheus_own_message(server):
    server.script.append((400, {'status': 'error', 'errorType': 'bad_data',
                                'error': '1:6: parse error: unexpected right parenthesis \')\''}))
    with pytest.raises(QueryRejected) as info:
        prometheus(server).query('rate(x))')
    assert 'bad_data' in str(info.value) and 'unexpected right parenthesis' in str(info.value)
    # A bad query is not transient: it is asked once.
    assert len(server.requests) == 1


def test_prometheus_execution_error_is_a_query_problem(server):
    server.script.append((422, {'status': 'error', 'errorType': 'execution',
                                'error': 'found duplicate series for the match group'}))
    with pytest.raises(QueryRejected):
        prometheus(server).query('a * on(x) b')


def test_prometheus_transient_503_is_retried(server):
    server.script.extend([(503, {'status': 'error', 'errorType': 'unavailable', 'error': 'starting'}),
                          (200, vector(({}, '7')))])
    assert prometheus(server).query('x') == 7.0
    assert len(server.requests) == 2


def test_prometheus_persistent_503_is_unavailable_with_the_server_message(server):
    server.handler = lambda request: (503, {'status': 'error', 'errorType': 'timeout', 'error': 'query timed out'})
    with pytest.raises(SourceUnavailable) as info:
        prometheus(server, retries=1).query('x')
    assert 'HTTP 503' in str(info.value) and 'query timed out' in str(info.value)
    assert len(server.requests) == 2


def test_prometheus_down_is_unavailable_naming_the_address_and_cause():
    address = 'http://127.0.0.1:%d' % closed_port()
    source = PrometheusSource({'address': address, 'retries': 0})
    with pytest.raises(SourceUnavailable) as info:
        source.query('x')
    message = str(info.value)
    assert address in message and 'refused' in message.lower()
    assert '0x' not in message  # no urllib3 object reprs


def test_prometheus_timeout_is_unavailable(server):
    server.handler = lambda request: (200, vector(({}, '1')), 1.0)
    with pytest.raises(SourceUnavailable) as info:
        prometheus(server, timeout=0.2, retries=0).query('x')
    assert 'did not answer within 0.2s' in str(info.value)


def test_prometheus_refused_credentials_say_so(server):
    server.script.append((401, 'Unauthorized'))
    with pytest.raises(SourceUnavailable) as info:
        prometheus(server).query('x')
    assert 'HTTP 401' in str(info.value) and 'credentials' in str(info.value)


def test_prometheus_non_json_answer_is_quoted(server):
    server.script.append((200, '<html>login</html>'))
    with pytest.raises(SourceUnavailable) as info:
        prometheus(server).query('x')
    assert 'not JSON' in str(info.value) and '<html>login' in str(info.value)


def test_prometheus_sends_bearer_token_and_headers(server):
    server.script.append((200, vector(({}, '1'))))
    prometheus(server, bearer_token='s3cret', headers={'X-Scope-OrgID': 'team-a'}).query('x')
    headers = server.requests[0]['headers']
    assert headers['Authorization'] == 'Bearer s3cret'
    assert headers['X-Scope-OrgID'] == 'team-a'


def test_prometheus_sends_basic_auth(server):
    server.script.append((200, vector(({}, '1'))))
    prometheus(server, username='ops', password='pw').query('x')
    expected = 'Basic ' + base64.b64encode(b'ops:pw').decode('ascii')
    assert server.requests[0]['headers']['Authorization'] == expected


def test_bearer_token_and_basic_auth_together_are_refused(server):
    with pytest.raises(SourceConfigError) as info:
        prometheus(server, bearer_token='t', username='u', password='p')
    assert info.value.field == 'source.bearer_token'


def test_basic_auth_needs_both_halves(server):
    with pytest.raises(SourceConfigError) as info:
        prometheus(server, username='u')
    assert 'both username and password' in str(info.value)


@pytest.mark.parametrize('settings, verify', [
    ({}, True), ({'validate_certs': True}, True), ({'validate_certs': False}, False),
    ({'ca_cert': '/etc/ca.pem'}, '/etc/ca.pem'), ({'ca_cert': '/etc/ca.pem', 'validate_certs': False}, False),
])
def test_tls_settings_reach_requests(server, settings, verify):
    assert prometheus(server, **settings).http.verify == verify


def test_every_call_has_a_timeout(server, monkeypatch):
    source = prometheus(server, timeout=3)
    seen = []
    original = source.http.session.request

    def spy(method, url, **kwargs):
        seen.append(kwargs.get('timeout'))
        return original(method, url, **kwargs)

    monkeypatch.setattr(source.http.session, 'request', spy)
    server.handler = lambda request: (200, vector(({}, '1')))
    source.query('x')
    source.is_online()
    assert seen == [3.0, 3.0]


def test_prometheus_range_query(server):
    server.script.append((200, {'status': 'success', 'data': {'resultType': 'matrix', 'result': [
        {'metric': {}, 'values': [[100, '1.5'], [130, 'NaN'], [160, '2']]}]}}))
    points = prometheus(server).query_range('x', 100, 160, 30)
    assert points[0] == (100.0, 1.5) and points[2] == (160.0, 2.0) and math.isnan(points[1][1])
    form = server.requests[0]['form']
    assert server.requests[0]['path'] == '/api/v1/query_range'
    assert form['start'] == ['100.000'] and form['end'] == ['160.000'] and form['step'] == ['30']


def test_prometheus_range_query_without_series_is_no_data(server):
    server.script.append((200, {'status': 'success', 'data': {'resultType': 'matrix', 'result': []}}))
    assert _metrics.is_no_data(prometheus(server).query_range('x', 0, 60, 15))


def test_prometheus_range_query_with_several_series_is_an_error(server):
    server.script.append((200, {'status': 'success', 'data': {'resultType': 'matrix', 'result': [
        {'metric': {'a': '1'}, 'values': []}, {'metric': {'a': '2'}, 'values': []}]}}))
    with pytest.raises(UnexpectedResult):
        prometheus(server).query_range('x', 0, 60, 15)


def test_prometheus_is_online_runs_a_real_query(server):
    server.script.append((200, {'status': 'success', 'data': {'resultType': 'vector', 'result': [
        {'metric': {}, 'value': [1, '1']}]}}))
    assert prometheus(server).is_online() is True
    assert server.requests[0]['form']['query'] == ['vector(1)']


def test_prometheus_offline_raises_with_the_cause_instead_of_returning_false():
    source = PrometheusSource({'address': 'http://127.0.0.1:%d' % closed_port(), 'retries': 0})
    with pytest.raises(SourceUnavailable):
        source.is_online()


# -------------------------------------------------------------------------------- datadog

def datadog(server, **settings):
    settings.setdefault('address', server.url)
    settings.setdefault('api_key', 'api-123')
    settings.setdefault('application_key', 'app-456')
    settings.setdefault('retries', 1)
    return DatadogSource(settings, clock=lambda: 1700000600.0)


def test_datadog_sends_keys_and_window_and_takes_the_last_point(server):
    server.script.append((200, {'status': 'ok', 'series': [
        {'scope': 'app:podinfo', 'pointlist': [[1700000540000.0, 1.5], [1700000570000.0, 2.5],
                                               [1700000600000.0, None]]}]}))
    assert datadog(server).query('avg:latency{app:podinfo}', window=60) == 2.5
    request = server.requests[0]
    assert request['path'] == '/api/v1/query'
    assert request['headers']['DD-API-KEY'] == 'api-123'
    assert request['headers']['DD-APPLICATION-KEY'] == 'app-456'
    assert request['query'] == {'from': ['1700000540'], 'to': ['1700000600'], 'query': ['avg:latency{app:podinfo}']}


def test_datadog_no_series_is_no_data(server):
    server.script.append((200, {'status': 'ok', 'series': []}))
    assert _metrics.is_no_data(datadog(server).query('x'))


def test_datadog_only_null_points_is_no_data(server):
    server.script.append((200, {'status': 'ok', 'series': [{'pointlist': [[1, None]]}]}))
    assert _metrics.is_no_data(datadog(server).query('x'))


def test_datadog_bad_query_is_rejected_with_its_message(server):
    server.script.append((400, {'errors': ['Error parsing query: unknown aggregator']}))
    with pytest.raises(QueryRejected) as info:
        datadog(server).query('bogus(')
    assert 'unknown aggregator' in str(info.value)


def test_datadog_several_series_are_an_error(server):
    server.script.append((200, {'status': 'ok', 'series': [{'scope': 'a', 'pointlist': [[1, 1]]},
                                                           {'scope': 'b', 'pointlist': [[1, 2]]}]}))
    with pytest.raises(UnexpectedResult) as info:
        datadog(server).query('x')
    assert 'got 2' in str(info.value)


def test_datadog_refused_key(server):
    server.script.append((403, {'errors': ['Forbidden']}))
    with pytest.raises(SourceUnavailable) as info:
        datadog(server).query('x')
    assert 'HTTP 403' in str(info.value)


def test_datadog_range_query_converts_milliseconds(server):
    server.script.append((200, {'status': 'ok', 'series': [{'pointlist': [[1000.0, 1], [2000.0, None]]}]}))
    points = datadog(server).query_range('x', 0, 2, 1)
    assert points[0] == (1.0, 1.0) and math.isnan(points[1][1])


def test_datadog_is_online_validates_the_key(server):
    server.script.append((200, {'valid': True}))
    assert datadog(server).is_online() is True
    assert server.requests[0]['path'] == '/api/v1/validate'


@pytest.mark.parametrize('missing', ['api_key', 'application_key'])
def test_datadog_needs_both_keys(missing):
    settings = {'api_key': 'a', 'application_key': 'b'}
    settings[missing] = None
    with pytest.raises(SourceConfigError) as info:
        DatadogSource(settings)
    assert info.value.field == 'source.' + missing


def test_datadog_defaults_to_the_us1_site():
    assert DatadogSource({'api_key': 'a', 'application_key': 'b'}).address == 'https://api.datadoghq.com'


# ----------------------------------------------------------------------------------- http

def http_source(server, **settings):
    settings.setdefault('address', server.url + '/slo')
    settings.setdefault('retries', 1)
    return HttpSource(settings)


def test_http_source_picks_the_number_with_jmespath(server):
    server.handler = lambda request: (200, {'apps': [{'name': 'podinfo', 'availability': '99.95'},
                                                     {'name': 'other', 'availability': 90}]})
    source = http_source(server)
    assert source.query("apps[?name=='podinfo'].availability") == 99.95
    assert source.query("apps[?name=='other'] | [0].availability") == 90.0


def test_http_source_nothing_found_is_no_data(server):
    server.handler = lambda request: (200, {'apps': []})
    assert _metrics.is_no_data(http_source(server).query("apps[?name=='podinfo'].availability"))
    assert _metrics.is_no_data(http_source(server).query('missing.field'))


def test_http_source_non_number_is_an_error(server):
    server.handler = lambda request: (200, {'status': 'green', 'list': [1, 2]})
    with pytest.raises(UnexpectedResult) as info:
        http_source(server).query('status')
    assert '"green"' in str(info.value)
    with pytest.raises(UnexpectedResult):
        http_source(server).query('list')


def test_http_source_invalid_expression_is_rejected(server):
    with pytest.raises(QueryRejected) as info:
        http_source(server).query('apps[?name==')
    assert 'invalid JMESPath expression' in str(info.value)
    assert not server.requests  # no request for an expression that cannot work


def test_http_source_posts_a_json_body_with_headers(server):
    server.handler = lambda request: (200, {'value': 3})
    source = http_source(server, method='POST', body={'app': 'podinfo'}, headers={'X-Team': 'a'}, bearer_token='t')
    assert source.query('value') == 3.0
    request = server.requests[0]
    assert request['method'] == 'POST' and json.loads(request['body']) == {'app': 'podinfo'}
    assert request['headers']['X-Team'] == 'a' and request['headers']['Authorization'] == 'Bearer t'


def test_http_source_error_status_is_unavailable(server):
    server.handler = lambda request: (500, {'error': 'db down'})
    with pytest.raises(SourceUnavailable) as info:
        http_source(server).query('value')
    assert 'HTTP 500' in str(info.value) and 'db down' in str(info.value)


def test_http_source_series(server):
    server.handler = lambda request: (200, {'pairs': [[1, 2.0], [2, None]], 'plain': [5, '6']})
    source = http_source(server)
    pairs = source.query_range('pairs', 0, 2, 1)
    assert pairs[0] == (1.0, 2.0) and math.isnan(pairs[1][1])
    assert source.query_range('plain', 0, 2, 1) == [(0.0, 5.0), (1.0, 6.0)]


def test_http_source_needs_a_url():
    with pytest.raises(SourceConfigError) as info:
        HttpSource({'address': 'slo.example.com'})
    assert info.value.field == 'source.address'


def test_connection_error_description_keeps_the_cause_only():
    class Inner(Exception):
        pass

    class Outer(Exception):
        def __init__(self, reason):
            super(Outer, self).__init__('wrapper')
            self.reason = reason

    error = Outer(Inner('<urllib3.connection.HTTPConnection object at 0x7f>: Failed to establish a new connection: '
                        '[Errno 111] Connection refused'))
    assert _metrics.describe_connection_error(error) == ('Failed to establish a new connection: [Errno 111] '
                                                         'Connection refused')
