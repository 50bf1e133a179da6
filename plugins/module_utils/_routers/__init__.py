# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Traffic routers: whatever splits traffic between the primary and the canary.

Private to the collection. Every router offers the interface of Flagger's routers:

``reconcile(canary)``
    Create the routing objects, or adopt the user's, at primary 100 / canary 0. Adopting keeps
    every field the user owns and records the object as it was (an annotation) so that
    ``finalize`` can give it back. Returns True when it wrote something.
``get_routes(canary)``
    ``(primary_weight, canary_weight, mirrored)`` read from the live objects.
``set_routes(canary, primary_weight, canary_weight, mirrored=False, match=None, mirror_weight=None)``
    Write the split. ``match`` None means the Canary's ``analysis.match`` (A/B testing); ``[]`` means
    none. ``mirror_weight`` None means ``analysis.mirrorWeight``. Validates everything before the
    first request, reads each router object once and writes it at most once, only when something
    differs. Returns ``(changed, before, after)``; before/after are
    ``{'weights': {primary, canary, mirrored}, 'objects': {'Kind/name': {metadata, spec}}}``.
``finalize(canary)``
    Restore what was there before the collection took over: adopted objects get their recorded
    spec back, objects the collection created are deleted. Returns True when it wrote something.

``canary`` is the Canary resource as read from the cluster, its ``spec`` already validated by
``_canary.validate_spec``. ``get_router(kube, canary)`` picks the router by the provider's family.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import copy
import json
import random

from ansible_collections.progressive.delivery.plugins.module_utils import _canary as model
from ansible_collections.progressive.delivery.plugins.module_utils._kube import KubeApiError, KubeError

ANNOTATION_PREFIX = model.API_GROUP + '/'
# "created" (delete on finalize) or "adopted" (restore ORIGINAL_SPEC_ANNOTATION on finalize).
MANAGED_ANNOTATION = ANNOTATION_PREFIX + 'router'
MANAGED_CREATED = 'created'
MANAGED_ADOPTED = 'adopted'
ORIGINAL_SPEC_ANNOTATION = ANNOTATION_PREFIX + 'original-spec'
# Flagger keeps the session cookie in the Canary status; the Canary CRD has no field for it, and
# keeping it on the router object costs no extra request.
SESSION_COOKIE_ANNOTATION = ANNOTATION_PREFIX + 'session-affinity-cookie'
PREVIOUS_SESSION_COOKIE_ANNOTATION = ANNOTATION_PREFIX + 'previous-session-affinity-cookie'
# Written by canary_init when it takes over a user's apex Service (see _rollout.ensure_services).
ORIGINAL_SELECTOR_ANNOTATION = ANNOTATION_PREFIX + 'original-selector'
KUBECTL_LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration'

# Names of the routes/rules a router adds next to the weighted ones and removes again.
MATCH_ROUTE_NAME = 'progressive-delivery-match'
STICKY_ROUTE_NAME = 'progressive-delivery-sticky'

_COOKIE_LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'

FEATURE_WORDS = {
    'match': 'match conditions (A/B testing)',
    'mirror': 'traffic mirroring',
    'sessionAffinity': 'session affinity',
}


class RouterError(KubeError):
    """A routing request that cannot be carried out. The message names the field and the fix."""

    def __str__(self):
        return self.message


def check_weights(primary_weight, canary_weight, primary_field='primary_weight', canary_field='canary_weight'):
    """Raise RouterError unless both are integers in 0..100 that sum to 100."""
    for field, value in ((primary_field, primary_weight), (canary_field, canary_weight)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise RouterError(field, '%s must be an integer between 0 and 100, got %r' % (field, value))
        if not 0 <= value <= 100:
            raise RouterError(field, '%s must be between 0 and 100, got %d' % (field, value))
    if primary_weight + canary_weight != 100:
        raise RouterError(primary_field, '%s (%d) and %s (%d) must sum to 100, they sum to %d'
                          % (primary_field, primary_weight, canary_field, canary_weight,
                             primary_weight + canary_weight))


def check_match_list(match, field='match'):
    """Raise RouterError unless match is a list of mappings (Istio HTTPMatchRequest style)."""
    if not isinstance(match, list) or not all(isinstance(item, dict) for item in match):
        raise RouterError(field, '%s must be a list of match conditions, e.g. '
                                 '[{headers: {x-canary: {exact: insider}}}], got %r' % (field, match))


def string_match(value, field, kinds=('exact', 'prefix', 'regex')):
    """(kind, text) of an Istio StringMatch such as {exact: "a"}; exactly one kind allowed."""
    if not isinstance(value, dict):
        raise RouterError(field, '%s must be a mapping with one of %s, got %r' % (field, ', '.join(kinds), value))
    given = [key for key in value if value[key] is not None]
    unknown = [key for key in given if key not in ('exact', 'prefix', 'regex')]
    if unknown or len(given) != 1:
        raise RouterError(field, '%s must have exactly one of %s, got %s'
                          % (field, ', '.join(kinds), ', '.join(sorted(given)) or 'none'))
    kind = given[0]
    if kind not in kinds:
        raise RouterError(field, '%s: %s matching is not supported by this router; use %s'
                          % (field, kind, ' or '.join(kinds)))
    if not isinstance(value[kind], str):
        raise RouterError(field, '%s.%s must be a string, got %r' % (field, kind, value[kind]))
    return kind, value[kind]


def new_cookie(cookie_name):
    """``<cookie_name>=<10 random letters>``, as Flagger names its session-affinity cookies."""
    chooser = random.SystemRandom()
    return '%s=%s' % (cookie_name, ''.join(chooser.choice(_COOKIE_LETTERS) for _index in range(10)))


def cookie_regex(cookie):
    """Regex on the Cookie header that recognises ``name=value`` (Flagger's form)."""
    name, _sep, value = cookie.partition('=')
    return '.*%s.*%s.*' % (name, value)


def set_cookie_value(cookie, affinity):
    """Set-Cookie header value for the canary's cookie, with the attributes the spec asks for."""
    parts = [cookie, 'Max-Age=%d' % int(affinity.get('maxAge') or model.DEFAULT_SESSION_MAX_AGE)]
    if affinity.get('domain'):
        parts.append('Domain=%s' % affinity['domain'])
    if affinity.get('path'):
        parts.append('Path=%s' % affinity['path'])
    if affinity.get('httpOnly'):
        parts.append('HttpOnly')
    if affinity.get('secure'):
        parts.append('Secure')
    if affinity.get('sameSite'):
        parts.append('SameSite=%s' % affinity['sameSite'])
    if affinity.get('partitioned'):
        parts.append('Partitioned')
    return '; '.join(parts)


def expired_cookie_value(cookie):
    """Set-Cookie value that makes the browser drop a previous run's cookie."""
    return '%s; Max-Age=-1' % cookie


def session_cookies(annotations, canary_weight, cookie_name):
    """(cookie to set, cookie to expire, new annotations) for Flagger's session-affinity cycle.

    While the canary gets traffic its responses set a cookie and requests carrying it stick to the
    canary. At weight 0 the cookie becomes the previous one, which is then expired. The same
    inputs give the same outputs, so a repeated call writes nothing.
    """
    annotations = dict(annotations or {})
    current = annotations.get(SESSION_COOKIE_ANNOTATION)
    previous = annotations.get(PREVIOUS_SESSION_COOKIE_ANNOTATION)
    if canary_weight:
        if not current or current.partition('=')[0] != cookie_name:
            current = new_cookie(cookie_name)
        annotations[SESSION_COOKIE_ANNOTATION] = current
        return current, None, annotations
    if current:
        previous = current
        annotations[PREVIOUS_SESSION_COOKIE_ANNOTATION] = previous
    annotations.pop(SESSION_COOKIE_ANNOTATION, None)
    return None, previous, annotations


def dumps(value):
    return json.dumps(value, sort_keys=True, separators=(',', ':'))


def snapshot(obj):
    """What a diff shows of a router object: name, our annotations and labels, and its spec."""
    if obj is None:
        return None
    metadata = obj.get('metadata') or {}
    shown = {'metadata': {'name': metadata.get('name'), 'namespace': metadata.get('namespace')}}
    for key in ('labels', 'annotations'):
        if metadata.get(key):
            values = dict(metadata[key])
            values.pop(KUBECTL_LAST_APPLIED, None)
            shown['metadata'][key] = values
    if 'spec' in obj:
        shown['spec'] = copy.deepcopy(obj['spec'])
    return shown


class Router(object):
    """Base of every router. Subclasses set the class attributes and implement the four methods."""

    #: family name, as _canary.provider_family returns it
    name = None
    #: what the router can do beyond weights: a subset of ('match', 'mirror', 'sessionAffinity')
    features = frozenset()
    #: True when set_routes sizes the primary and target Deployments itself
    scales_workloads = False

    def __init__(self, kube):
        self.kube = kube
        #: things a caller may want to show the user (e.g. a Service that will not split traffic)
        self.warnings = []

    # -- the interface ------------------------------------------------------------------------

    def reconcile(self, canary):
        raise NotImplementedError

    def get_routes(self, canary):
        raise NotImplementedError

    def set_routes(self, canary, primary_weight, canary_weight, mirrored=False, match=None, mirror_weight=None):
        raise NotImplementedError

    def finalize(self, canary):
        raise NotImplementedError

    # -- validation, shared by set_routes and by modules before their first write -------------

    def describe_support(self):
        extras = [FEATURE_WORDS[feature] for feature in ('match', 'mirror', 'sessionAffinity')
                  if feature in self.features]
        return 'weights' + (', ' + ', '.join(extras) if extras else ' only')

    def unsupported(self, feature, field):
        able = sorted(family for family, features in model.PROVIDER_FEATURES.items() if feature in features)
        return RouterError(field, '%s (%s) is not supported by the %s router, which supports %s; use provider %s'
                           % (field, FEATURE_WORDS[feature], self.name, self.describe_support(),
                              ' or '.join(able) or 'none'))

    def check(self, canary, primary_weight, canary_weight, mirrored=False, match=None, mirror_weight=None):
        """Validate a set_routes request without any request to the cluster.

        Returns ``(match, mirror_weight)`` with the Canary's defaults filled in. Raises RouterError.
        """
        check_weights(primary_weight, canary_weight)
        analysis = (canary.get('spec') or {}).get('analysis') or {}
        explicit_match = match is not None
        if match is None:
            match = analysis.get('match') or []
        check_match_list(match, 'match' if explicit_match else 'analysis.match')
        if match and 'match' not in self.features:
            raise self.unsupported('match', 'match' if explicit_match else 'analysis.match')
        if not isinstance(mirrored, bool):
            raise RouterError('mirror', 'mirror must be true or false, got %r' % (mirrored,))
        if mirrored and 'mirror' not in self.features:
            raise self.unsupported('mirror', 'mirror')
        explicit_mirror_weight = mirror_weight is not None
        if mirror_weight is None:
            mirror_weight = analysis.get('mirrorWeight')
        if mirror_weight is not None:
            field = 'mirror_weight' if explicit_mirror_weight else 'analysis.mirrorWeight'
            if isinstance(mirror_weight, bool) or not isinstance(mirror_weight, int) or not 0 <= mirror_weight <= 100:
                raise RouterError(field, '%s must be an integer between 0 and 100, got %r' % (field, mirror_weight))
            if explicit_mirror_weight and not mirrored:
                raise RouterError('mirror_weight', 'mirror_weight only applies with mirror: true; set mirror or '
                                                   'remove mirror_weight')
        if analysis.get('sessionAffinity') and 'sessionAffinity' not in self.features:
            raise self.unsupported('sessionAffinity', 'analysis.sessionAffinity')
        self._check_request(canary, primary_weight, canary_weight, mirrored, match)
        return match, (mirror_weight or None)

    def _check_request(self, canary, primary_weight, canary_weight, mirrored, match):
        """Router-specific checks (match syntax, combinations); raise RouterError."""

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def names(canary):
        """(apex, primary, canary) Service names."""
        return model.service_names(canary['spec'])

    @staticmethod
    def namespace(canary):
        return canary['metadata']['namespace']

    def _missing(self, kind, name, canary):
        return RouterError('provider', '%s %s not found in namespace %s: the %s router has not been set up for '
                                       'Canary %s; run canary_init first (it reconciles the router)'
                           % (kind, name, self.namespace(canary), self.name, canary['metadata']['name']))

    def _write(self, current, desired, rebuild=None):
        """Create ``desired`` (current None) or replace ``current`` with it, only when they differ.

        The replace carries the resourceVersion that was read, so a concurrent change is never
        overwritten: on a conflict the object is read again and ``rebuild(obj)`` recomputes it,
        through update_with_retry. Returns the object as the server answered (dry run included).
        """
        if current is None:
            return self.kube.create(desired)
        if desired == current:
            return current
        desired = copy.deepcopy(desired)
        desired['metadata']['resourceVersion'] = current['metadata'].get('resourceVersion')
        try:
            return self.kube.replace(desired)
        except KubeApiError as error:
            if error.status != 409 or rebuild is None:
                raise
        metadata = current['metadata']
        _before, after = self.kube.update_with_retry(current['apiVersion'], current['kind'], metadata['name'],
                                                     metadata.get('namespace'), rebuild)
        return after

    def restore_apex_service(self, canary):
        """Give the apex Service back the selector it had before canary_init took it over.

        canary_init records that selector in an annotation when it adopts a user's Service; a
        Service it created itself has none and is left alone.
        """
        apex = self.names(canary)[0]
        namespace = self.namespace(canary)
        current = self.kube.get('v1', 'Service', apex, namespace)
        if current is None:
            return False
        annotations = (current['metadata'].get('annotations') or {})
        original = annotations.get(ORIGINAL_SELECTOR_ANNOTATION)
        if original is None:
            return False
        desired = copy.deepcopy(current)
        desired['spec']['selector'] = json.loads(original)
        desired['metadata']['annotations'].pop(ORIGINAL_SELECTOR_ANNOTATION)
        self._write(current, desired)
        return True


class ObjectRouter(Router):
    """A router whose whole state is one object named after the apex Service (VirtualService,
    HTTPRoute, TrafficSplit): created when missing, adopted when the user has one.

    Subclasses implement ``_new(canary)``, ``_adopt(canary, obj)``, ``_weighted(canary, obj)``,
    ``_sync(canary, obj)``, ``_route(canary, obj, ...)`` and ``_read(canary, obj)``; each works on a
    dict in memory, so the class does the requests: one GET, at most one write.
    """

    api_version = None
    kind = None

    def object_name(self, canary):
        return self.names(canary)[0]

    def _get(self, canary):
        return self.kube.get(self.api_version, self.kind, self.object_name(canary), self.namespace(canary))

    def _label(self, canary):
        return '%s/%s' % (self.kind, self.object_name(canary))

    def _result(self, canary, obj):
        return {'weights': self._weights_dict(self._read(canary, obj)) if obj else None,
                'objects': {self._label(canary): snapshot(obj)}}

    @staticmethod
    def _weights_dict(weights):
        primary, canary_weight, mirrored = weights
        return {'primary': primary, 'canary': canary_weight, 'mirrored': mirrored}

    # -- interface ----------------------------------------------------------------------------

    def reconcile(self, canary):
        current = self._get(canary)
        if current is None:
            self.kube.create(self._new(canary))
            return True
        desired = self._reconciled(canary, current)
        self._write(current, desired, lambda obj: self._reconciled(canary, obj))
        return desired != current

    def _reconciled(self, canary, current):
        desired = copy.deepcopy(current)
        annotations = desired['metadata'].setdefault('annotations', {})
        managed = annotations.get(MANAGED_ANNOTATION)
        if not self._weighted(canary, desired):
            if managed != MANAGED_CREATED:
                # The user's object (or the user re-applied it since): remember it as it is now.
                annotations[ORIGINAL_SPEC_ANNOTATION] = dumps(current.get('spec') or {})
                annotations[MANAGED_ANNOTATION] = MANAGED_ADOPTED
            self._adopt(canary, desired)
        if annotations.get(MANAGED_ANNOTATION) == MANAGED_CREATED:
            self._sync(canary, desired)
        return desired

    def get_routes(self, canary):
        current = self._get(canary)
        if current is None:
            raise self._missing(self.kind, self.object_name(canary), canary)
        return self._read(canary, current)

    def set_routes(self, canary, primary_weight, canary_weight, mirrored=False, match=None, mirror_weight=None):
        match, mirror_weight = self.check(canary, primary_weight, canary_weight, mirrored, match, mirror_weight)
        current = self._get(canary)
        if current is None:
            raise self._missing(self.kind, self.object_name(canary), canary)

        def build(obj):
            desired = copy.deepcopy(obj)
            if not self._weighted(canary, desired):
                raise RouterError('provider', '%s has no route to %s: it was changed since canary_init '
                                              'reconciled it; run canary_init again'
                                  % (self._label(canary), self.names(canary)[2]))
            self._route(canary, desired, primary_weight, canary_weight, mirrored, match, mirror_weight)
            return desired

        desired = build(current)
        after = self._write(current, desired, build)
        return desired != current, self._result(canary, current), self._result(canary, after)

    def finalize(self, canary):
        changed = self._finalize_object(canary)
        return self.restore_apex_service(canary) or changed

    def _finalize_object(self, canary):
        current = self._get(canary)
        if current is None:
            return False
        annotations = current['metadata'].get('annotations') or {}
        managed = annotations.get(MANAGED_ANNOTATION)
        if managed == MANAGED_CREATED:
            self.kube.delete(self.api_version, self.kind, self.object_name(canary), self.namespace(canary))
            return True
        if managed != MANAGED_ADOPTED or ORIGINAL_SPEC_ANNOTATION not in annotations:
            return False

        def restored(obj):
            desired = copy.deepcopy(obj)
            notes = desired['metadata'].get('annotations') or {}
            original = notes.get(ORIGINAL_SPEC_ANNOTATION)
            if original is not None:
                desired['spec'] = json.loads(original)
            for key in (MANAGED_ANNOTATION, ORIGINAL_SPEC_ANNOTATION, SESSION_COOKIE_ANNOTATION,
                        PREVIOUS_SESSION_COOKIE_ANNOTATION):
                notes.pop(key, None)
            return desired

        self._write(current, restored(current), restored)
        return True

    # -- hooks --------------------------------------------------------------------------------

    def _new(self, canary):
        raise NotImplementedError

    def _adopt(self, canary, obj):
        raise NotImplementedError

    def _weighted(self, canary, obj):
        raise NotImplementedError

    def _sync(self, canary, obj):
        """Bring the fields the Canary spec owns up to date on an object the collection created."""

    def _route(self, canary, obj, primary_weight, canary_weight, mirrored, match, mirror_weight):
        raise NotImplementedError

    def _read(self, canary, obj):
        raise NotImplementedError

    def _metadata(self, canary):
        """Metadata of a created object: spec.service.apex labels and annotations, and our mark."""
        apex = (canary['spec'].get('service') or {}).get('apex') or {}
        annotations = dict(apex.get('annotations') or {})
        annotations[MANAGED_ANNOTATION] = MANAGED_CREATED
        metadata = {'name': self.object_name(canary), 'namespace': self.namespace(canary),
                    'annotations': annotations}
        if apex.get('labels'):
            metadata['labels'] = dict(apex['labels'])
        return metadata


def read_canary(kube, name, namespace, given=None):
    """The Canary with its spec validated (defaults filled in), or RouterError naming the field.

    ``given``, the Canary as a previous task returned it, stands in for the read."""
    found = copy.deepcopy(given) if given is not None else kube.get(model.API_VERSION, model.KIND, name, namespace)
    if found is None:
        raise RouterError('name', 'Canary %s not found in namespace %s; create it with canary_init first, or '
                                  'correct name/namespace' % (name, namespace))
    try:
        found['spec'] = model.validate_spec(found.get('spec') or {})
    except model.SpecError as error:
        raise RouterError('spec.' + error.field, 'the Canary %s in namespace %s is invalid: %s'
                          % (name, namespace, error.message))
    return found


def set_weights(kube, name, namespace, primary_weight, canary_weight, mirrored=False, match=None,
                mirror_weight=None, given=None):
    """What mesh_weight does: route through the Canary's router and record the weights in its status.

    Every check (weights, the Canary, its provider, match and mirror support) runs before the
    first write, so a bad request changes nothing. ``given`` is the Canary as a previous task
    returned it (saves the read). Returns the module result, with the Canary as last written.
    """
    check_weights(primary_weight, canary_weight)
    canary = read_canary(kube, name, namespace, given)
    latest = copy.deepcopy(given) if given is not None else None
    router = get_router(kube, canary)
    router.check(canary, primary_weight, canary_weight, mirrored, match, mirror_weight)
    routes_changed, before, after = router.set_routes(canary, primary_weight, canary_weight, mirrored, match,
                                                      mirror_weight)
    status = canary.get('status') or {}
    recorded = {'canaryWeight': canary_weight, 'primaryWeight': primary_weight}
    previous_status = dict((key, status.get(key)) for key in recorded)
    status_changed = previous_status != recorded
    if status_changed:
        latest = kube.patch_status(model.API_VERSION, model.KIND, name, namespace, {'status': recorded})
    status_label = '%s/%s/status' % (model.KIND, name)
    before_objects = dict(before['objects'], **{status_label: previous_status})
    after_objects = dict(after['objects'], **{status_label: recorded})
    return {
        'changed': routes_changed or status_changed,
        'provider': canary['spec']['provider'],
        'router': router.name,
        'previous': before['weights'],
        'weights': after['weights'],
        'warnings': list(router.warnings),
        'diff': {'before': before_objects, 'after': after_objects},
        'canary': latest or canary,
    }


def get_router(kube, canary):
    """The router for the Canary's provider (raises RouterError naming ``provider``)."""
    spec = canary.get('spec') or {}
    provider = spec.get('provider') or model.DEFAULT_PROVIDER
    try:
        family = model.provider_family(provider)
    except model.SpecError as error:
        raise RouterError('provider', error.message)
    # Imported here: each router module imports this package for the base class.
    if family == 'istio':
        from ansible_collections.progressive.delivery.plugins.module_utils._routers.istio import IstioRouter
        return IstioRouter(kube)
    if family == 'gatewayapi':
        from ansible_collections.progressive.delivery.plugins.module_utils._routers.gatewayapi import GatewayAPIRouter
        return GatewayAPIRouter(kube)
    if family == 'smi':
        from ansible_collections.progressive.delivery.plugins.module_utils._routers.smi import SMIRouter
        return SMIRouter(kube)
    if family == 'nginx':
        from ansible_collections.progressive.delivery.plugins.module_utils._routers.nginx import NginxRouter
        return NginxRouter(kube)
    from ansible_collections.progressive.delivery.plugins.module_utils._routers.kubernetes import KubernetesRouter
    return KubernetesRouter(kube)
