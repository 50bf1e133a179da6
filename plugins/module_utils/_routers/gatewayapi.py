# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Gateway API router: an HTTPRoute named after the apex Service (gateway.networking.k8s.io/v1).

Weighted rules carry two backendRefs, ``<apex>-primary`` and ``<apex>-canary``, with weights.
A/B testing puts a rule with the match conditions (headers, query parameters, path, method,
converted from the Istio-style conditions of the Canary) in front of the weighted rule; session
affinity puts a rule matching the canary's cookie in front of it, as Flagger does; mirroring adds
a RequestMirror filter (with ``percent`` for a partial mirror). A created HTTPRoute takes its
parentRefs from ``spec.service.gatewayRefs`` (the apex Service itself, GAMMA style, when there
are none) and its hostnames from ``spec.service.hosts``; an adopted one keeps its own.

Every field the API server would default is written explicitly (backendRef group and kind,
match path, header match type), so the object read back equals the object written and a
repeated request writes nothing.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import copy
import re

from ansible_collections.progressive.delivery.plugins.module_utils._routers import (
    MATCH_ROUTE_NAME, STICKY_ROUTE_NAME, ObjectRouter, RouterError, cookie_regex, expired_cookie_value,
    session_cookies, set_cookie_value, string_match,
)

API_VERSION = 'gateway.networking.k8s.io/v1'
KIND = 'HTTPRoute'
GATEWAY_GROUP = 'gateway.networking.k8s.io'

_DEFAULT_PATH = {'type': 'PathPrefix', 'value': '/'}
_PATH_TYPES = {'exact': 'Exact', 'prefix': 'PathPrefix', 'regex': 'RegularExpression'}
_SUPPORTED_MATCH_FIELDS = ('headers', 'queryParams', 'uri', 'method')


def _is_managed(rule):
    name = rule.get('name') or ''
    return name.startswith(MATCH_ROUTE_NAME) or name.startswith(STICKY_ROUTE_NAME)


def _backend_names(rule):
    return [ref.get('name') for ref in rule.get('backendRefs') or []
            if (ref.get('group') or '') == '' and (ref.get('kind') or 'Service') == 'Service']


def _backend(name, weight, port):
    return {'group': '', 'kind': 'Service', 'name': name, 'port': port, 'weight': weight}


def _value_match(kind, text):
    """Gateway API (type, value) of an Istio string match; prefix becomes an anchored regex."""
    if kind == 'exact':
        return 'Exact', text
    if kind == 'regex':
        return 'RegularExpression', text
    return 'RegularExpression', '^%s.*' % re.escape(text)


def convert_match(match, field='match'):
    """HTTPRouteMatch list from Istio-style conditions. Raises RouterError for what Gateway API lacks."""
    result = []
    for index, condition in enumerate(match):
        where = '%s[%d]' % (field, index)
        unsupported = sorted(set(condition) - set(_SUPPORTED_MATCH_FIELDS))
        if unsupported:
            raise RouterError(field, '%s: %s cannot be expressed in a Gateway API HTTPRoute, which matches on '
                                     'headers, queryParams, uri (path) and method'
                              % (where, ', '.join(unsupported)))
        converted = {'path': dict(_DEFAULT_PATH)}
        if condition.get('uri') is not None:
            kind, text = string_match(condition['uri'], where + '.uri')
            converted['path'] = {'type': _PATH_TYPES[kind], 'value': text}
        if condition.get('method') is not None:
            _kind, text = string_match(condition['method'], where + '.method', kinds=('exact',))
            converted['method'] = text.upper()
        for key, out in (('headers', 'headers'), ('queryParams', 'queryParams')):
            values = condition.get(key)
            if values is None:
                continue
            if not isinstance(values, dict) or not values:
                raise RouterError(field, '%s.%s must map names to {exact|prefix|regex: value}, got %r'
                                  % (where, key, values))
            items = []
            for name in sorted(values):
                kind, text = string_match(values[name], '%s.%s.%s' % (where, key, name))
                if key == 'queryParams' and kind == 'prefix':
                    raise RouterError(field, '%s.%s.%s: prefix matching of query parameters is not supported by '
                                             'Gateway API; use exact or regex' % (where, key, name))
                match_type, value = _value_match(kind, text)
                items.append({'name': name, 'type': match_type, 'value': value})
            converted[out] = items
        result.append(converted)
    return result


def merge_matches(analysis, rule_matches):
    """Each analysis condition AND each of the rule's own (Flagger's mergeMatchConditions)."""
    if not rule_matches:
        return copy.deepcopy(analysis)
    merged = []
    for condition in analysis:
        for default in rule_matches:
            combined = copy.deepcopy(default)
            for key in ('headers', 'queryParams', 'method'):
                if condition.get(key):
                    combined[key] = copy.deepcopy(condition[key])
            if condition.get('path') and condition['path'] != _DEFAULT_PATH:
                combined['path'] = copy.deepcopy(condition['path'])
            merged.append(combined)
    return merged


def _add_response_header(filters, name, value):
    """Add a response header, inside the rule's one ResponseHeaderModifier if it has one."""
    for item in filters:
        if item.get('type') == 'ResponseHeaderModifier':
            modifier = item.setdefault('responseHeaderModifier', {})
            modifier.setdefault('add', []).append({'name': name, 'value': value})
            return
    filters.append({'type': 'ResponseHeaderModifier',
                    'responseHeaderModifier': {'add': [{'name': name, 'value': value}]}})


class GatewayAPIRouter(ObjectRouter):
    name = 'gatewayapi'
    features = frozenset(('match', 'mirror', 'sessionAffinity'))
    api_version = API_VERSION
    kind = KIND

    def _check_request(self, canary, primary_weight, canary_weight, mirrored, match):
        convert_match(match)

    # -- building blocks ----------------------------------------------------------------------

    def _parent_refs(self, canary):
        service = canary['spec'].get('service') or {}
        refs = []
        for gateway in service.get('gatewayRefs') or []:
            ref = {'group': gateway.get('group', GATEWAY_GROUP), 'kind': gateway.get('kind') or 'Gateway',
                   'name': gateway['name']}
            for key in ('namespace', 'sectionName', 'port'):
                if gateway.get(key):
                    ref[key] = gateway[key]
            refs.append(ref)
        if not refs:
            # Mesh (GAMMA) routing: the route attaches to the apex Service.
            refs.append({'group': '', 'kind': 'Service', 'name': self.names(canary)[0],
                         'port': service['port']})
        return refs

    def _rule(self, canary):
        service = canary['spec'].get('service') or {}
        _apex, primary, canary_name = self.names(canary)
        rule = {}
        self._apply_service_fields(canary, rule)
        rule['backendRefs'] = [_backend(primary, 100, service['port']), _backend(canary_name, 0, service['port'])]
        return rule

    @staticmethod
    def _apply_service_fields(canary, rule):
        service = canary['spec'].get('service') or {}
        rule['matches'] = convert_match(service.get('match') or [], 'service.match') or [{'path': dict(_DEFAULT_PATH)}]
        if service.get('timeout'):
            rule['timeouts'] = {'request': service['timeout']}
        else:
            rule.pop('timeouts', None)

    # -- ObjectRouter hooks -------------------------------------------------------------------

    def _new(self, canary):
        spec = {'parentRefs': self._parent_refs(canary), 'rules': [self._rule(canary)]}
        hosts = (canary['spec'].get('service') or {}).get('hosts')
        if hosts:
            spec['hostnames'] = list(hosts)
        return {'apiVersion': API_VERSION, 'kind': KIND, 'metadata': self._metadata(canary), 'spec': spec}

    def _weighted(self, canary, obj):
        canary_name = self.names(canary)[2]
        return [rule for rule in ((obj.get('spec') or {}).get('rules') or [])
                if not _is_managed(rule) and canary_name in _backend_names(rule)]

    def _adopt(self, canary, obj):
        apex, primary, canary_name = self.names(canary)
        port = (canary['spec'].get('service') or {})['port']
        spec = obj.get('spec') or {}
        obj['spec'] = spec
        rules = spec.setdefault('rules', [])
        adopted = False
        for rule in rules:
            refs = rule.get('backendRefs') or []
            if _is_managed(rule) or not refs or _backend_names(rule) != [apex] * len(refs):
                continue
            rule_port = refs[0].get('port') or port
            rule['backendRefs'] = [_backend(primary, 100, rule_port), _backend(canary_name, 0, rule_port)]
            adopted = True
        if adopted:
            return
        raise RouterError('service.name', 'HTTPRoute %s in namespace %s has no rule whose backendRefs are all the '
                                          'apex Service %s, so there is nothing to split; point a rule at Service %s '
                                          '(the primary and canary take it over), or delete the HTTPRoute so that '
                                          'canary_init creates one'
                          % (self.object_name(canary), self.namespace(canary), apex, apex))

    def _sync(self, canary, obj):
        spec = obj.setdefault('spec', {})
        spec['parentRefs'] = self._parent_refs(canary)
        hosts = (canary['spec'].get('service') or {}).get('hosts')
        if hosts:
            spec['hostnames'] = list(hosts)
        else:
            spec.pop('hostnames', None)
        for rule in self._weighted(canary, obj):
            self._apply_service_fields(canary, rule)

    def _mirror_filter(self, canary, port, mirror_weight):
        mirror = {'backendRef': {'group': '', 'kind': 'Service', 'name': self.names(canary)[2], 'port': port}}
        if mirror_weight:
            mirror['percent'] = mirror_weight
        return {'type': 'RequestMirror', 'requestMirror': mirror}

    def _route(self, canary, obj, primary_weight, canary_weight, mirrored, match, mirror_weight):
        _apex, primary, canary_name = self.names(canary)
        match = convert_match(match)
        affinity = (canary['spec'].get('analysis') or {}).get('sessionAffinity') if not match else None
        metadata = obj['metadata']
        cookie = expired = None
        if affinity:
            cookie, expired, metadata['annotations'] = session_cookies(
                metadata.get('annotations'), canary_weight, affinity['cookieName'])

        rules = []
        weighted_count = 0
        for rule in obj['spec'].get('rules') or []:
            if _is_managed(rule):
                continue  # rebuilt below from the weighted rule they belong to
            if canary_name not in _backend_names(rule):
                rules.append(rule)
                continue
            suffix = '-%d' % (weighted_count + 1) if weighted_count else ''
            weighted_count += 1
            port = next(ref.get('port') for ref in rule['backendRefs'] if ref.get('name') == canary_name)
            rule['filters'] = [item for item in rule.get('filters') or []
                               if not (item.get('type') == 'RequestMirror'
                                       and ((item.get('requestMirror') or {}).get('backendRef') or {}).get('name')
                                       == canary_name)]
            weighted = rule
            rule['backendRefs'] = [_backend(primary, primary_weight, port), _backend(canary_name, canary_weight, port)]
            if match:
                weighted = self._derived(rule, MATCH_ROUTE_NAME + suffix,
                                         merge_matches(match, rule.get('matches')))
                weighted['backendRefs'] = [_backend(primary, primary_weight, port),
                                           _backend(canary_name, canary_weight, port)]
                rule['backendRefs'] = [_backend(primary, 100, port), _backend(canary_name, 0, port)]
                rules.append(weighted)
            elif cookie:
                rule['backendRefs'][1]['filters'] = [{
                    'type': 'ResponseHeaderModifier',
                    'responseHeaderModifier': {'add': [{'name': 'Set-Cookie',
                                                        'value': set_cookie_value(cookie, affinity)}]}}]
                sticky = self._derived(rule, STICKY_ROUTE_NAME + suffix, merge_matches(
                    [self._cookie_match(cookie)], rule.get('matches')))
                sticky['backendRefs'] = [_backend(primary, 0, port), _backend(canary_name, 100, port)]
                rules.append(sticky)
            elif expired:
                sticky = self._derived(rule, STICKY_ROUTE_NAME + suffix, merge_matches(
                    [self._cookie_match(expired)], rule.get('matches')))
                _add_response_header(sticky.setdefault('filters', []), 'Set-Cookie', expired_cookie_value(expired))
                rules.append(sticky)
            if mirrored:
                weighted.setdefault('filters', []).append(self._mirror_filter(canary, port, mirror_weight))
            for item in (rule, weighted):
                if not item.get('filters'):
                    item.pop('filters', None)
            rules.append(rule)
        obj['spec']['rules'] = rules

    @staticmethod
    def _cookie_match(cookie):
        return {'path': dict(_DEFAULT_PATH),
                'headers': [{'name': 'Cookie', 'type': 'RegularExpression', 'value': cookie_regex(cookie)}]}

    @staticmethod
    def _derived(rule, name, matches):
        # The collection's own mirror filter was taken off the rule before; the user's filters stay.
        derived = copy.deepcopy(rule)
        derived['name'] = name
        derived['matches'] = matches
        if not derived.get('filters'):
            derived.pop('filters', None)
        return derived

    def _read(self, canary, obj):
        _apex, primary, canary_name = self.names(canary)
        rules = (obj.get('spec') or {}).get('rules') or []
        chosen = [rule for rule in rules if (rule.get('name') or '').startswith(MATCH_ROUTE_NAME)
                  and canary_name in _backend_names(rule)]
        chosen = chosen or self._weighted(canary, obj)
        if not chosen:
            raise RouterError('provider', 'HTTPRoute %s in namespace %s has no rule with backend %s; run canary_init '
                                          'to reconcile it' % (self.object_name(canary), self.namespace(canary),
                                                               canary_name))
        rule = chosen[0]
        weights = {}
        for ref in rule.get('backendRefs') or []:
            # The API defaults an absent weight to 1.
            weights[ref.get('name')] = int(ref.get('weight', 1))
        total = weights.get(primary, 0) + weights.get(canary_name, 0)
        primary_weight, canary_weight = weights.get(primary, 0), weights.get(canary_name, 0)
        if total and total != 100:
            # Gateway API weights are proportions, not percentages.
            canary_weight = int(round(100.0 * canary_weight / total))
            primary_weight = 100 - canary_weight
        mirrored = any(item.get('type') == 'RequestMirror'
                       and ((item.get('requestMirror') or {}).get('backendRef') or {}).get('name') == canary_name
                       for item in rule.get('filters') or [])
        return primary_weight, canary_weight, mirrored
