# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""NGINX router: a canary Ingress beside the user's, with ingress-nginx canary annotations.

The user's Ingress (``spec.ingressRef``) is only read, never written. Its copy,
``<ingressRef.name>-canary`` (Flagger's name), sends the apex Service's paths to
``<apex>-canary``; ingress-nginx then gives it ``canary-weight`` percent of the traffic. A/B
testing uses ``canary-by-header`` (with ``canary-by-header-value`` for an exact value or
``canary-by-header-pattern`` for a regex) and ``canary-by-cookie``: ingress-nginx sends every
matching request to the canary, so with match conditions the canary weight is 0 (off) or 100
(matching requests to the canary, the rest to the primary). No mirroring.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import copy
import re

from ansible_collections.progressive.delivery.plugins.module_utils._routers import (
    ANNOTATION_PREFIX, KUBECTL_LAST_APPLIED, MANAGED_ANNOTATION, MANAGED_CREATED, Router, RouterError, snapshot,
    string_match,
)

API_VERSION = 'networking.k8s.io/v1'
KIND = 'Ingress'
NGINX_PREFIX = 'nginx.ingress.kubernetes.io/'
CANARY = NGINX_PREFIX + 'canary'
CANARY_WEIGHT = NGINX_PREFIX + 'canary-weight'
CANARY_BY_HEADER = NGINX_PREFIX + 'canary-by-header'
CANARY_BY_HEADER_VALUE = NGINX_PREFIX + 'canary-by-header-value'
CANARY_BY_HEADER_PATTERN = NGINX_PREFIX + 'canary-by-header-pattern'
CANARY_BY_COOKIE = NGINX_PREFIX + 'canary-by-cookie'
SOURCE_ANNOTATION = ANNOTATION_PREFIX + 'source-ingress'
_MATCH_ANNOTATIONS = (CANARY_BY_HEADER, CANARY_BY_HEADER_VALUE, CANARY_BY_HEADER_PATTERN, CANARY_BY_COOKIE)


def match_annotations(match, field='match'):
    """ingress-nginx annotations for Istio-style match conditions; RouterError for what it cannot do.

    ingress-nginx has one canary-by-header and one canary-by-cookie per canary Ingress. A cookie
    condition names the cookie (``cookie: {exact: <name>}``, as in Flagger): requests whose cookie
    of that name is ``always`` go to the canary.
    """
    annotations = {}
    header = None
    for index, condition in enumerate(match):
        where = '%s[%d]' % (field, index)
        other = sorted(set(condition) - set(['headers']))
        if other or not isinstance(condition.get('headers'), dict) or not condition['headers']:
            raise RouterError(field, '%s: the nginx router matches on one header and one cookie only (ingress-nginx '
                                     'canary-by-header and canary-by-cookie), e.g. {headers: {x-canary: {exact: '
                                     'insider}}}; got %s' % (where, ', '.join(other) or 'no headers'))
        for name, value in condition['headers'].items():
            if name.lower() == 'cookie':
                _kind, cookie = string_match(value, '%s.headers.cookie' % where, kinds=('exact',))
                if annotations.get(CANARY_BY_COOKIE, cookie) != cookie:
                    raise RouterError(field, '%s: the nginx router matches on one cookie only; got %s and %s'
                                      % (where, annotations[CANARY_BY_COOKIE], cookie))
                annotations[CANARY_BY_COOKIE] = cookie
                continue
            if header is not None and header != name.lower():
                raise RouterError(field, '%s: the nginx router matches on one header only (ingress-nginx has one '
                                         'canary-by-header); got %s and %s' % (where, header, name))
            header = name.lower()
            kind, text = string_match(value, '%s.headers.%s' % (where, name))
            values = dict(annotations)
            values[CANARY_BY_HEADER] = name
            if kind == 'exact':
                values[CANARY_BY_HEADER_VALUE] = text
            else:
                values[CANARY_BY_HEADER_PATTERN] = text if kind == 'regex' else '^%s.*' % re.escape(text)
            for key in (CANARY_BY_HEADER_VALUE, CANARY_BY_HEADER_PATTERN):
                if key in annotations and annotations[key] != values.get(key):
                    raise RouterError(field, '%s: the nginx router matches one value of header %s; got %s and %s'
                                      % (where, name, annotations[key], values.get(key)))
            annotations = values
    return annotations


class NginxRouter(Router):
    name = 'nginx'
    features = frozenset(('match',))

    # -- names --------------------------------------------------------------------------------

    @staticmethod
    def source_name(canary):
        return ((canary['spec'].get('ingressRef') or {}).get('name'))

    def object_name(self, canary):
        return '%s-canary' % self.source_name(canary)

    def _label(self, canary):
        return '%s/%s' % (KIND, self.object_name(canary))

    # -- validation ---------------------------------------------------------------------------

    def _check_request(self, canary, primary_weight, canary_weight, mirrored, match):
        if not self.source_name(canary):
            raise RouterError('ingressRef.name', 'ingressRef.name is required with provider nginx: the canary '
                                                 'Ingress is made from the Ingress it names')
        match_annotations(match)
        if match and canary_weight not in (0, 100):
            raise RouterError('canary_weight', 'with match conditions the nginx router sends every matching request '
                                               'to the canary (ingress-nginx canary-by-header/cookie): canary weight '
                                               'must be 0 (off) or 100 (on), got %d' % canary_weight)

    # -- building blocks ----------------------------------------------------------------------

    def _canary_spec(self, canary, source):
        apex, _primary, canary_name = self.names(canary)
        spec = copy.deepcopy(source.get('spec') or {})
        found = 0
        backends = [spec.get('defaultBackend')]
        for rule in spec.get('rules') or []:
            backends.extend(path.get('backend') for path in ((rule.get('http') or {}).get('paths') or []))
        for backend in backends:
            service = (backend or {}).get('service') or {}
            if service.get('name') == apex:
                service['name'] = canary_name
                found += 1
        if not found:
            raise RouterError('ingressRef.name', 'Ingress %s in namespace %s has no backend for the apex Service %s, '
                                                 'so a canary Ingress would route nothing; point its paths at Service '
                                                 '%s' % (self.source_name(canary), self.namespace(canary), apex, apex))
        return spec

    @staticmethod
    def _copied_annotations(source):
        # ingress-nginx ignores most annotations on a canary Ingress, but the copy keeps them so
        # that it reads like the original; never the canary ones or kubectl's bookkeeping.
        return dict((key, value) for key, value in ((source['metadata'].get('annotations') or {}).items())
                    if not key.startswith(CANARY) and key != KUBECTL_LAST_APPLIED
                    and not key.startswith(ANNOTATION_PREFIX))

    def _get(self, canary, name):
        return self.kube.get(API_VERSION, KIND, name, self.namespace(canary))

    @staticmethod
    def _ours(obj):
        return (obj['metadata'].get('annotations') or {}).get(MANAGED_ANNOTATION) == MANAGED_CREATED

    def _not_ours(self, canary):
        return RouterError('ingressRef.name', 'Ingress %s in namespace %s exists but was not created by '
                                              'progressive.delivery; rename or delete it, the nginx router needs the '
                                              'name for the canary Ingress' % (self.object_name(canary),
                                                                               self.namespace(canary)))

    # -- interface ----------------------------------------------------------------------------

    def reconcile(self, canary):
        if not self.source_name(canary):
            raise RouterError('ingressRef.name', 'ingressRef.name is required with provider nginx')
        source = self._get(canary, self.source_name(canary))
        if source is None:
            raise RouterError('ingressRef.name', 'Ingress %s (spec.ingressRef.name) not found in namespace %s; '
                                                 'create it, routing to Service %s'
                              % (self.source_name(canary), self.namespace(canary), self.names(canary)[0]))
        spec = self._canary_spec(canary, source)
        current = self._get(canary, self.object_name(canary))
        if current is None:
            annotations = self._copied_annotations(source)
            annotations.update({CANARY: 'true', CANARY_WEIGHT: '0', MANAGED_ANNOTATION: MANAGED_CREATED,
                                SOURCE_ANNOTATION: self.source_name(canary)})
            metadata = {'name': self.object_name(canary), 'namespace': self.namespace(canary),
                        'annotations': annotations}
            if source['metadata'].get('labels'):
                metadata['labels'] = dict(source['metadata']['labels'])
            self.kube.create({'apiVersion': API_VERSION, 'kind': KIND, 'metadata': metadata, 'spec': spec})
            return True
        if not self._ours(current):
            raise self._not_ours(canary)

        def rebuild(obj):
            desired = copy.deepcopy(obj)
            desired['spec'] = spec
            return desired

        desired = rebuild(current)
        self._write(current, desired, rebuild)
        return desired != current

    def _weights(self, obj):
        annotations = obj['metadata'].get('annotations') or {}
        if annotations.get(CANARY) != 'true':
            return 100, 0, False
        if any(annotations.get(key) for key in (CANARY_BY_HEADER, CANARY_BY_COOKIE)):
            return 0, 100, False
        try:
            weight = int(annotations.get(CANARY_WEIGHT) or 0)
        except ValueError:
            raise RouterError('provider', 'Ingress %s has annotation %s=%r, not a number; run mesh_weight to set it'
                              % (obj['metadata']['name'], CANARY_WEIGHT, annotations.get(CANARY_WEIGHT)))
        weight = max(0, min(100, weight))
        return 100 - weight, weight, False

    def _result(self, canary, obj):
        primary, canary_weight, mirrored = self._weights(obj)
        return {'weights': {'primary': primary, 'canary': canary_weight, 'mirrored': mirrored},
                'objects': {self._label(canary): snapshot(obj)}}

    def get_routes(self, canary):
        current = self._get(canary, self.object_name(canary))
        if current is None:
            raise self._missing(KIND, self.object_name(canary), canary)
        return self._weights(current)

    def set_routes(self, canary, primary_weight, canary_weight, mirrored=False, match=None, mirror_weight=None):
        match, _mirror_weight = self.check(canary, primary_weight, canary_weight, mirrored, match, mirror_weight)
        wanted = match_annotations(match) if match and canary_weight else {}
        current = self._get(canary, self.object_name(canary))
        if current is None:
            raise self._missing(KIND, self.object_name(canary), canary)
        if not self._ours(current):
            raise self._not_ours(canary)

        def build(obj):
            desired = copy.deepcopy(obj)
            annotations = desired['metadata'].setdefault('annotations', {})
            for key in _MATCH_ANNOTATIONS:
                annotations.pop(key, None)
            annotations.update(wanted)
            annotations[CANARY] = 'true'
            annotations[CANARY_WEIGHT] = '0' if match else str(canary_weight)
            return desired

        desired = build(current)
        after = self._write(current, desired, build)
        return desired != current, self._result(canary, current), self._result(canary, after)

    def finalize(self, canary):
        changed = False
        current = self._get(canary, self.object_name(canary)) if self.source_name(canary) else None
        if current is not None and self._ours(current):
            self.kube.delete(API_VERSION, KIND, self.object_name(canary), self.namespace(canary))
            changed = True
        return self.restore_apex_service(canary) or changed
