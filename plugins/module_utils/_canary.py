# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Canary custom resource: spec validation, revision hashing, phases and the run lock.

Everything here is pure: no API calls and no kubernetes import, so the modules can share it and
the unit tests can pin it down. Times are timezone-aware UTC datetimes and are written into the
status as RFC 3339 strings ("2026-01-31T12:00:00Z"), the form the apiserver stores for date-time.

This file is private to the collection (the leading underscore): its API may change between
minor releases.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import copy
import datetime
import difflib
import hashlib
import json
import math
import os
import re
import socket

from collections.abc import Mapping


API_GROUP = 'progressive.delivery'
API_VERSION_NAME = 'v1alpha1'
API_VERSION = API_GROUP + '/' + API_VERSION_NAME
KIND = 'Canary'
PLURAL = 'canaries'
CRD_NAME = PLURAL + '.' + API_GROUP

FLAGGER_API_VERSIONS = ('flagger.app/v1beta1',)

PHASE_NONE = ''
PHASE_INITIALIZING = 'Initializing'
PHASE_INITIALIZED = 'Initialized'
PHASE_WAITING = 'Waiting'
PHASE_PROGRESSING = 'Progressing'
PHASE_WAITING_PROMOTION = 'WaitingPromotion'
PHASE_PROMOTING = 'Promoting'
PHASE_FINALISING = 'Finalising'
PHASE_SUCCEEDED = 'Succeeded'
PHASE_FAILED = 'Failed'
PHASE_TERMINATING = 'Terminating'
PHASE_TERMINATED = 'Terminated'

PHASES = (
    PHASE_NONE, PHASE_INITIALIZING, PHASE_INITIALIZED, PHASE_WAITING, PHASE_PROGRESSING,
    PHASE_WAITING_PROMOTION, PHASE_PROMOTING, PHASE_FINALISING, PHASE_SUCCEEDED, PHASE_FAILED,
    PHASE_TERMINATING, PHASE_TERMINATED,
)

# The phases in which a run owns the traffic split; the same list Flagger's shouldAdvance uses.
ACTIVE_PHASES = frozenset((
    PHASE_WAITING, PHASE_PROGRESSING, PHASE_WAITING_PROMOTION, PHASE_PROMOTING, PHASE_FINALISING,
))

# Moves not listed are bugs in the caller (e.g. promoting a revision that never ran). Re-writing the
# same phase is always allowed, so weight and iteration updates inside a phase need no entry here.
ALLOWED_TRANSITIONS = {
    PHASE_NONE: frozenset((PHASE_INITIALIZING, PHASE_INITIALIZED, PHASE_TERMINATING)),
    PHASE_INITIALIZING: frozenset((PHASE_INITIALIZED, PHASE_FAILED, PHASE_TERMINATING)),
    # Initialized -> Succeeded is skipAnalysis promoting the first revision outright.
    PHASE_INITIALIZED: frozenset((PHASE_WAITING, PHASE_PROGRESSING, PHASE_SUCCEEDED, PHASE_TERMINATING)),
    PHASE_WAITING: frozenset((PHASE_PROGRESSING, PHASE_FAILED, PHASE_TERMINATING)),
    # Progressing -> Succeeded is skipAnalysis; Progressing -> Promoting skips WaitingPromotion when
    # there is no confirm-promotion hook.
    PHASE_PROGRESSING: frozenset((
        PHASE_WAITING_PROMOTION, PHASE_PROMOTING, PHASE_SUCCEEDED, PHASE_FAILED, PHASE_TERMINATING,
    )),
    # WaitingPromotion -> Progressing is a new revision arriving while the promotion gate is closed:
    # Flagger restarts the analysis, so do we.
    PHASE_WAITING_PROMOTION: frozenset((PHASE_PROMOTING, PHASE_PROGRESSING, PHASE_FAILED, PHASE_TERMINATING)),
    PHASE_PROMOTING: frozenset((PHASE_FINALISING, PHASE_FAILED, PHASE_TERMINATING)),
    PHASE_FINALISING: frozenset((PHASE_SUCCEEDED, PHASE_FAILED, PHASE_TERMINATING)),
    # A finished run may only be followed by a new run (or re-initialisation after drift).
    PHASE_SUCCEEDED: frozenset((
        PHASE_INITIALIZING, PHASE_INITIALIZED, PHASE_WAITING, PHASE_PROGRESSING, PHASE_TERMINATING,
    )),
    PHASE_FAILED: frozenset((
        PHASE_INITIALIZING, PHASE_INITIALIZED, PHASE_WAITING, PHASE_PROGRESSING, PHASE_TERMINATING,
    )),
    PHASE_TERMINATING: frozenset((PHASE_TERMINATED,)),
    PHASE_TERMINATED: frozenset(),
}

# Same switch as Flagger's flagger.app/config-tracking annotation, under our own group.
CONFIG_TRACKING_ANNOTATION = API_GROUP + '/config-tracking'
CONFIG_TRACKING_DISABLED = 'disabled'

GATE_HISTORY_LIMIT = 50
# The CRD declares these for gateHistory items and prunes anything else, so extra detail belongs
# under 'metrics' (which is free-form).
GATE_ENTRY_FIELDS = ('time', 'runId', 'weight', 'iteration', 'verdict', 'failedChecks', 'metrics', 'message',
                     'rollback')
PRIMARY_SUFFIX = '-primary'
CANARY_SUFFIX = '-canary'

# Defaults are Flagger's, so a manifest brought across behaves the same.
DEFAULT_PROVIDER = 'kubernetes'
DEFAULT_PROGRESS_DEADLINE_SECONDS = 600
DEFAULT_INTERVAL = '1m'
DEFAULT_METRIC_INTERVAL = '1m'
DEFAULT_THRESHOLD = 1
DEFAULT_MAX_WEIGHT = 100
DEFAULT_READY_THRESHOLD = 100
DEFAULT_PORT_NAME = 'http'
DEFAULT_WEBHOOK_TIMEOUT = '10s'
DEFAULT_SESSION_MAX_AGE = 86400
DEFAULT_FAILED_CHECKS_MODE = 'cumulative'
DEFAULT_NO_DATA_POLICY = 'fail'

FAILED_CHECKS_MODES = ('cumulative', 'consecutive')
NO_DATA_POLICIES = ('fail', 'inconclusive', 'pass')
WEBHOOK_TYPES = (
    'confirm-rollout', 'pre-rollout', 'rollout', 'confirm-traffic-increase', 'confirm-promotion',
    'post-rollout', 'rollback', 'event',
)
ALERT_SEVERITIES = ('info', 'warn', 'error')
BUILTIN_METRICS = ('request-success-rate', 'request-duration')
TARGET_KINDS = ('Deployment',)
TARGET_API_VERSION = 'apps/v1'

# Spelling -> router family. The spelling is kept in the spec (linkerd and osm need different
# metric queries); the router factory picks by family.
KNOWN_PROVIDERS = {
    'istio': 'istio',
    'gatewayapi': 'gatewayapi',
    'gatewayapi:v1': 'gatewayapi',
    'gatewayapi:v1beta1': 'gatewayapi',
    'smi': 'smi',
    'smi:v1alpha1': 'smi',
    'smi:v1alpha2': 'smi',
    'smi:v1alpha3': 'smi',
    'linkerd': 'smi',
    'osm': 'smi',
    'nginx': 'nginx',
    'kubernetes': 'kubernetes',
}

# What each router family can do beyond weights, so a spec asking for the impossible fails at
# validation instead of half-way through a run. Router authors: keep this in step with _routers/.
PROVIDER_FEATURES = {
    'istio': frozenset(('match', 'mirror', 'sessionAffinity')),
    'gatewayapi': frozenset(('match', 'mirror', 'sessionAffinity')),
    'smi': frozenset(),
    'nginx': frozenset(('match',)),
    'kubernetes': frozenset(),
}

# Flagger only tracks Secrets an application reads; registry and token Secrets belong to the
# service account and are left alone.
TRACKED_SECRET_TYPES = frozenset((
    'Opaque', 'kubernetes.io/basic-auth', 'kubernetes.io/ssh-auth', 'kubernetes.io/tls',
))

DURATION_FORMS = '"30s", "1m", "1m30s", "500ms" or "2h"'
_DURATION_PART = re.compile(r'([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)')
_DURATION_FULL = re.compile(r'^(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h))+$')
_DURATION_UNITS = {'ms': 0.001, 's': 1.0, 'm': 60.0, 'h': 3600.0}

_DNS1123_LABEL = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')
_DNS1123_SUBDOMAIN = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')
_DNS1035_LABEL = re.compile(r'^[a-z]([-a-z0-9]*[a-z0-9])?$')
# Services are DNS-1035 labels of at most 63 characters and we append "-primary" to the apex name.
_MAX_SERVICE_BASE_LENGTH = 63 - len(PRIMARY_SUFFIX)

_RFC3339 = re.compile(
    r'^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$'
)

_SPEC_FIELDS = (
    'targetRef', 'autoscalerRef', 'ingressRef', 'service', 'provider', 'metricsServer',
    'progressDeadlineSeconds', 'skipAnalysis', 'suspend', 'revertOnDeletion', 'analysis',
)
_ANALYSIS_FIELDS = (
    'interval', 'iterations', 'threshold', 'maxWeight', 'stepWeight', 'stepWeights',
    'stepWeightPromotion', 'primaryReadyThreshold', 'canaryReadyThreshold', 'match', 'mirror',
    'mirrorWeight', 'sessionAffinity', 'metrics', 'webhooks', 'alerts', 'failedChecksMode',
)
_SERVICE_FIELDS = (
    'name', 'port', 'portName', 'targetPort', 'portDiscovery', 'appProtocol', 'timeout', 'hosts',
    'gateways', 'gatewayRefs', 'delegation', 'match', 'rewrite', 'retries', 'headers', 'corsPolicy',
    'trafficPolicy', 'mirror', 'apex', 'primary', 'canary', 'headless', 'backendTimeout',
    'trafficDistribution', 'unmanagedMetadata',
)
_METRIC_FIELDS = (
    'name', 'interval', 'threshold', 'thresholdRange', 'query', 'templateRef', 'templateVariables',
    'noDataPolicy',
)
_WEBHOOK_FIELDS = ('name', 'type', 'url', 'timeout', 'metadata', 'muteAlert', 'retries', 'disableTLS')

# Flagger fields that only make sense for providers or targets we do not drive.
_FLAGGER_ONLY_SPEC_FIELDS = ('routeRef', 'upstreamRef')
_FLAGGER_ONLY_SERVICE_FIELDS = ('meshName', 'backends')


class SpecError(ValueError):
    """A Canary spec that cannot be run. ``field`` is the dotted path of the offending field."""

    def __init__(self, field, message):
        super().__init__(message)
        self.field = field
        self.message = message


class PhaseTransitionError(ValueError):
    """A status write that would move the phase somewhere the run model does not allow."""

    def __init__(self, old, new, message):
        super().__init__(message)
        self.old = old
        self.new = new
        self.message = message


class LockHeldError(Exception):
    """The run lock is held by someone else and has not expired."""

    def __init__(self, holder, expires_at, message):
        super().__init__(message)
        self.holder = holder
        self.expires_at = expires_at
        self.message = message


# --------------------------------------------------------------------------------------------
# durations and times
# --------------------------------------------------------------------------------------------

def parse_duration(text):
    """Seconds (float) of a Go-style duration: "30s", "1m", "1m30s", "500ms", "2h", "1.5h".

    Raises ValueError naming the accepted forms. Bare numbers are refused on purpose: "60" could
    mean seconds or minutes depending on whom you ask, and Flagger and the CRD both want a unit.
    """
    if isinstance(text, bool) or not isinstance(text, str):
        raise ValueError('expected a duration string like %s, got %r' % (DURATION_FORMS, text))
    stripped = text.strip()
    if not _DURATION_FULL.match(stripped):
        raise ValueError('expected a duration like %s, got "%s"' % (DURATION_FORMS, text))
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(stripped))


def format_time(moment):
    """RFC 3339 UTC with second precision, the form the apiserver stores for date-time fields."""
    return _as_utc(moment).strftime('%Y-%m-%dT%H:%M:%SZ')


def parse_time(text):
    """Aware UTC datetime from an RFC 3339 string ('Z' or an offset; fractions allowed)."""
    if isinstance(text, datetime.datetime):
        return _as_utc(text)
    match = _RFC3339.match(text or '')
    if not match:
        raise ValueError('expected an RFC 3339 time like "2026-01-31T12:00:00Z", got %r' % (text,))
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    micro = int((fraction or '0')[:6].ljust(6, '0'))
    moment = datetime.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                               micro, tzinfo=datetime.timezone.utc)
    if not zulu:
        offset = datetime.timedelta(hours=int(off_h), minutes=int(off_m))
        moment = moment - offset if sign == '+' else moment + offset
    return moment


def _as_utc(moment):
    # Naive datetimes are taken as UTC: the modules only ever build them from utcnow-like sources.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


# --------------------------------------------------------------------------------------------
# providers and strategies
# --------------------------------------------------------------------------------------------

def provider_family(provider):
    """Router family ('istio', 'gatewayapi', 'smi', 'nginx', 'kubernetes') of a provider spelling."""
    family = KNOWN_PROVIDERS.get(provider)
    if family is None:
        raise SpecError('provider', _unknown_provider_message(provider))
    return family


def _unknown_provider_message(provider):
    return 'provider must be one of %s, got "%s"' % (', '.join(sorted(KNOWN_PROVIDERS)), provider)


def strategy(spec):
    """'ab', 'bluegreen-mirror', 'bluegreen' or 'canary', with Flagger's precedence.

    A/B needs match conditions and iterations; iterations without match is blue/green (mirrored when
    analysis.mirror is set); anything else walks weights.
    """
    analysis = (spec or {}).get('analysis') or {}
    iterations = analysis.get('iterations') or 0
    if iterations > 0 and analysis.get('match'):
        return 'ab'
    if iterations > 0:
        return 'bluegreen-mirror' if analysis.get('mirror') else 'bluegreen'
    return 'canary'


def weight_steps(analysis):
    """Canary weights a run walks through, in order; empty for A/B and blue/green.

    stepWeights is taken as written. With stepWeight, weights grow by that step up to maxWeight
    (default 100). Unlike Flagger, which can overshoot (stepWeight 20, maxWeight 50 gives 60 there),
    the last step is capped at maxWeight: maxWeight is the user's ceiling on exposure.
    """
    analysis = analysis or {}
    if analysis.get('iterations'):
        return []
    step_weights = analysis.get('stepWeights') or []
    if step_weights:
        return [min(int(weight), 100) for weight in step_weights]
    step = int(analysis.get('stepWeight') or 0)
    if step <= 0:
        return []
    max_weight = min(int(analysis.get('maxWeight') or DEFAULT_MAX_WEIGHT), 100)
    steps = list(range(step, max_weight, step))
    steps.append(max_weight)
    return steps


def next_weight(analysis, canary_weight):
    """The canary weight after ``canary_weight``, or None when the last step is reached (promote)."""
    for weight in weight_steps(analysis):
        if weight > canary_weight:
            return weight
    return None


def next_failed_checks(failed_checks, passed, mode=DEFAULT_FAILED_CHECKS_MODE):
    """failedChecks after one gate. 'cumulative' (Flagger) never forgives; 'consecutive' resets on a pass."""
    if mode not in FAILED_CHECKS_MODES:
        raise SpecError('analysis.failedChecksMode', 'analysis.failedChecksMode must be one of %s, got "%s"'
                        % (', '.join(FAILED_CHECKS_MODES), mode))
    failed_checks = int(failed_checks or 0)
    if passed:
        return 0 if mode == 'consecutive' else failed_checks
    return failed_checks + 1


def threshold_reached(status, analysis):
    """True when the run must roll back on failed checks (failedChecks >= threshold)."""
    threshold = int((analysis or {}).get('threshold') or DEFAULT_THRESHOLD)
    return int((status or {}).get('failedChecks') or 0) >= threshold


# --------------------------------------------------------------------------------------------
# spec validation
# --------------------------------------------------------------------------------------------

def validate_spec(spec, default_provider=DEFAULT_PROVIDER):
    """Return a normalised copy of a Canary spec with defaults filled in, or raise SpecError.

    Zero-valued numbers that Flagger treats as "unset" (stepWeight, maxWeight, iterations,
    stepWeightPromotion, mirrorWeight) are dropped, so a Flagger manifest means the same here.
    Null values are dropped too: Ansible passes None for every unset suboption.
    """
    if not isinstance(spec, Mapping):
        raise SpecError('spec', 'spec must be a mapping, got %s' % type(spec).__name__)
    spec = _strip_nulls(copy.deepcopy(dict(spec)))
    _reject_unknown(spec, _SPEC_FIELDS, '', _FLAGGER_ONLY_SPEC_FIELDS)

    spec['targetRef'] = _validate_target_ref(spec.get('targetRef'))
    for ref in ('autoscalerRef', 'ingressRef'):
        if spec.get(ref) is not None:
            spec[ref] = _validate_object_ref(spec[ref], ref)

    provider = spec.get('provider') or default_provider
    if not isinstance(provider, str) or provider not in KNOWN_PROVIDERS:
        raise SpecError('provider', _unknown_provider_message(provider))
    spec['provider'] = provider
    family = KNOWN_PROVIDERS[provider]
    if family == 'nginx' and not (spec.get('ingressRef') or {}).get('name'):
        raise SpecError('ingressRef', 'ingressRef (apiVersion networking.k8s.io/v1, kind Ingress, name) is '
                        'required with provider nginx: the canary Ingress is made from it')

    spec['service'] = _validate_service(spec.get('service'), spec['targetRef']['name'])

    if spec.get('metricsServer') is not None and not isinstance(spec['metricsServer'], str):
        raise SpecError('metricsServer', 'metricsServer must be a URL string, got %r' % (spec['metricsServer'],))

    spec['progressDeadlineSeconds'] = _int_field(spec, 'progressDeadlineSeconds', 'progressDeadlineSeconds',
                                                 minimum=1, default=DEFAULT_PROGRESS_DEADLINE_SECONDS)
    for flag in ('skipAnalysis', 'suspend', 'revertOnDeletion'):
        spec[flag] = _bool_field(spec, flag, flag)

    spec['analysis'] = _validate_analysis(spec.get('analysis'), family, spec['skipAnalysis'])
    return spec


def _validate_target_ref(target):
    if not isinstance(target, Mapping):
        raise SpecError('targetRef', 'targetRef is required: set targetRef.name to the Deployment to release '
                        '(apiVersion apps/v1, kind Deployment)')
    target = dict(target)
    _reject_unknown(target, ('apiVersion', 'kind', 'name', 'namespace'), 'targetRef.')
    name = target.get('name')
    if not name:
        raise SpecError('targetRef.name', 'targetRef.name is required: the name of the Deployment to release')
    _check_name(name, 'targetRef.name', _DNS1123_SUBDOMAIN, 253)
    kind = target.get('kind') or 'Deployment'
    if kind not in TARGET_KINDS:
        raise SpecError('targetRef.kind', 'targetRef.kind must be Deployment, got %s '
                        '(DaemonSet targets may be accepted in a later release)' % kind)
    api_version = target.get('apiVersion') or TARGET_API_VERSION
    if api_version != TARGET_API_VERSION:
        raise SpecError('targetRef.apiVersion', 'targetRef.apiVersion must be %s for a %s, got %s'
                        % (TARGET_API_VERSION, kind, api_version))
    if target.get('namespace'):
        raise SpecError('targetRef.namespace', 'targetRef.namespace is not supported: the target must live in '
                        'the Canary\'s own namespace; remove targetRef.namespace')
    target.pop('namespace', None)
    target.update(apiVersion=api_version, kind=kind)
    return target


def _validate_object_ref(ref, path):
    if not isinstance(ref, Mapping):
        raise SpecError(path, '%s must be a mapping with apiVersion, kind and name' % path)
    ref = dict(ref)
    if not ref.get('name'):
        raise SpecError(path + '.name', '%s.name is required' % path)
    _check_name(ref['name'], path + '.name', _DNS1123_SUBDOMAIN, 253)
    return ref


def _validate_service(service, target_name):
    if not isinstance(service, Mapping):
        raise SpecError('service', 'service is required: set at least service.port, the port the '
                        'apex, primary and canary Services expose')
    service = dict(service)
    _reject_unknown(service, _SERVICE_FIELDS, 'service.', _FLAGGER_ONLY_SERVICE_FIELDS)
    if service.get('port') is None:
        raise SpecError('service.port', 'service.port is required: the port the apex, primary and canary '
                        'Services expose (e.g. 80)')
    service['port'] = _int_field(service, 'port', 'service.port', minimum=1, maximum=65535)
    name = service.get('name') or target_name
    if service.get('name'):
        _check_name(name, 'service.name', _DNS1035_LABEL, _MAX_SERVICE_BASE_LENGTH,
                    why='(it gets "-primary" and "-canary" suffixes)')
    else:
        _check_name(name, 'service.name', _DNS1035_LABEL, _MAX_SERVICE_BASE_LENGTH,
                    why='(it gets "-primary" and "-canary" suffixes); it defaults to targetRef.name, so set '
                        'service.name to a shorter Service name')
    service['name'] = name
    service['portName'] = service.get('portName') or DEFAULT_PORT_NAME
    _check_name(service['portName'], 'service.portName', _DNS1123_LABEL, 15)
    target_port = service.get('targetPort')
    if target_port in (None, '', 0):
        service['targetPort'] = service['port']
    elif isinstance(target_port, bool) or not isinstance(target_port, (int, str)):
        raise SpecError('service.targetPort', 'service.targetPort must be a port number or a container '
                        'port name, got %r' % (target_port,))
    elif isinstance(target_port, int) and not 1 <= target_port <= 65535:
        raise SpecError('service.targetPort', 'service.targetPort must be between 1 and 65535, got %d'
                        % target_port)
    service['portDiscovery'] = _bool_field(service, 'portDiscovery', 'service.portDiscovery')
    if service.get('timeout') is not None:
        _duration_field(service, 'timeout', 'service.timeout')
    for list_field in ('hosts', 'gateways'):
        if service.get(list_field) is not None:
            values = service[list_field]
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise SpecError('service.' + list_field, 'service.%s must be a list of strings' % list_field)
    return service


def _validate_analysis(analysis, family, skip_analysis):
    if analysis is None:
        analysis = {}
    if not isinstance(analysis, Mapping):
        raise SpecError('analysis', 'analysis must be a mapping, got %s' % type(analysis).__name__)
    analysis = dict(analysis)
    _reject_unknown(analysis, _ANALYSIS_FIELDS, 'analysis.')
    given_step_weight = analysis.get('stepWeight')

    analysis['interval'] = analysis.get('interval') or DEFAULT_INTERVAL
    if _duration_field(analysis, 'interval', 'analysis.interval') <= 0:
        raise SpecError('analysis.interval', 'analysis.interval must be longer than zero, got "%s"'
                        % analysis['interval'])
    analysis['threshold'] = _int_field(analysis, 'threshold', 'analysis.threshold', minimum=1,
                                       default=DEFAULT_THRESHOLD,
                                       hint='the number of failed checks that rolls the run back')

    # Zero means "not used" for these, as in Flagger, so the accepted range starts at 1.
    for field in ('iterations', 'stepWeight', 'maxWeight', 'stepWeightPromotion', 'mirrorWeight'):
        value = _int_field(analysis, field, 'analysis.' + field)
        if field == 'iterations' and value is not None and value < 0:
            raise SpecError('analysis.iterations', 'analysis.iterations must be at least 1 (A/B or blue/green '
                            'checks), or 0 for a weighted canary, got %d' % value)
        if field != 'iterations' and value is not None and not 0 <= value <= 100:
            raise SpecError('analysis.' + field, 'analysis.%s must be between 1 and 100, got %d' % (field, value))
        if value:
            analysis[field] = value
        else:
            analysis.pop(field, None)

    step_weights = analysis.get('stepWeights')
    if step_weights in (None, []):
        analysis.pop('stepWeights', None)
    else:
        analysis['stepWeights'] = _validate_step_weights(step_weights)

    if 'stepWeight' in analysis and 'stepWeights' in analysis:
        raise SpecError('analysis.stepWeights', 'analysis.stepWeights and analysis.stepWeight (%d) are mutually '
                        'exclusive: keep stepWeight for even steps or stepWeights for a custom walk'
                        % analysis['stepWeight'])
    if analysis.get('iterations') and ('stepWeight' in analysis or 'stepWeights' in analysis):
        raise SpecError('analysis.iterations', 'analysis.iterations selects A/B testing or blue/green, which '
                        'do not shift weights: remove analysis.stepWeight/stepWeights, or remove iterations '
                        'for a weighted canary')
    if 'stepWeights' in analysis:
        last = analysis['stepWeights'][-1]
        if analysis.get('maxWeight') not in (None, last):
            raise SpecError('analysis.maxWeight', 'analysis.maxWeight (%d) is ignored when stepWeights is set '
                            'and the last stepWeights entry (%d) is the maximum; remove maxWeight'
                            % (analysis['maxWeight'], last))
        analysis['maxWeight'] = last
    elif 'stepWeight' in analysis:
        analysis.setdefault('maxWeight', DEFAULT_MAX_WEIGHT)
        if analysis['stepWeight'] > analysis['maxWeight']:
            raise SpecError('analysis.stepWeight', 'analysis.stepWeight (%d) must not exceed analysis.maxWeight '
                            '(%d)' % (analysis['stepWeight'], analysis['maxWeight']))

    if not skip_analysis and not (analysis.get('iterations') or analysis.get('stepWeight')
                                  or analysis.get('stepWeights')):
        if given_step_weight is not None and not isinstance(given_step_weight, bool) and given_step_weight == 0:
            raise SpecError('analysis.stepWeight', 'analysis.stepWeight is 0, which means unset (as in Flagger), and '
                            'nothing else sets the walk: set stepWeight between 1 and 100 (e.g. 10), or use '
                            'stepWeights (e.g. [5, 10, 25, 50]) or iterations (A/B or blue/green)')
        raise SpecError('analysis', 'analysis needs one of stepWeight (weighted canary, e.g. 10), stepWeights '
                        '(e.g. [5, 10, 25, 50]) or iterations (A/B or blue/green, e.g. 10); '
                        'or set skipAnalysis: true to promote without analysis')

    for field in ('primaryReadyThreshold', 'canaryReadyThreshold'):
        analysis[field] = _int_field(analysis, field, 'analysis.' + field, minimum=0, maximum=100,
                                     default=DEFAULT_READY_THRESHOLD)
    analysis['mirror'] = _bool_field(analysis, 'mirror', 'analysis.mirror')
    if 'mirrorWeight' in analysis and not analysis['mirror']:
        raise SpecError('analysis.mirrorWeight', 'analysis.mirrorWeight only applies with analysis.mirror: '
                        'true; set mirror or remove mirrorWeight')

    match = analysis.get('match')
    if match in (None, []):
        analysis.pop('match', None)
    elif not isinstance(match, list) or not all(isinstance(m, Mapping) for m in match):
        raise SpecError('analysis.match', 'analysis.match must be a list of match conditions '
                        '(e.g. - headers: {x-canary: {exact: "insider"}})')

    _check_feature(analysis, 'match', family, 'match conditions (A/B testing)')
    _check_feature(analysis, 'mirror', family, 'traffic mirroring')
    _check_feature(analysis, 'sessionAffinity', family, 'session affinity')

    if analysis.get('sessionAffinity') is not None:
        analysis['sessionAffinity'] = _validate_session_affinity(analysis['sessionAffinity'])

    analysis['failedChecksMode'] = analysis.get('failedChecksMode') or DEFAULT_FAILED_CHECKS_MODE
    if analysis['failedChecksMode'] not in FAILED_CHECKS_MODES:
        raise SpecError('analysis.failedChecksMode', 'analysis.failedChecksMode must be one of %s, got "%s"'
                        % (', '.join(FAILED_CHECKS_MODES), analysis['failedChecksMode']))

    analysis['metrics'] = _validate_metrics(analysis.get('metrics'))
    analysis['webhooks'] = _validate_webhooks(analysis.get('webhooks'))
    analysis['alerts'] = _validate_alerts(analysis.get('alerts'))
    return analysis


def _validate_step_weights(step_weights):
    field = 'analysis.stepWeights'
    if not isinstance(step_weights, list):
        raise SpecError(field, '%s must be a list of weights, e.g. [1, 5, 10, 50]' % field)
    previous = 0
    for index, weight in enumerate(step_weights):
        if isinstance(weight, bool) or not isinstance(weight, int):
            raise SpecError(field, '%s[%d] must be an integer, got %r' % (field, index, weight))
        if not 1 <= weight <= 100:
            raise SpecError(field, '%s[%d] must be between 1 and 100, got %d' % (field, index, weight))
        if weight <= previous:
            raise SpecError(field, '%s must be strictly increasing, got %s (entry %d is %d after %d)'
                            % (field, step_weights, index, weight, previous))
        previous = weight
    return list(step_weights)


def _check_feature(analysis, feature, family, what):
    if not analysis.get(feature):
        return
    if feature not in PROVIDER_FEATURES.get(family, frozenset()):
        able = sorted(name for name, features in PROVIDER_FEATURES.items() if feature in features)
        raise SpecError('analysis.' + feature, 'analysis.%s (%s) is not supported by the %s router; use provider '
                        '%s' % (feature, what, family, ' or '.join(able)))


def _validate_session_affinity(affinity):
    field = 'analysis.sessionAffinity'
    if not isinstance(affinity, Mapping):
        raise SpecError(field, '%s must be a mapping with cookieName' % field)
    affinity = dict(affinity)
    if not affinity.get('cookieName'):
        raise SpecError(field + '.cookieName', '%s.cookieName is required, e.g. "canary-affinity"' % field)
    affinity['maxAge'] = _int_field(affinity, 'maxAge', field + '.maxAge', minimum=1,
                                    default=DEFAULT_SESSION_MAX_AGE)
    return affinity


def _list_of_mappings(value, field, example):
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(field, '%s must be a list, e.g. %s' % (field, example))
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise SpecError('%s[%d]' % (field, index), '%s[%d] must be a mapping, got %r' % (field, index, item))
    return [dict(item) for item in value]


def _validate_metrics(metrics):
    metrics = _list_of_mappings(metrics, 'analysis.metrics',
                                '[{name: request-success-rate, thresholdRange: {min: 99}, interval: 1m}]')
    seen = set()
    for index, metric in enumerate(metrics):
        field = 'analysis.metrics[%d]' % index
        _reject_unknown(metric, _METRIC_FIELDS, field + '.')
        name = metric.get('name')
        if not name or not isinstance(name, str):
            raise SpecError(field + '.name', '%s.name is required' % field)
        if name in seen:
            raise SpecError(field + '.name', '%s.name "%s" is used twice; metric names must be unique' % (field, name))
        seen.add(name)
        metric['interval'] = metric.get('interval') or DEFAULT_METRIC_INTERVAL
        if _duration_field(metric, 'interval', field + '.interval') <= 0:
            raise SpecError(field + '.interval', '%s.interval must be longer than zero' % field)
        _convert_metric_threshold(metric)
        _validate_threshold_range(metric, field)
        has_query = bool(metric.get('query'))
        has_template = metric.get('templateRef') is not None
        if has_query and has_template:
            raise SpecError(field + '.query', '%s (%s) has both query and templateRef; keep one' % (field, name))
        if has_template:
            ref = metric['templateRef']
            if not isinstance(ref, Mapping) or not ref.get('name'):
                raise SpecError(field + '.templateRef.name', '%s.templateRef.name is required' % field)
        if not has_query and not has_template and name not in BUILTIN_METRICS:
            raise SpecError(field + '.query', '%s (%s) needs a query or a templateRef; only %s are built in'
                            % (field, name, ' and '.join(BUILTIN_METRICS)))
        variables = metric.get('templateVariables')
        if variables is not None and (not isinstance(variables, Mapping)
                                      or not all(isinstance(v, str) for v in variables.values())):
            raise SpecError(field + '.templateVariables', '%s.templateVariables must map names to strings' % field)
        metric['noDataPolicy'] = metric.get('noDataPolicy') or DEFAULT_NO_DATA_POLICY
        if metric['noDataPolicy'] not in NO_DATA_POLICIES:
            raise SpecError(field + '.noDataPolicy', '%s.noDataPolicy must be one of %s, got "%s"'
                            % (field, ', '.join(NO_DATA_POLICIES), metric['noDataPolicy']))
    return metrics


def _convert_metric_threshold(metric):
    # Flagger's deprecated single threshold is a floor for the success rate and a ceiling for
    # everything else (see its runBuiltinMetricChecks); thresholdRange says which explicitly.
    if 'threshold' not in metric:
        return
    threshold = metric.pop('threshold')
    if threshold is None or metric.get('thresholdRange'):
        return
    bound = 'min' if metric.get('name') == 'request-success-rate' else 'max'
    metric['thresholdRange'] = {bound: threshold}


def _validate_threshold_range(metric, field):
    bounds = metric.get('thresholdRange')
    if bounds is None:
        return
    if not isinstance(bounds, Mapping):
        raise SpecError(field + '.thresholdRange', '%s.thresholdRange must be a mapping with min and/or max' % field)
    for key in ('min', 'max'):
        value = bounds.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise SpecError('%s.thresholdRange.%s' % (field, key), '%s.thresholdRange.%s must be a number, got %r'
                            % (field, key, value))
    low, high = bounds.get('min'), bounds.get('max')
    if low is not None and high is not None and low > high:
        raise SpecError(field + '.thresholdRange', '%s.thresholdRange.min (%s) must not exceed max (%s)'
                        % (field, low, high))


def _validate_webhooks(webhooks):
    webhooks = _list_of_mappings(webhooks, 'analysis.webhooks',
                                 '[{name: load-test, type: rollout, url: "http://loadtester/"}]')
    seen = set()
    for index, hook in enumerate(webhooks):
        field = 'analysis.webhooks[%d]' % index
        _reject_unknown(hook, _WEBHOOK_FIELDS, field + '.')
        if not hook.get('name'):
            raise SpecError(field + '.name', '%s.name is required' % field)
        if hook['name'] in seen:
            raise SpecError(field + '.name', '%s.name "%s" is used twice; webhook names must be unique'
                            % (field, hook['name']))
        seen.add(hook['name'])
        url = hook.get('url')
        if not url or not isinstance(url, str) or not re.match(r'^https?://', url):
            raise SpecError(field + '.url', '%s.url must be an http:// or https:// URL, got %r' % (field, url))
        hook['type'] = hook.get('type') or 'rollout'
        if hook['type'] not in WEBHOOK_TYPES:
            raise SpecError(field + '.type', '%s.type must be one of %s, got "%s"'
                            % (field, ', '.join(WEBHOOK_TYPES), hook['type']))
        hook['timeout'] = hook.get('timeout') or DEFAULT_WEBHOOK_TIMEOUT
        _duration_field(hook, 'timeout', field + '.timeout')
        hook['retries'] = _int_field(hook, 'retries', field + '.retries', minimum=0, default=0)
        hook['muteAlert'] = _bool_field(hook, 'muteAlert', field + '.muteAlert')
        metadata = hook.get('metadata')
        if metadata is not None and (not isinstance(metadata, Mapping)
                                     or not all(isinstance(v, str) for v in metadata.values())):
            raise SpecError(field + '.metadata', '%s.metadata must map names to strings (quote numbers)' % field)
    return webhooks


def _validate_alerts(alerts):
    alerts = _list_of_mappings(alerts, 'analysis.alerts', '[{name: on-call, severity: error, providerRef: '
                                                          '{name: slack}}]')
    for index, alert in enumerate(alerts):
        field = 'analysis.alerts[%d]' % index
        if not alert.get('name'):
            raise SpecError(field + '.name', '%s.name is required' % field)
        ref = alert.get('providerRef')
        if not isinstance(ref, Mapping) or not ref.get('name'):
            raise SpecError(field + '.providerRef.name', '%s.providerRef.name is required' % field)
        alert['severity'] = alert.get('severity') or 'info'
        if alert['severity'] not in ALERT_SEVERITIES:
            raise SpecError(field + '.severity', '%s.severity must be one of %s, got "%s"'
                            % (field, ', '.join(ALERT_SEVERITIES), alert['severity']))
    return alerts


def _reject_unknown(mapping, known, prefix, flagger_only=()):
    for key in mapping:
        if key in known:
            continue
        if key in flagger_only:
            raise SpecError(prefix + key, '%s%s is a Flagger field for a provider this collection does not '
                            'drive; remove it' % (prefix, key))
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.5)
        hint = ' (did you mean %s%s?)' % (prefix, close[0]) if close else ''
        raise SpecError(prefix + str(key), '%s%s is not a Canary field%s' % (prefix, key, hint))


def _int_field(mapping, key, field, minimum=None, maximum=None, default=None, hint=None):
    value = mapping.get(key)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(field, '%s must be an integer, got %r' % (field, value))
    suffix = ' (%s)' % hint if hint else ''
    if minimum is not None and maximum is not None and not minimum <= value <= maximum:
        raise SpecError(field, '%s must be between %d and %d, got %d%s' % (field, minimum, maximum, value, suffix))
    if minimum is not None and value < minimum:
        raise SpecError(field, '%s must be at least %d, got %d%s' % (field, minimum, value, suffix))
    return value


def _bool_field(mapping, key, field):
    value = mapping.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise SpecError(field, '%s must be true or false, got %r' % (field, value))
    return value


def _duration_field(mapping, key, field):
    try:
        return parse_duration(mapping.get(key))
    except ValueError as exc:
        raise SpecError(field, '%s: %s' % (field, exc))


def _check_name(name, field, pattern, max_length, why=None):
    if not isinstance(name, str) or not pattern.match(name) or len(name) > max_length:
        rule = {
            _DNS1123_SUBDOMAIN.pattern: 'lowercase letters, digits, "-" and "."; starting and ending '
                                        'with a letter or digit',
            _DNS1123_LABEL.pattern: 'lowercase letters, digits and "-"; starting and ending with a letter '
                                    'or digit',
            _DNS1035_LABEL.pattern: 'lowercase letters, digits and "-"; starting with a letter and ending '
                                    'with a letter or digit',
        }[pattern.pattern]
        raise SpecError(field, '%s must be at most %d characters of %s%s, got %r'
                        % (field, max_length, rule, ' ' + why if why else '', name))


# --------------------------------------------------------------------------------------------
# Flagger manifests
# --------------------------------------------------------------------------------------------

def convert_flagger_manifest(manifest, default_provider=None):
    """(spec, notes) from a flagger.app/v1beta1 Canary manifest; notes say what was dropped and why.

    default_provider stands in for Flagger's -mesh-provider flag when the manifest names none.
    """
    if not isinstance(manifest, Mapping):
        raise SpecError('manifest', 'a Flagger Canary manifest must be a mapping')
    api_version = manifest.get('apiVersion')
    if api_version not in FLAGGER_API_VERSIONS:
        raise SpecError('apiVersion', 'apiVersion must be %s for a Flagger Canary, got %s'
                        % (' or '.join(FLAGGER_API_VERSIONS), api_version))
    if manifest.get('kind') != 'Canary':
        raise SpecError('kind', 'kind must be Canary, got %s' % manifest.get('kind'))
    spec = copy.deepcopy(dict(manifest.get('spec') or {}))
    notes = []

    target = spec.get('targetRef') or {}
    if target.get('kind') and target['kind'] not in TARGET_KINDS:
        raise SpecError('targetRef.kind', 'targetRef.kind %s cannot be taken across: only Deployment '
                        'targets are supported (DaemonSet targets may be accepted in a later release)'
                        % target['kind'])

    if 'canaryAnalysis' in spec:
        legacy = spec.pop('canaryAnalysis')
        if spec.get('analysis') is None:
            spec['analysis'] = legacy
            notes.append('canaryAnalysis (deprecated in Flagger) moved to analysis')
        else:
            notes.append('canaryAnalysis dropped: analysis takes precedence, as in Flagger')

    provider = spec.get('provider') or default_provider
    if provider:
        if provider not in KNOWN_PROVIDERS:
            raise SpecError('provider', 'provider %s cannot be taken across; supported providers are %s'
                            % (provider, ', '.join(sorted(KNOWN_PROVIDERS))))
        spec['provider'] = provider

    for field in _FLAGGER_ONLY_SPEC_FIELDS:
        if field in spec:
            spec.pop(field)
            notes.append('%s dropped: it belongs to a provider this collection does not drive' % field)
    service = spec.get('service')
    if isinstance(service, Mapping):
        service = dict(service)
        for field in _FLAGGER_ONLY_SERVICE_FIELDS:
            if field in service:
                service.pop(field)
                notes.append('service.%s dropped: it belongs to App Mesh' % field)
        spec['service'] = service

    analysis = spec.get('analysis')
    if isinstance(analysis, Mapping):
        spec['analysis'] = _convert_flagger_analysis(dict(analysis), notes)
    return validate_spec(spec), notes


def _convert_flagger_analysis(analysis, notes):
    # Flagger resolves conflicting fields silently; keep what Flagger would have run and say so.
    if analysis.get('threshold') is not None and analysis['threshold'] <= 0:
        analysis.pop('threshold')
        notes.append('analysis.threshold <= 0 replaced by the default %d, as Flagger does' % DEFAULT_THRESHOLD)
    if analysis.get('iterations'):
        for field in ('stepWeight', 'stepWeights', 'maxWeight'):
            if analysis.get(field):
                analysis.pop(field)
                notes.append('analysis.%s dropped: iterations selects A/B or blue/green in Flagger' % field)
    if analysis.get('stepWeight') and analysis.get('stepWeights'):
        analysis.pop('stepWeights')
        notes.append('analysis.stepWeights dropped: Flagger uses stepWeight when both are set')
    if analysis.get('stepWeights') and analysis.get('maxWeight'):
        analysis.pop('maxWeight')
        notes.append('analysis.maxWeight dropped: Flagger stops at the last stepWeights entry')
    metrics = analysis.get('metrics')
    if isinstance(metrics, list):
        converted = []
        for metric in metrics:
            if isinstance(metric, Mapping) and metric.get('threshold') is not None \
                    and not metric.get('thresholdRange'):
                metric = dict(metric)
                _convert_metric_threshold(metric)
                notes.append('analysis.metrics %s: deprecated threshold converted to thresholdRange %s'
                             % (metric.get('name'), metric['thresholdRange']))
            converted.append(metric)
        analysis['metrics'] = converted
    return analysis


def flagger_manifest_to_spec(manifest, default_provider=None):
    """Our Canary spec from a flagger.app/v1beta1 Canary manifest (see convert_flagger_manifest)."""
    return convert_flagger_manifest(manifest, default_provider)[0]


def canary_resource(name, namespace, spec, labels=None, annotations=None):
    """A Canary object ready to apply: our apiVersion and kind around a (validated) spec."""
    _check_name(name, 'metadata.name', _DNS1123_SUBDOMAIN, 253)
    metadata = {'name': name, 'namespace': namespace}
    if labels:
        metadata['labels'] = dict(labels)
    if annotations:
        metadata['annotations'] = dict(annotations)
    return {'apiVersion': API_VERSION, 'kind': KIND, 'metadata': metadata, 'spec': copy.deepcopy(spec)}


# --------------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------------

def primary_name(name):
    """Name of the primary Deployment (and of primary copies of tracked configs)."""
    return name + PRIMARY_SUFFIX


def primary_config_name(name):
    """Name of the primary's copy of a tracked ConfigMap or Secret."""
    return name + PRIMARY_SUFFIX


def apex_service_name(spec):
    """The Service clients call: service.name, else the target's name (as Flagger)."""
    return ((spec.get('service') or {}).get('name')) or spec['targetRef']['name']


def primary_service_name(name):
    return name + PRIMARY_SUFFIX


def canary_service_name(name):
    return name + CANARY_SUFFIX


def service_names(spec):
    """(apex, primary, canary) Service names for a spec, like Flagger's GetServiceNames."""
    apex = apex_service_name(spec)
    return apex, primary_service_name(apex), canary_service_name(apex)


# --------------------------------------------------------------------------------------------
# configs and revisions
# --------------------------------------------------------------------------------------------

def config_key(kind, name):
    """status.trackedConfigs key: "configmap/<name>" or "secret/<name>", Flagger's spelling."""
    return '%s/%s' % (kind.lower(), name)


def _normalise_config_key(key):
    if isinstance(key, tuple):
        return config_key(*key)
    kind, _sep, name = key.partition('/')
    return config_key(kind, name)


def is_config_tracking_disabled(obj):
    """True when a ConfigMap/Secret (object or its metadata) opts out with the tracking annotation."""
    metadata = obj.get('metadata', obj) if isinstance(obj, Mapping) else {}
    annotations = (metadata or {}).get('annotations') or {}
    return annotations.get(CONFIG_TRACKING_ANNOTATION) == CONFIG_TRACKING_DISABLED


def is_trackable_secret(secret):
    """Secrets an application reads (Opaque, basic-auth, ssh-auth, tls), as Flagger tracks them."""
    secret_type = (secret or {}).get('type') or 'Opaque'
    return secret_type in TRACKED_SECRET_TYPES


def config_checksum(data, binary_data=None):
    """Checksum of a ConfigMap's or Secret's data (and ConfigMap binaryData)."""
    return _digest({'data': data or {}, 'binaryData': binary_data or {}})


def tracked_configs(configs):
    """status.trackedConfigs from {(kind, name) or "kind/name": checksum or data mapping}."""
    result = {}
    for key, value in (configs or {}).items():
        result[_normalise_config_key(key)] = value if isinstance(value, str) else config_checksum(value)
    return result


def revision_hash(pod_template, configs=None):
    """Revision of a target: its pod template plus the data of its tracked configs.

    pod_template is the Deployment's spec.template in API (camelCase) form, as the server returns it.
    Hashed: the whole template, metadata included (Flagger does the same, and an annotation change
    is how a failed release is retried, e.g. ``kubectl rollout restart`` writing restartedAt).
    Ignored: metadata.creationTimestamp, which clients serialise as null or omit, and null
    values anywhere, which the API treats as absent. configs maps (kind, name) or "kind/name" to
    either a checksum string or the config's data mapping, so a changed ConfigMap is a new revision.
    """
    template = _strip_nulls(copy.deepcopy(pod_template or {}))
    metadata = template.get('metadata')
    if isinstance(metadata, dict):
        metadata.pop('creationTimestamp', None)
        if not metadata:
            template.pop('metadata')
    return _digest({'template': template, 'configs': tracked_configs(configs)})


def _digest(value):
    canonical = json.dumps(value, sort_keys=True, separators=(',', ':'), ensure_ascii=True, default=str)
    return hashlib.sha256(canonical.encode('utf-8')).hexdigest()[:16]


def _strip_nulls(value):
    if isinstance(value, dict):
        return dict((k, _strip_nulls(v)) for k, v in value.items() if v is not None)
    if isinstance(value, list):
        return [_strip_nulls(v) for v in value]
    return value


def _pod_containers(pod_spec):
    return list(pod_spec.get('initContainers') or []) + list(pod_spec.get('containers') or [])


def _config_ref_slots(pod_spec):
    """Yield (kind, holder dict, key in holder) for every ConfigMap/Secret reference in a pod spec."""
    for volume in pod_spec.get('volumes') or []:
        if volume.get('configMap'):
            yield 'ConfigMap', volume['configMap'], 'name'
        if volume.get('secret'):
            yield 'Secret', volume['secret'], 'secretName'
        for source in (volume.get('projected') or {}).get('sources') or []:
            if source.get('configMap'):
                yield 'ConfigMap', source['configMap'], 'name'
            if source.get('secret'):
                yield 'Secret', source['secret'], 'name'
    for container in _pod_containers(pod_spec):
        for env in container.get('env') or []:
            value_from = env.get('valueFrom') or {}
            if value_from.get('configMapKeyRef'):
                yield 'ConfigMap', value_from['configMapKeyRef'], 'name'
            if value_from.get('secretKeyRef'):
                yield 'Secret', value_from['secretKeyRef'], 'name'
        for env_from in container.get('envFrom') or []:
            if env_from.get('configMapRef'):
                yield 'ConfigMap', env_from['configMapRef'], 'name'
            if env_from.get('secretRef'):
                yield 'Secret', env_from['secretRef'], 'name'


def referenced_configs(pod_spec):
    """Sorted [(kind, name)] of ConfigMaps and Secrets a pod spec reads.

    Covers env valueFrom, envFrom, configMap/secret volumes and projected sources, in containers
    and initContainers. imagePullSecrets are not configs (they belong to the registry), so they are
    not listed; callers still drop opted-out and non-application Secrets after reading them.
    """
    found = set()
    for kind, holder, key in _config_ref_slots(pod_spec or {}):
        if holder.get(key):
            found.add((kind, holder[key]))
    return sorted(found)


def primary_config_names(refs):
    """{(kind, name): name-primary} for the refs the primary should read copies of."""
    return dict(((kind, name), primary_config_name(name)) for kind, name in refs)


def rewrite_config_refs(pod_spec, names_map):
    """Copy of pod_spec whose references to names_map's (kind, name) keys point at the mapped names."""
    rewritten = copy.deepcopy(pod_spec or {})
    for kind, holder, key in _config_ref_slots(rewritten):
        replacement = names_map.get((kind, holder.get(key)))
        if replacement:
            holder[key] = replacement
    return rewritten


# --------------------------------------------------------------------------------------------
# phases and status
# --------------------------------------------------------------------------------------------

def is_run_active(phase):
    """True while a run owns the traffic split (Waiting through Finalising)."""
    return phase in ACTIVE_PHASES


def check_transition(old, new):
    """Raise PhaseTransitionError unless a Canary may move from phase old to phase new."""
    old = old or PHASE_NONE
    new = new or PHASE_NONE
    for phase in (old, new):
        if phase not in ALLOWED_TRANSITIONS:
            raise PhaseTransitionError(old, new, 'unknown Canary phase "%s"; phases are %s'
                                       % (phase, ', '.join(p or '""' for p in PHASES)))
    if old == new or new in ALLOWED_TRANSITIONS[old]:
        return
    sources = sorted(p or '""' for p, targets in ALLOWED_TRANSITIONS.items() if new in targets)
    hint = ''
    if old in (PHASE_SUCCEEDED, PHASE_FAILED) and new in ACTIVE_PHASES:
        hint = ' A finished run cannot be resumed: start a new run (Progressing) for a new revision.'
    raise PhaseTransitionError(old, new, 'cannot move a Canary from %s to %s: %s is reached only from %s.%s '
                               'From %s the next phase may be %s.'
                               % (old or '""', new or '""', new or '""', ', '.join(sources) or 'nowhere',
                                  hint, old or '""', ', '.join(sorted(ALLOWED_TRANSITIONS[old])) or 'nothing'))


def set_phase(status, phase, now, message=None):
    """New status with phase set (after check_transition); lastTransitionTime moves only on a change."""
    status = copy.deepcopy(dict(status or {}))
    old = status.get('phase') or PHASE_NONE
    check_transition(old, phase)
    if old != phase or not status.get('lastTransitionTime'):
        status['lastTransitionTime'] = format_time(now)
    status['phase'] = phase
    if message is not None:
        status['message'] = message
    return status


def start_run(status, revision, run_id, now, phase=PHASE_PROGRESSING):
    """New status for the first step of a run: counters reset, revision and run id recorded."""
    status = set_phase(status, phase, now)
    status.update(canaryWeight=0, primaryWeight=100, iterations=0, failedChecks=0,
                  lastAppliedSpec=revision, runId=run_id)
    return status


def make_run_id(revision, now):
    """Run id: the revision plus the start time, readable in kubectl and unique per attempt."""
    return '%s-%s' % (revision[:8], _as_utc(now).strftime('%Y%m%d%H%M%S'))


def append_gate_result(status, entry, limit=GATE_HISTORY_LIMIT):
    """New status with entry appended to gateHistory, keeping the newest ``limit`` (oldest first)."""
    if limit < 1:
        raise ValueError('limit must be at least 1, got %d' % limit)
    unknown = sorted(set(entry) - set(GATE_ENTRY_FIELDS))
    if unknown:
        raise ValueError('gate result fields %s would be pruned by the apiserver; use %s and put extra detail '
                         'under metrics' % (', '.join(unknown), ', '.join(GATE_ENTRY_FIELDS)))
    status = copy.deepcopy(dict(status or {}))
    history = list(status.get('gateHistory') or [])
    history.append(copy.deepcopy(dict(entry)))
    status['gateHistory'] = history[-limit:]
    return status


# --------------------------------------------------------------------------------------------
# run lock (status.lock)
# --------------------------------------------------------------------------------------------

LOCK_FREE = 'free'
LOCK_HELD = 'held'
LOCK_EXPIRED = 'expired'


def lock_holder_identity(env=None, hostname=None, pid=None):
    """Who holds the lock: "awx-job-<id>" under AWX/Tower, else "<host>:<pid>".

    A job id survives a job being re-launched on another node, so AWX runs keep their identity.
    """
    env = os.environ if env is None else env
    for name in ('JOB_ID', 'AWX_JOB_ID', 'TOWER_JOB_ID'):
        if env.get(name):
            return 'awx-job-%s' % env[name]
    return '%s:%d' % (hostname or socket.gethostname(), os.getpid() if pid is None else pid)


def lease_seconds_for(spec):
    """Lease long enough to outlast the longest stretch between renewals.

    That stretch is the readiness wait (progressDeadlineSeconds) or one analysis interval, plus an
    interval of slack for a slow controller host.
    """
    deadline = int(spec.get('progressDeadlineSeconds') or DEFAULT_PROGRESS_DEADLINE_SECONDS)
    interval = parse_duration((spec.get('analysis') or {}).get('interval') or DEFAULT_INTERVAL)
    return int(deadline + 2 * interval)


def lock_state(status, now):
    """'free' (no holder), 'held' (holder and expiresAt in the future) or 'expired'."""
    lock = (status or {}).get('lock') or {}
    if not lock.get('holder'):
        return LOCK_FREE
    expires_at = lock.get('expiresAt')
    if not expires_at:
        return LOCK_EXPIRED
    return LOCK_HELD if parse_time(expires_at) > _as_utc(now) else LOCK_EXPIRED


def acquire_lock(status, holder, now, lease_seconds):
    """New status holding the lock for holder, or raise LockHeldError.

    Acquires a free lock, takes over an expired one, and renews one the holder already has
    (acquiredAt kept). Writing the result with the Canary's resourceVersion makes the take atomic.
    """
    if lease_seconds <= 0:
        raise ValueError('lease_seconds must be positive, got %r' % (lease_seconds,))
    status = copy.deepcopy(dict(status or {}))
    lock = status.get('lock') or {}
    state = lock_state(status, now)
    if state == LOCK_HELD and lock.get('holder') != holder:
        raise LockHeldError(lock['holder'], lock['expiresAt'],
                            'the Canary run lock is held by %s until %s; wait for that run to finish, '
                            'or for the lease to expire' % (lock['holder'], lock['expiresAt']))
    now = _as_utc(now)
    renewing = state == LOCK_HELD and lock.get('holder') == holder
    status['lock'] = {
        'holder': holder,
        'acquiredAt': lock.get('acquiredAt') if renewing and lock.get('acquiredAt') else format_time(now),
        'renewedAt': format_time(now),
        'expiresAt': format_time(now + datetime.timedelta(seconds=lease_seconds)),
        'leaseDurationSeconds': int(math.ceil(lease_seconds)),
    }
    return status


def renew_lock(status, now):
    """The status with a held lock's lease extended from ``now`` by its own duration (in place).

    Called by the gate of each step, which only runs inside the holder's run: a long run keeps its
    lock as long as it makes progress. A free or expired lock is left alone.
    """
    lock = (status or {}).get('lock') or {}
    if lock_state(status, now) != LOCK_HELD or not lock.get('leaseDurationSeconds'):
        return status
    now = _as_utc(now)
    lock = dict(lock, renewedAt=format_time(now),
                expiresAt=format_time(now + datetime.timedelta(seconds=int(lock['leaseDurationSeconds']))))
    status['lock'] = lock
    return status


def release_lock(status, holder):
    """New status with the lock cleared (lock: None, which a merge patch deletes).

    Releasing a lock one does not hold leaves the status as it is; the holder's run still owns it.
    """
    status = copy.deepcopy(dict(status or {}))
    lock = status.get('lock') or {}
    if lock.get('holder') in (None, holder):
        status['lock'] = None
    return status
