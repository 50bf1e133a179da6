# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Istio router: a VirtualService named after the apex Service (networking.istio.io/v1).

Weighted routes send ``<apex>-primary`` and ``<apex>-canary`` their shares. A/B testing puts a
route with the match conditions in front of the weighted one; session affinity puts a route
that matches the canary's cookie in front of it (Flagger's sticky route); mirroring sets
``mirror`` and ``mirrorPercentage`` on the weighted route. Adopting a user's VirtualService
turns each http route whose destinations are all the apex host into a weighted route and keeps
every other field (hosts, gateways, retries, timeout, corsPolicy, headers, other routes).
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import copy

from ansible_collections.progressive.delivery.plugins.module_utils._routers import (
    MANAGED_ANNOTATION, MANAGED_CREATED, MATCH_ROUTE_NAME, STICKY_ROUTE_NAME, ObjectRouter, RouterError,
    cookie_regex, expired_cookie_value, session_cookies, set_cookie_value, string_match,
)

API_VERSION = 'networking.istio.io/v1'
KIND = 'VirtualService'

# HTTPMatchRequest fields of the upstream CRD; anything else is a typo the API server would prune.
_MATCH_FIELDS = ('authority', 'gateways', 'headers', 'ignoreUriCase', 'method', 'name', 'port', 'queryParams',
                 'scheme', 'sourceLabels', 'sourceNamespace', 'statPrefix', 'uri', 'withoutHeaders')
_STRING_MATCH_FIELDS = ('authority', 'method', 'scheme', 'uri')
_STRING_MATCH_MAPS = ('headers', 'queryParams', 'withoutHeaders')
# Route fields the Canary's service section sets on routes the collection created.
_SERVICE_ROUTE_FIELDS = ('match', 'rewrite', 'timeout', 'retries', 'corsPolicy', 'headers')


def _is_managed(route):
    name = route.get('name') or ''
    return name.startswith(MATCH_ROUTE_NAME) or name.startswith(STICKY_ROUTE_NAME)


def _hosts_of(route):
    return [((destination.get('destination') or {}).get('host')) for destination in route.get('route') or []]


def _destination(host, weight, port=None):
    destination = {'host': host}
    if port:
        destination['port'] = copy.deepcopy(port)
    return {'destination': destination, 'weight': weight}


def _port_of(route, host):
    for destination in route.get('route') or []:
        if (destination.get('destination') or {}).get('host') == host:
            return (destination.get('destination') or {}).get('port')
    return None


def merge_matches(analysis_match, route_match):
    """Each analysis condition AND each of the route's own conditions (Flagger's mergeMatchConditions).

    The analysis condition wins where both set the same field.
    """
    if not route_match:
        return copy.deepcopy(analysis_match)
    merged = []
    for condition in analysis_match:
        for default in route_match:
            combined = copy.deepcopy(default)
            combined.update(copy.deepcopy(condition))
            merged.append(combined)
    return merged


def normalize_match(match, field='match'):
    """Validated copy of Istio match conditions; header names lower-cased as Istio requires."""
    result = []
    for index, condition in enumerate(match):
        where = '%s[%d]' % (field, index)
        unknown = sorted(set(condition) - set(_MATCH_FIELDS))
        if unknown:
            raise RouterError(field, '%s has unknown field(s) %s; Istio match conditions take %s'
                              % (where, ', '.join(unknown), ', '.join(_MATCH_FIELDS)))
        condition = copy.deepcopy(condition)
        for key in _STRING_MATCH_MAPS:
            if condition.get(key) is None:
                continue
            if not isinstance(condition[key], dict) or not condition[key]:
                raise RouterError(field, '%s.%s must map names to {exact|prefix|regex: value}, got %r'
                                  % (where, key, condition[key]))
            converted = {}
            for name, value in condition[key].items():
                string_match(value, '%s.%s.%s' % (where, key, name))
                converted[name.lower() if key != 'queryParams' else name] = value
            condition[key] = converted
        for key in _STRING_MATCH_FIELDS:
            if condition.get(key) is not None:
                string_match(condition[key], '%s.%s' % (where, key))
        labels = condition.get('sourceLabels')
        if labels is not None and (not isinstance(labels, dict)
                                   or not all(isinstance(v, str) for v in labels.values())):
            raise RouterError(field, '%s.sourceLabels must map label names to strings, got %r' % (where, labels))
        if not condition:
            raise RouterError(field, '%s is empty; give headers, sourceLabels, uri, queryParams or another '
                                     'condition' % where)
        result.append(condition)
    return result


class IstioRouter(ObjectRouter):
    name = 'istio'
    features = frozenset(('match', 'mirror', 'sessionAffinity'))
    api_version = API_VERSION
    kind = KIND

    # -- validation ---------------------------------------------------------------------------

    def _check_request(self, canary, primary_weight, canary_weight, mirrored, match):
        normalize_match(match)

    # -- building blocks ----------------------------------------------------------------------

    def _is_apex_host(self, canary, host):
        apex = self.names(canary)[0]
        namespace = self.namespace(canary)
        return host in (apex, '%s.%s' % (apex, namespace)) or (host or '').startswith('%s.%s.svc' % (apex, namespace))

    @staticmethod
    def _port(canary):
        service = canary['spec'].get('service') or {}
        # Istio needs the port only when the Service exposes several (port discovery).
        return {'number': service['port']} if service.get('portDiscovery') else None

    def _service_route(self, canary):
        """The weighted route of a created VirtualService, fields from spec.service."""
        _apex, primary, canary_name = self.names(canary)
        route = {}
        self._apply_service_fields(canary, route)
        port = self._port(canary)
        route['route'] = [_destination(primary, 100, port), _destination(canary_name, 0, port)]
        return route

    @staticmethod
    def _apply_service_fields(canary, route):
        service = canary['spec'].get('service') or {}
        values = {
            'match': service.get('match') or None,
            # The CRD's rewrite.type is Gateway API's; Istio's HTTPRewrite has no such field.
            'rewrite': dict((k, v) for k, v in (service.get('rewrite') or {}).items() if k != 'type') or None,
            'timeout': service.get('timeout') or None,
            'retries': service.get('retries') or None,
            'corsPolicy': service.get('corsPolicy') or None,
            'headers': service.get('headers') or None,
        }
        for key in _SERVICE_ROUTE_FIELDS:
            if values[key] is None:
                route.pop(key, None)
            else:
                route[key] = copy.deepcopy(values[key])

    def _hosts_and_gateways(self, canary):
        service = canary['spec'].get('service') or {}
        if service.get('delegation'):
            return [], []
        apex = self.names(canary)[0]
        hosts = list(service.get('hosts') or [])
        if apex not in hosts and '*' not in hosts:
            hosts.append(apex)
        gateways = list(service.get('gateways') or []) or ['mesh']
        return hosts, gateways

    # -- ObjectRouter hooks -------------------------------------------------------------------

    def _new(self, canary):
        hosts, gateways = self._hosts_and_gateways(canary)
        spec = {'http': [self._service_route(canary)]}
        if hosts:
            spec['hosts'] = hosts
        if gateways:
            spec['gateways'] = gateways
        return {'apiVersion': API_VERSION, 'kind': KIND, 'metadata': self._metadata(canary), 'spec': spec}

    def _weighted(self, canary, obj):
        canary_name = self.names(canary)[2]
        return [route for route in ((obj.get('spec') or {}).get('http') or [])
                if not _is_managed(route) and canary_name in _hosts_of(route)]

    def _adopt(self, canary, obj):
        _apex, primary, canary_name = self.names(canary)
        spec = obj.get('spec') or {}
        obj['spec'] = spec
        http = spec.setdefault('http', [])
        adopted = False
        for route in http:
            hosts = _hosts_of(route)
            if _is_managed(route) or not hosts or not all(self._is_apex_host(canary, host) for host in hosts):
                continue
            port = (route['route'][0].get('destination') or {}).get('port')
            route['route'] = [_destination(primary, 100, port), _destination(canary_name, 0, port)]
            adopted = True
        if adopted:
            return
        if http or spec.get('tcp') or spec.get('tls'):
            raise RouterError('service.name', 'VirtualService %s in namespace %s has no http route whose '
                                              'destinations are all the apex Service %s, so there is nothing to '
                                              'split; route it to host %s (the primary and canary take over that '
                                              'route), or delete it so that canary_init creates one'
                              % (self.object_name(canary), self.namespace(canary), _apex, _apex))
        http.append(self._service_route(canary))

    def _sync(self, canary, obj):
        spec = obj.setdefault('spec', {})
        hosts, gateways = self._hosts_and_gateways(canary)
        for key, value in (('hosts', hosts), ('gateways', gateways)):
            if value:
                spec[key] = value
            else:
                spec.pop(key, None)
        for route in self._weighted(canary, obj):
            self._apply_service_fields(canary, route)
        annotations = obj['metadata'].setdefault('annotations', {})
        annotations[MANAGED_ANNOTATION] = MANAGED_CREATED

    def _route(self, canary, obj, primary_weight, canary_weight, mirrored, match, mirror_weight):
        _apex, primary, canary_name = self.names(canary)
        match = normalize_match(match)
        affinity = (canary['spec'].get('analysis') or {}).get('sessionAffinity') if not match else None
        metadata = obj['metadata']
        cookie = expired = None
        if affinity:
            cookie, expired, metadata['annotations'] = session_cookies(
                metadata.get('annotations'), canary_weight, affinity['cookieName'])

        http = []
        weighted_count = 0
        for route in obj['spec'].get('http') or []:
            if _is_managed(route):
                continue  # rebuilt below from the weighted route they belong to
            if canary_name not in _hosts_of(route):
                http.append(route)
                continue
            suffix = '-%d' % (weighted_count + 1) if weighted_count else ''
            weighted_count += 1
            port = _port_of(route, canary_name)
            if (route.get('mirror') or {}).get('host') == canary_name:
                route.pop('mirror', None)
                route.pop('mirrorPercentage', None)
            weighted = route
            route['route'] = [_destination(primary, primary_weight, port),
                              _destination(canary_name, canary_weight, port)]
            if match:
                weighted = self._derived(route, MATCH_ROUTE_NAME + suffix, merge_matches(match, route.get('match')))
                weighted['route'] = [_destination(primary, primary_weight, port),
                                     _destination(canary_name, canary_weight, port)]
                route['route'] = [_destination(primary, 100, port), _destination(canary_name, 0, port)]
                http.append(weighted)
            elif cookie:
                route['route'][1]['headers'] = {'response': {'add': {'Set-Cookie': set_cookie_value(cookie, affinity)}}}
                sticky = self._derived(route, STICKY_ROUTE_NAME + suffix,
                                       merge_matches([{'headers': {'cookie': {'regex': cookie_regex(cookie)}}}],
                                                     route.get('match')))
                sticky['route'] = [_destination(primary, 0, port), _destination(canary_name, 100, port)]
                http.append(sticky)
            elif expired:
                sticky = self._derived(route, STICKY_ROUTE_NAME + suffix,
                                       merge_matches([{'headers': {'cookie': {'regex': cookie_regex(expired)}}}],
                                                     route.get('match')))
                headers = sticky.setdefault('headers', {})
                response = headers.setdefault('response', {})
                response.setdefault('add', {})['Set-Cookie'] = expired_cookie_value(expired)
                http.append(sticky)
            if mirrored:
                weighted['mirror'] = {'host': canary_name}
                if port:
                    weighted['mirror']['port'] = copy.deepcopy(port)
                if mirror_weight:
                    weighted['mirrorPercentage'] = {'value': float(mirror_weight)}
                else:
                    weighted.pop('mirrorPercentage', None)
            http.append(route)
        obj['spec']['http'] = http

    @staticmethod
    def _derived(route, name, match):
        derived = copy.deepcopy(route)
        for key in ('name', 'mirror', 'mirrorPercentage'):
            derived.pop(key, None)
        derived['name'] = name
        if match:
            derived['match'] = match
        return derived

    def _read(self, canary, obj):
        _apex, primary, canary_name = self.names(canary)
        http = (obj.get('spec') or {}).get('http') or []
        routes = [route for route in http if (route.get('name') or '').startswith(MATCH_ROUTE_NAME)
                  and canary_name in _hosts_of(route)]
        routes = routes or self._weighted(canary, obj)
        if not routes:
            raise RouterError('provider', 'VirtualService %s in namespace %s has no route to %s; run canary_init '
                                          'to reconcile it' % (self.object_name(canary), self.namespace(canary),
                                                               canary_name))
        route = routes[0]
        weights = {}
        for destination in route.get('route') or []:
            weights[(destination.get('destination') or {}).get('host')] = int(destination.get('weight') or 0)
        primary_weight = weights.get(primary, 0)
        canary_weight = weights.get(canary_name, 0)
        if len(route.get('route') or []) == 1 and not primary_weight and not canary_weight:
            # Istio sends everything to a lone destination that has no weight.
            primary_weight, canary_weight = (100, 0) if primary in weights else (0, 100)
        mirrored = (route.get('mirror') or {}).get('host') == canary_name
        return primary_weight, canary_weight, mirrored
