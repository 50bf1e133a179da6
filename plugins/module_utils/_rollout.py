# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout core: bootstrap, revision detection, the run lock, promotion and rollback.

``canary_init``, ``canary_promote`` and ``canary_info`` are thin wrappers around the
functions here. The run's record lives in the Canary's status, written with the
resourceVersion that was read, so two runs can never both believe they hold the lock.

This file is private to the collection: its API may change between minor releases.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import copy
import datetime
import json
import os
import socket
import time

from ansible_collections.progressive.delivery.plugins.module_utils import _canary as model
from ansible_collections.progressive.delivery.plugins.module_utils._kube import KubeApiError, KubeError

try:
    from ansible_collections.progressive.delivery.plugins.module_utils._routers import get_router
except ImportError:  # the router layer is optional until a provider needs it
    get_router = None


DEPLOYMENT_API = 'apps/v1'
CORE_API = 'v1'
HPA_API = 'autoscaling/v2'
SELECTOR_LABEL_KEYS = ('app', 'name', 'app.kubernetes.io/name')
MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by'
MANAGED_BY = 'progressive.delivery'
ORIGINAL_SELECTOR_ANNOTATION = model.API_GROUP + '/original-selector'
# Without a mesh the apex Service must reach both versions' pods: both pod templates carry this
# label and the apex selects on it. It is ours, so the revision hash leaves it out.
APEX_POD_LABEL = model.API_GROUP + '/app'
# The primary carries the target template it was made from, and the one it replaced, so that a
# promoted revision can be reverted (multi-cluster waves roll back clusters already promoted).
PROMOTED_TEMPLATE_ANNOTATION = model.API_GROUP + '/promoted-template'
PREVIOUS_TEMPLATE_ANNOTATION = model.API_GROUP + '/previous-template'
POLL_SECONDS = 0.25


class RolloutError(Exception):
    """A failure a user can act on. ``field`` names the option or object at fault."""

    def __init__(self, field, message, result=None):
        super(RolloutError, self).__init__('%s: %s' % (field, message) if field else message)
        self.field = field
        self.message = message
        self.result = result or {}


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


# --------------------------------------------------------------------------------------------
# lock holder identity
# --------------------------------------------------------------------------------------------

def _playbook_pid():
    """PID of the ansible-playbook (or ansible) process that runs this module, if local.

    Each task runs in a fresh Python process, so the module's own pid identifies nothing; the
    playbook process is what lives for the whole run and dies when the run is killed.
    """
    pid = os.getppid()
    found = None
    for _hop in range(12):
        if pid <= 1:
            break
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as handle:
                argv = handle.read().split(b'\0')
            with open('/proc/%d/stat' % pid) as handle:
                parent = int(handle.read().rsplit(')', 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        if any(os.path.basename(arg).decode('utf-8', 'replace').startswith(('ansible-playbook', 'ansible'))
               for arg in argv[:2]):
            found = pid  # keep walking: workers are forks of the playbook process
        pid = parent
    return found


def default_holder(env=None):
    """AWX job id when there is one, else "<host>:<playbook pid>" (or the module's parent pid)."""
    env = os.environ if env is None else env
    return model.lock_holder_identity(env=env, pid=_playbook_pid() or os.getppid())


def _holder_is_dead(holder):
    """True when the lock holder is a process on this host that no longer exists.

    A run killed with SIGKILL cannot release its lock; when it was started from this host we can
    see that it is gone and take over at once instead of waiting for the lease to expire.
    """
    host, sep, pid = (holder or '').rpartition(':')
    if not sep or host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open('/proc/%s/stat' % pid) as handle:
            return handle.read().rsplit(')', 1)[1].split()[0] == 'Z'
    except (OSError, IndexError):
        return True


# --------------------------------------------------------------------------------------------
# small object helpers
# --------------------------------------------------------------------------------------------

def _is_subset(desired, actual):
    """True when every field of desired is present with the same value in actual.

    The server adds defaults (protocol, imagePullPolicy, ...) to what we send; comparing only the
    fields we set tells "nothing to do" apart from "write needed" without a dry run.
    """
    if isinstance(desired, dict):
        if not isinstance(actual, dict):
            return False
        return all(_is_subset(value, actual.get(key)) for key, value in desired.items())
    if isinstance(desired, list):
        if not isinstance(actual, list) or len(desired) != len(actual):
            return False
        return all(_is_subset(d, a) for d, a in zip(desired, actual))
    if isinstance(desired, (int, float)) and isinstance(actual, str) or \
            isinstance(actual, (int, float)) and isinstance(desired, str):
        return str(desired) == str(actual)
    return desired == actual


def _strip_server_fields(obj):
    obj = copy.deepcopy(obj or {})
    metadata = obj.get('metadata') or {}
    for key in ('managedFields', 'resourceVersion', 'uid', 'creationTimestamp', 'generation', 'selfLink'):
        metadata.pop(key, None)
    return obj


def _owner_reference(canary):
    uid = (canary.get('metadata') or {}).get('uid')
    if not uid:
        return []
    return [{'apiVersion': model.API_VERSION, 'kind': model.KIND, 'name': canary['metadata']['name'],
             'uid': uid, 'controller': True, 'blockOwnerDeletion': True}]


def deployment_ready(dep):
    """(ready, reason) for a Deployment: rolled out and every wanted replica available."""
    if not dep:
        return False, 'not found'
    spec = dep.get('spec') or {}
    status = dep.get('status') or {}
    wanted = spec.get('replicas', 1)
    generation = (dep.get('metadata') or {}).get('generation', 0)
    if status.get('observedGeneration', 0) < generation:
        return False, 'waiting for the controller to observe generation %d' % generation
    for condition in status.get('conditions') or []:
        if condition.get('type') == 'Progressing' and condition.get('reason') == 'ProgressDeadlineExceeded':
            return False, 'progress deadline exceeded: %s' % condition.get('message')
    updated = status.get('updatedReplicas', 0)
    available = status.get('availableReplicas', 0)
    total = status.get('replicas', 0)
    if updated < wanted:
        return False, '%d of %d replicas updated' % (updated, wanted)
    if total > updated:
        return False, '%d old replicas pending termination' % (total - updated)
    if available < wanted:
        return False, '%d of %d updated replicas available' % (available, wanted)
    return True, '%d/%d replicas ready' % (available, wanted)


# --------------------------------------------------------------------------------------------
# the rollout
# --------------------------------------------------------------------------------------------

class Rollout(object):
    """One Canary's rollout operations over a ``Kube`` (check mode = Kube(dry_run=True))."""

    def __init__(self, kube, name, namespace, holder=None, sleep=time.sleep, clock=time.monotonic, now=_now):
        self.kube = kube
        self.name = name
        self.namespace = namespace
        self.holder = holder or default_holder()
        self.check_mode = kube.dry_run
        self.changed = False
        self.diff = {'before': {}, 'after': {}}
        self.messages = []
        # The Canary as last written: the result is built from it instead of reading it again.
        self.latest = None
        self._sleep = sleep
        self._clock = clock
        self._now = now

    # ---------------------------------------------------------------- reading

    def read_canary(self, required=True):
        canary = self.kube.get(model.API_VERSION, model.KIND, self.name, self.namespace)
        if canary is None and required:
            raise RolloutError('name', 'Canary %s not found in namespace %s; create it with canary_init (pass spec) '
                                       'or install its manifest' % (self.name, self.namespace))
        return canary

    def read_target(self, spec):
        target_name = spec['targetRef']['name']
        target = self.kube.get(DEPLOYMENT_API, 'Deployment', target_name, self.namespace)
        if target is None:
            raise RolloutError('spec.targetRef.name', 'Deployment %s not found in namespace %s; deploy the target '
                                                      'first or correct targetRef.name' % (target_name, self.namespace))
        return target

    @staticmethod
    def selector_label(target):
        labels = ((target.get('spec') or {}).get('selector') or {}).get('matchLabels') or {}
        for key in SELECTOR_LABEL_KEYS:
            if labels.get(key):
                return key, labels[key]
        raise RolloutError('spec.targetRef.name',
                           'Deployment %s selects its pods without any of the labels %s in selector.matchLabels; '
                           'add one (e.g. app: %s) so the primary and the services can tell the two versions '
                           'apart' % (target['metadata']['name'], ', '.join(SELECTOR_LABEL_KEYS),
                                      target['metadata']['name']))

    def read_configs(self, target):
        """{(kind, name): object} for the configs the target reads and that are tracked."""
        pod_spec = (((target.get('spec') or {}).get('template') or {}).get('spec')) or {}
        found = {}
        for kind, name in model.referenced_configs(pod_spec):
            obj = self.kube.get(CORE_API, kind, name, self.namespace)
            if obj is None:
                # The pod cannot start without it; Kubernetes will report that, the hash just skips it.
                self.messages.append('%s %s referenced by the target does not exist' % (kind, name))
                continue
            if model.is_config_tracking_disabled(obj):
                continue
            if kind == 'Secret' and not model.is_trackable_secret(obj):
                continue
            found[(kind, name)] = obj
        return found

    @staticmethod
    def revision(target, configs):
        checksums = dict((key, model.config_checksum(obj.get('data'), obj.get('binaryData')))
                         for key, obj in configs.items())
        template = copy.deepcopy(target['spec']['template'])
        labels = (template.get('metadata') or {}).get('labels') or {}
        labels.pop(APEX_POD_LABEL, None)
        return model.revision_hash(template, checksums), model.tracked_configs(checksums)

    def shares_apex(self, canary):
        """True for replica-ratio routing: the apex Service spreads over primary and target pods."""
        router = self.router(canary)
        return router is not None and getattr(router, 'scales_workloads', False)

    def ensure_apex_label(self, canary, target):
        """Give the target's pods the shared apex label (provider kubernetes only)."""
        app = target['metadata']['name']
        labels = ((target['spec']['template'].get('metadata') or {}).get('labels')) or {}
        if labels.get(APEX_POD_LABEL) == app:
            return target
        patch = {'spec': {'template': {'metadata': {'labels': {APEX_POD_LABEL: app}}}}}
        after = self.kube.patch(DEPLOYMENT_API, 'Deployment', app, self.namespace, patch)
        self._record('Deployment/%s/template-labels' % app, {'labels': labels},
                     {'labels': dict(labels, **{APEX_POD_LABEL: app})})
        return after if not self.check_mode else target

    # ---------------------------------------------------------------- writing

    def _record(self, key, before, after):
        self.changed = True
        self.diff['before'][key] = _strip_server_fields(before) if before else None
        self.diff['after'][key] = _strip_server_fields(after) if after else None

    def ensure(self, desired, compare=None):
        """Create, or server-side apply when the live object lacks a field we set. Returns the object."""
        api_version, kind = desired['apiVersion'], desired['kind']
        name = desired['metadata']['name']
        current = self.kube.get(api_version, kind, name, self.namespace)
        wanted = compare if compare is not None else desired
        if current is not None and _is_subset(wanted, current):
            return current
        after = self.kube.apply(desired)
        self._record('%s/%s' % (kind, name), current, after)
        return after

    def update_status(self, mutate):
        """Mutate the Canary status with the resourceVersion read; retried on conflict."""
        def _mutate(obj):
            status = mutate(copy.deepcopy(obj.get('status') or {}))
            obj['status'] = status
            return obj
        before, after = self.kube.update_with_retry(model.API_VERSION, model.KIND, self.name, self.namespace,
                                                    _mutate, status=True)
        self.latest = after
        if before != after:
            self._record('Canary/%s/status' % self.name, {'status': before.get('status')},
                         {'status': after.get('status')})
        return after

    def scale(self, name, replicas):
        dep = self.kube.get(DEPLOYMENT_API, 'Deployment', name, self.namespace)
        if dep is None:
            raise RolloutError(None, 'Deployment %s disappeared from namespace %s' % (name, self.namespace))
        if (dep.get('spec') or {}).get('replicas') == replicas:
            return dep
        after = self.kube.patch(DEPLOYMENT_API, 'Deployment', name, self.namespace, {'spec': {'replicas': replicas}})
        self._record('Deployment/%s/replicas' % name, {'replicas': dep['spec'].get('replicas')},
                     {'replicas': replicas})
        return after

    def wait_ready(self, name, timeout, what):
        """Wait for a Deployment to be rolled out and available; RolloutError on timeout."""
        if self.check_mode:
            return None
        deadline = self._clock() + timeout
        while True:
            dep = self.kube.get(DEPLOYMENT_API, 'Deployment', name, self.namespace)
            ready, reason = deployment_ready(dep)
            if ready:
                return dep
            if self._clock() >= deadline:
                raise RolloutError('spec.progressDeadlineSeconds',
                                   '%s Deployment %s not ready within %ss (%s); raise progressDeadlineSeconds '
                                   'or check why its pods do not become ready' % (what, name, timeout, reason))
            self._sleep(POLL_SECONDS)

    # ---------------------------------------------------------------- desired objects

    def desired_primary(self, canary, target, label_key, configs, replicas=None, previous_template=None):
        app = target['metadata']['name']
        primary = model.primary_name(app)
        names_map = model.primary_config_names(sorted(configs))
        template = copy.deepcopy(target['spec']['template'])
        template.setdefault('metadata', {})
        template['metadata']['labels'] = dict(template['metadata'].get('labels') or {}, **{label_key: primary})
        if self.shares_apex(canary):
            template['metadata']['labels'][APEX_POD_LABEL] = app
        else:
            template['metadata']['labels'].pop(APEX_POD_LABEL, None)
        template['metadata'].pop('creationTimestamp', None)
        template['spec'] = model.rewrite_config_refs(template.get('spec') or {}, names_map)
        spec = {
            'selector': {'matchLabels': {label_key: primary}},
            'template': template,
        }
        for field in ('strategy', 'minReadySeconds', 'revisionHistoryLimit', 'progressDeadlineSeconds'):
            if field in target['spec']:
                spec[field] = copy.deepcopy(target['spec'][field])
        if replicas is not None:
            spec['replicas'] = replicas
        labels = dict((target['metadata'].get('labels') or {}), **{label_key: primary})
        labels[MANAGED_BY_LABEL] = MANAGED_BY
        annotations = {PROMOTED_TEMPLATE_ANNOTATION: _json(target['spec']['template'])}
        if previous_template:
            annotations[PREVIOUS_TEMPLATE_ANNOTATION] = previous_template
        return {'apiVersion': DEPLOYMENT_API, 'kind': 'Deployment',
                'metadata': {'name': primary, 'namespace': self.namespace, 'labels': labels,
                             'annotations': annotations, 'ownerReferences': _owner_reference(canary)},
                'spec': spec}

    def desired_config_copies(self, canary, configs):
        copies = []
        for (kind, name), obj in sorted(configs.items()):
            copy_obj = {'apiVersion': CORE_API, 'kind': kind,
                        'metadata': {'name': model.primary_config_name(name), 'namespace': self.namespace,
                                     'labels': dict((obj['metadata'].get('labels') or {}),
                                                    **{MANAGED_BY_LABEL: MANAGED_BY}),
                                     'ownerReferences': _owner_reference(canary)}}
            for field in ('data', 'binaryData', 'type', 'immutable'):
                if obj.get(field) is not None:
                    copy_obj[field] = copy.deepcopy(obj[field])
            copies.append(copy_obj)
        return copies

    def desired_services(self, canary, target, label_key):
        spec = canary['spec']
        service = spec.get('service') or {}
        app = target['metadata']['name']
        apex, primary_svc, canary_svc = model.service_names(spec)
        port = {'name': service.get('portName') or model.DEFAULT_PORT_NAME, 'port': service['port'],
                'targetPort': service.get('targetPort') or service['port'], 'protocol': 'TCP'}
        if service.get('appProtocol'):
            port['appProtocol'] = service['appProtocol']
        owner = _owner_reference(canary)
        apex_selector = {APEX_POD_LABEL: app} if self.shares_apex(canary) else {label_key: model.primary_name(app)}
        result = []
        for name, selector in ((apex, apex_selector), (primary_svc, {label_key: model.primary_name(app)}),
                               (canary_svc, {label_key: app})):
            result.append({'apiVersion': CORE_API, 'kind': 'Service',
                           'metadata': {'name': name, 'namespace': self.namespace,
                                        'labels': {label_key: name, MANAGED_BY_LABEL: MANAGED_BY}},
                           'spec': {'type': 'ClusterIP', 'selector': selector, 'ports': [port]},
                           '_owner': owner})
        return result

    def ensure_services(self, canary, target, label_key):
        for desired in self.desired_services(canary, target, label_key):
            owner = desired.pop('_owner')
            name = desired['metadata']['name']
            current = self.kube.get(CORE_API, 'Service', name, self.namespace)
            if current is None:
                desired['metadata']['ownerReferences'] = owner
                self.ensure(desired)
                continue
            # Adopt a Service the user made (usually the apex): take over selector and port, keep
            # everything else, and remember the selector so the router's finalize can give it back.
            managed = (current['metadata'].get('labels') or {}).get(MANAGED_BY_LABEL) == MANAGED_BY
            compare = {'spec': {'selector': desired['spec']['selector'], 'ports': desired['spec']['ports']}}
            if _is_subset(compare, current):
                continue
            if not managed:
                annotations = {ORIGINAL_SELECTOR_ANNOTATION: _json(current['spec'].get('selector') or {})}
                desired['metadata']['annotations'] = annotations
                desired['metadata']['labels'] = dict(current['metadata'].get('labels') or {},
                                                     **desired['metadata']['labels'])
            else:
                desired['metadata']['ownerReferences'] = owner
            desired['spec'].pop('type', None)
            self.ensure(desired, compare={'spec': desired['spec']})

    def ensure_primary_hpa(self, canary):
        ref = canary['spec'].get('autoscalerRef')
        if not ref:
            return
        hpa = self.kube.get(HPA_API, 'HorizontalPodAutoscaler', ref['name'], self.namespace)
        if hpa is None:
            raise RolloutError('spec.autoscalerRef.name', 'HorizontalPodAutoscaler %s not found in namespace %s'
                               % (ref['name'], self.namespace))
        spec = copy.deepcopy(hpa['spec'])
        spec['scaleTargetRef'] = {'apiVersion': DEPLOYMENT_API, 'kind': 'Deployment',
                                  'name': model.primary_name(canary['spec']['targetRef']['name'])}
        desired = {'apiVersion': HPA_API, 'kind': 'HorizontalPodAutoscaler',
                   'metadata': {'name': model.primary_name(ref['name']), 'namespace': self.namespace,
                                'labels': {MANAGED_BY_LABEL: MANAGED_BY},
                                'ownerReferences': _owner_reference(canary)},
                   'spec': spec}
        self.ensure(desired)

    # ---------------------------------------------------------------- router

    def router(self, canary):
        if get_router is None:
            return None
        return get_router(self.kube, canary)

    def route_all_to_primary(self, canary):
        router = self.router(canary)
        if router is None:
            return False
        changed, _before, _after = router.set_routes(canary, 100, 0, False)
        if changed:
            self.changed = True
        return changed

    def live_routes(self, canary):
        router = self.router(canary)
        if router is None:
            return None
        try:
            primary, canary_weight, mirrored = router.get_routes(canary)
        except (KubeError, RolloutError) as exc:
            return {'error': str(exc)}
        return {'primary': primary, 'canary': canary_weight, 'mirrored': mirrored}


def stop_canary_traffic(kube, name, namespace, canary, spec):
    """All traffic to the primary now, from the gate or watch that decided the rollback.

    The rest of the rollback (target to 0, phase Failed, lock released) stays with
    canary_promote state=rolled_back; until it runs the Canary keeps its run record, marked by
    ``mark_rollback`` so that a resumed run finishes the rollback instead of routing again.
    Returns whether the router changed.
    """
    return Rollout(kube, name, namespace).route_all_to_primary(dict(canary, spec=spec))


def mark_rollback(status):
    """The status once the gate moved the traffic: weights as routed, newest gate entry marked."""
    status.update(canaryWeight=0, primaryWeight=100)
    history = status.get('gateHistory') or []
    if history:
        history[-1]['rollback'] = True
    return status


def rollback_pending(status):
    """Whether the current run's newest gate decided a rollback that did not finish."""
    history = (status or {}).get('gateHistory') or []
    return bool(history and history[-1].get('rollback') and history[-1].get('runId') == status.get('runId')
                and model.is_run_active(status.get('phase')))


def _json(value):
    return json.dumps(value, sort_keys=True, separators=(',', ':'))


# --------------------------------------------------------------------------------------------
# canary_init
# --------------------------------------------------------------------------------------------

def init(kube, name, namespace, spec=None, holder=None, wait=True, **kwargs):
    """Ensure the Canary and its objects; start or resume a run when the target has a new revision.

    Validates everything before the first write, so bad input changes nothing in the cluster.
    """
    rollout = Rollout(kube, name, namespace, holder=holder, **kwargs)
    existing = rollout.read_canary(required=spec is None)
    if spec is not None:
        try:
            spec = model.validate_spec(spec)
        except model.SpecError as exc:
            # exc.message, not str(exc): the message itself may contain ': ' and must arrive whole.
            raise RolloutError('spec.' + exc.field if exc.field != 'spec' else 'spec', exc.message)
    else:
        try:
            spec = model.validate_spec(existing.get('spec') or {})
        except model.SpecError as exc:
            raise RolloutError('spec.' + exc.field, 'the Canary %s in the cluster is invalid: %s'
                               % (name, exc.message))
    target = rollout.read_target(spec)
    label_key, _label_value = rollout.selector_label(target)
    configs = rollout.read_configs(target)
    revision, tracked = rollout.revision(target, configs)

    # ---- the Canary resource itself
    canary = existing
    desired = model.canary_resource(name, namespace, spec)
    if existing is None:
        canary = kube.create(desired)
        rollout._record('Canary/%s' % name, None, canary)
    elif not _is_subset(spec, existing.get('spec') or {}) or not _is_subset(existing.get('spec') or {}, spec):
        updated = copy.deepcopy(existing)
        updated['spec'] = spec
        canary = kube.replace(updated)
        rollout._record('Canary/%s/spec' % name, {'spec': existing.get('spec')}, {'spec': spec})
    if rollout.check_mode and existing is None:
        canary.setdefault('status', {})
    canary['spec'] = spec
    status = canary.get('status') or {}
    if rollout.shares_apex(canary):
        target = rollout.ensure_apex_label(canary, target)

    primary_name = model.primary_name(target['metadata']['name'])
    primary = kube.get(DEPLOYMENT_API, 'Deployment', primary_name, namespace)
    result = {'revision': revision, 'strategy': model.strategy(spec), 'steps': model.weight_steps(spec['analysis']),
              'lock_holder': rollout.holder, 'run_needed': False, 'bootstrapped': False, 'resumed': False,
              'resume': None, 'skip_analysis': spec.get('skipAnalysis', False),
              'suspended': spec.get('suspend', False),
              'analysis_iterations': spec['analysis'].get('iterations', 0),
              'match': spec['analysis'].get('match') or [],
              'mirror': bool(spec['analysis'].get('mirror')),
              'webhook_types': sorted(set(h.get('type') or 'rollout' for h in spec['analysis'].get('webhooks') or [])),
              'interval_seconds': model.parse_duration(
                  spec['analysis'].get('interval') or model.DEFAULT_INTERVAL)}

    if primary is None or not status.get('lastPromotedSpec'):
        _bootstrap(rollout, canary, target, label_key, configs, revision, tracked, primary, wait)
        result['bootstrapped'] = True
    else:
        for obj in rollout.desired_config_copies(canary, configs):
            rollout.ensure(obj)
        rollout.ensure_services(canary, target, label_key)
        rollout.ensure_primary_hpa(canary)
        router = rollout.router(canary)
        if router is not None and router.reconcile(canary):
            rollout.changed = True

        phase = status.get('phase') or ''
        if spec.get('suspend'):
            rollout.messages.append('the Canary is suspended: no run is started or resumed')
        elif model.is_run_active(phase) and status.get('lastAppliedSpec') == revision:
            _resume_run(rollout, canary, target, status, wait, result)
        elif revision != status.get('lastPromotedSpec'):
            _start_run(rollout, canary, target, status, revision, wait, result)
    result.update(_summary(rollout.latest or canary))
    result.update(changed=rollout.changed, diff=rollout.diff, messages=rollout.messages)
    return result


def _bootstrap(rollout, canary, target, label_key, configs, revision, tracked, primary, wait):
    """First sight of a target: the primary takes over its template and its traffic."""
    kube, namespace = rollout.kube, rollout.namespace
    spec = canary['spec']
    status = canary.get('status') or {}
    if not rollout.check_mode and (status.get('phase') or '') == '':
        rollout.update_status(lambda s: model.set_phase(s, model.PHASE_INITIALIZING, rollout._now(),
                                                        'creating the primary from the target'))
    for obj in rollout.desired_config_copies(canary, configs):
        rollout.ensure(obj)
    target_replicas = target['spec'].get('replicas', 1)
    if primary is None:
        # A target already scaled to 0 (re-initialisation) still needs a serving primary.
        replicas = target_replicas if target_replicas else 1
    else:
        replicas = primary['spec'].get('replicas', 1)
    replicas = None if spec.get('autoscalerRef') and primary is not None else replicas
    rollout.ensure(rollout.desired_primary(canary, target, label_key, configs, replicas))
    rollout.ensure_primary_hpa(canary)
    if wait:
        rollout.wait_ready(model.primary_name(target['metadata']['name']), spec['progressDeadlineSeconds'],
                           'primary')
    rollout.ensure_services(canary, target, label_key)
    router = rollout.router(canary)
    if router is not None and router.reconcile(canary):
        rollout.changed = True
    # Only now that the primary serves may the target stop serving.
    rollout.scale(target['metadata']['name'], 0)

    def _initialized(s):
        s = model.set_phase(s, model.PHASE_INITIALIZED, rollout._now(), 'primary %s serves revision %s'
                            % (model.primary_name(target['metadata']['name']), revision))
        s.update(canaryWeight=0, primaryWeight=100, iterations=0, failedChecks=0, lastAppliedSpec=revision,
                 lastPromotedSpec=revision, trackedConfigs=tracked)
        return s
    if not rollout.check_mode:
        rollout.update_status(_initialized)
    else:
        rollout.changed = True


def _acquire(rollout, status, lease_seconds):
    now = rollout._now()
    lock = status.get('lock') or {}
    if lock.get('holder') and lock.get('holder') != rollout.holder and \
            model.lock_state(status, now) == model.LOCK_HELD and _holder_is_dead(lock['holder']):
        rollout.messages.append('took over the run lock from %s, which is no longer running' % lock['holder'])
        status = dict(status, lock=None)
    return model.acquire_lock(status, rollout.holder, now, lease_seconds)


def _lock_error(exc):
    return RolloutError('lock', '%s; another run (%s) is working on this Canary. It is refused so the two do not '
                                'fight over the traffic split' % (exc, exc.holder))


def _start_run(rollout, canary, target, status, revision, wait, result):
    spec = canary['spec']
    lease = model.lease_seconds_for(spec)
    run_id = model.make_run_id(revision, rollout._now())
    restarting = model.is_run_active(status.get('phase'))
    if restarting:
        # The target changed again in the middle of a run: Flagger restarts the analysis from 0%.
        rollout.messages.append('the target changed during run %s; restarting the analysis' % status.get('runId'))

    def _mutate(s):
        s = _acquire(rollout, s, lease)
        if model.is_run_active(s.get('phase')) and s.get('lastAppliedSpec') == revision:
            return s  # someone started this very run between our read and our write
        if restarting or model.is_run_active(s.get('phase')):
            s = dict(s, phase=model.PHASE_FAILED)  # bookkeeping step of a restart, never persisted alone
        s = model.start_run(s, revision, run_id, rollout._now())
        s['message'] = 'run %s started for revision %s' % (run_id, revision)
        return s
    try:
        if restarting:
            rollout.route_all_to_primary(canary)
        if not rollout.check_mode:
            canary = rollout.update_status(_mutate)
        else:
            _mutate(copy.deepcopy(status))  # the lock check still applies in check mode
            rollout.changed = True
    except model.LockHeldError as exc:
        raise _lock_error(exc)
    result.update(run_needed=True, run_id=run_id)
    _scale_target_up(rollout, canary, target, wait)


def _resume_run(rollout, canary, target, status, wait, result):
    lease = model.lease_seconds_for(canary['spec'])
    try:
        if not rollout.check_mode:
            canary = rollout.update_status(lambda s: _acquire(rollout, s, lease))
        else:
            _acquire(rollout, copy.deepcopy(status), lease)
    except model.LockHeldError as exc:
        raise _lock_error(exc)
    status = canary.get('status') or status
    result.update(run_needed=True, resumed=True, run_id=status.get('runId'),
                  resume={'weight': status.get('canaryWeight', 0), 'iterations': status.get('iterations', 0),
                          'failed_checks': status.get('failedChecks', 0), 'phase': status.get('phase'),
                          'rollback_pending': rollback_pending(status)})
    _scale_target_up(rollout, canary, target, wait)


def _scale_target_up(rollout, canary, target, wait):
    router = rollout.router(canary)
    if router is not None and getattr(router, 'scales_workloads', False):
        return  # replica-ratio routing sizes both Deployments itself, weight by weight
    app = target['metadata']['name']
    primary = rollout.kube.get(DEPLOYMENT_API, 'Deployment', model.primary_name(app), rollout.namespace)
    replicas = max(1, ((primary or {}).get('spec') or {}).get('replicas') or 1)
    rollout.scale(app, replicas)
    if wait:
        rollout.wait_ready(app, canary['spec']['progressDeadlineSeconds'], 'canary (target)')


# --------------------------------------------------------------------------------------------
# canary_promote
# --------------------------------------------------------------------------------------------

def _last_run(status):
    return ' after run %s' % status['runId'] if status.get('runId') else ' with no run on record'


def _check_owner(rollout, status, run_id):
    lock = status.get('lock') or {}
    if run_id and status.get('runId') and run_id != status.get('runId'):
        raise RolloutError('run_id', 'run %s is not the Canary\'s current run (%s); it was superseded, nothing was '
                                     'changed' % (run_id, status.get('runId')))
    holder = lock.get('holder')
    if holder and holder != rollout.holder and model.lock_state(status, rollout._now()) == model.LOCK_HELD \
            and not _holder_is_dead(holder) and not run_id:
        raise RolloutError('lock', 'the run lock is held by %s until %s; pass run_id of that run to act on it, '
                                   'or wait for it to finish' % (holder, lock.get('expiresAt')))


def promote(kube, name, namespace, run_id=None, holder=None, wait=True, **kwargs):
    """Copy the target's template to the primary, route everything to it, scale the target to 0."""
    rollout = Rollout(kube, name, namespace, holder=holder, **kwargs)
    canary = rollout.read_canary()
    spec = model.validate_spec(canary.get('spec') or {})
    canary['spec'] = spec
    status = canary.get('status') or {}
    target = rollout.read_target(spec)
    label_key, _value = rollout.selector_label(target)
    configs = rollout.read_configs(target)
    revision, tracked = rollout.revision(target, configs)
    app = target['metadata']['name']
    phase = status.get('phase') or ''

    if phase == model.PHASE_SUCCEEDED and status.get('lastPromotedSpec') == revision:
        return _finish(rollout, canary, 'already promoted')
    if not model.is_run_active(phase):
        if run_id:
            raise RolloutError('run_id', 'run %s is not in progress: the Canary is %s%s, not in a run; there is '
                                         'nothing to promote (start a run with canary_init first)'
                               % (run_id, phase or 'not initialised', _last_run(status)))
        raise RolloutError('state', 'the Canary is %s, not in a run; there is nothing to promote (start a run with '
                                    'canary_init first)' % (phase or 'not initialised'))
    _check_owner(rollout, status, run_id)
    if status.get('lastAppliedSpec') and status['lastAppliedSpec'] != revision:
        raise RolloutError('spec.targetRef.name', 'the target changed since run %s began (revision %s, now %s); '
                                                  'run canary_init again to analyse the new revision'
                           % (status.get('runId'), status['lastAppliedSpec'], revision))

    if not rollout.check_mode and phase != model.PHASE_PROMOTING:
        if phase == model.PHASE_PROGRESSING or phase == model.PHASE_WAITING_PROMOTION:
            rollout.update_status(lambda s: model.set_phase(s, model.PHASE_PROMOTING, rollout._now(),
                                                            'copying revision %s to the primary' % revision))
    for obj in rollout.desired_config_copies(canary, configs):
        rollout.ensure(obj)
    primary = kube.get(DEPLOYMENT_API, 'Deployment', model.primary_name(app), namespace)
    replicas = None if (spec.get('autoscalerRef') or primary is None) else primary['spec'].get('replicas')
    previous = ((primary or {}).get('metadata') or {}).get('annotations') or {}
    rollout.ensure(rollout.desired_primary(canary, target, label_key, configs, replicas,
                                           previous_template=previous.get(PROMOTED_TEMPLATE_ANNOTATION)))
    try:
        if wait:
            rollout.wait_ready(model.primary_name(app), spec['progressDeadlineSeconds'], 'primary')
    except RolloutError as exc:
        # Traffic stays where it is: the primary's old pods keep serving while its rollout is
        # stuck, the canary keeps its share. The record says so and who must act.
        message = ('promotion of revision %s failed: %s; traffic left as it was, run canary_promote '
                   'state=rolled_back to send everything to the primary' % (revision, exc.message))

        def _failed(s):
            s = model.set_phase(s, model.PHASE_FAILED, rollout._now(), message)
            return model.release_lock(s, (s.get('lock') or {}).get('holder'))
        rollout.update_status(_failed)
        raise RolloutError('primary', message)

    if not rollout.check_mode:
        rollout.update_status(lambda s: model.set_phase(s, model.PHASE_FINALISING, rollout._now(),
                                                        'routing all traffic to the primary'))
    rollout.route_all_to_primary(canary)
    router = rollout.router(canary)
    if router is None or not getattr(router, 'scales_workloads', False):
        rollout.scale(app, 0)

    def _succeeded(s):
        s = model.set_phase(s, model.PHASE_SUCCEEDED, rollout._now(), 'revision %s promoted' % revision)
        s.update(canaryWeight=0, primaryWeight=100, lastPromotedSpec=revision, trackedConfigs=tracked)
        return model.release_lock(s, (s.get('lock') or {}).get('holder'))
    if not rollout.check_mode:
        rollout.update_status(_succeeded)
    return _finish(rollout, canary, 'promoted revision %s' % revision)


def rollback(kube, name, namespace, run_id=None, holder=None, reason=None, **kwargs):
    """Everything to the primary, the target to 0, phase Failed; the gate history stays as evidence."""
    rollout = Rollout(kube, name, namespace, holder=holder, **kwargs)
    canary = rollout.read_canary()
    spec = model.validate_spec(canary.get('spec') or {})
    canary['spec'] = spec
    status = canary.get('status') or {}
    phase = status.get('phase') or ''
    app = spec['targetRef']['name']
    if run_id and not model.is_run_active(phase) and run_id != status.get('runId'):
        # Not the run on record: rolling "it" back would act on a run the caller never started.
        raise RolloutError('run_id', 'run %s is not the Canary\'s run on record: the Canary is %s%s; nothing was '
                                     'changed (pass the run_id canary_init returned, or leave it out)'
                           % (run_id, phase or 'not initialised', _last_run(status)))
    target = kube.get(DEPLOYMENT_API, 'Deployment', app, namespace)
    if phase == model.PHASE_FAILED and not (status.get('lock') or {}).get('holder') and \
            (target is None or not target['spec'].get('replicas')):
        routes = rollout.live_routes(canary)
        if not routes or routes.get('canary', 0) == 0:
            return _finish(rollout, canary, 'already rolled back')
    if phase in ('', model.PHASE_INITIALIZING):
        raise RolloutError('state', 'the Canary is not initialised; there is nothing to roll back')
    in_run = model.is_run_active(phase)
    if in_run:
        _check_owner(rollout, status, run_id)
    # Traffic first: the users must be off the canary before anything else can fail.
    rollout.route_all_to_primary(canary)
    router = rollout.router(canary)
    if target is not None and (router is None or not getattr(router, 'scales_workloads', False)):
        rollout.scale(app, 0)
    message = 'run %s rolled back%s' % (status.get('runId') or '-', ': %s' % reason if reason else '')

    def _failed(s):
        if model.is_run_active(s.get('phase')):
            s = model.set_phase(s, model.PHASE_FAILED, rollout._now(), message)
        s.update(canaryWeight=0, primaryWeight=100)
        return model.release_lock(s, (s.get('lock') or {}).get('holder'))
    if not in_run:
        message = 'no run in progress (phase %s): traffic is on the primary and the target at 0' % phase
    if not rollout.check_mode:
        rollout.update_status(_failed)
    else:
        rollout.changed = True
    return _finish(rollout, canary, message)


def revert(kube, name, namespace, holder=None, wait=True, **kwargs):
    """Put the previously promoted template back on the target and the primary (no analysis)."""
    rollout = Rollout(kube, name, namespace, holder=holder, **kwargs)
    canary = rollout.read_canary()
    spec = model.validate_spec(canary.get('spec') or {})
    canary['spec'] = spec
    status = canary.get('status') or {}
    if model.is_run_active(status.get('phase') or ''):
        raise RolloutError('state', 'run %s is in progress (phase %s); roll it back with state=rolled_back first'
                           % (status.get('runId'), status.get('phase')))
    target = rollout.read_target(spec)
    app = target['metadata']['name']
    primary = kube.get(DEPLOYMENT_API, 'Deployment', model.primary_name(app), namespace)
    recorded = (((primary or {}).get('metadata') or {}).get('annotations') or {}).get(PREVIOUS_TEMPLATE_ANNOTATION)
    if not recorded:
        raise RolloutError('primary', 'Deployment %s records no previously promoted template (annotation %s); '
                                      'nothing to revert to' % (model.primary_name(app), PREVIOUS_TEMPLATE_ANNOTATION))
    previous_template = json.loads(recorded)
    if _json(target['spec']['template']) == _json(previous_template) and \
            primary['metadata']['annotations'].get(PROMOTED_TEMPLATE_ANNOTATION) == recorded:
        return _finish(rollout, canary, 'already reverted')
    reverted_from = status.get('lastPromotedSpec')
    if _json(target['spec']['template']) != _json(previous_template):
        updated = copy.deepcopy(target)
        updated['spec']['template'] = previous_template
        rollout._record('Deployment/%s/template' % app, {'template': target['spec']['template']},
                        {'template': previous_template})
        target = kube.replace(updated) if not rollout.check_mode else updated
    label_key, _value = rollout.selector_label(target)
    configs = rollout.read_configs(target)
    revision, tracked = rollout.revision(target, configs)
    for obj in rollout.desired_config_copies(canary, configs):
        rollout.ensure(obj)
    replicas = None if spec.get('autoscalerRef') else primary['spec'].get('replicas')
    # The primary keeps recording the template it replaced, so a second revert finds nothing to do.
    rollout.ensure(rollout.desired_primary(canary, target, label_key, configs, replicas, previous_template=recorded))
    if wait:
        rollout.wait_ready(model.primary_name(app), spec['progressDeadlineSeconds'], 'primary')
    rollout.route_all_to_primary(canary)
    message = 'reverted to revision %s (was %s)' % (revision, reverted_from)

    def _reverted(s):
        s = model.set_phase(s, model.PHASE_SUCCEEDED, rollout._now(), message)
        s.update(canaryWeight=0, primaryWeight=100, lastAppliedSpec=revision, lastPromotedSpec=revision,
                 trackedConfigs=tracked)
        return s
    if not rollout.check_mode:
        rollout.update_status(_reverted)
    return _finish(rollout, canary, message)


def _finish(rollout, canary, message):
    result = _summary(rollout.latest or canary)
    result.update(changed=rollout.changed, diff=rollout.diff, messages=rollout.messages + [message])
    return result


# --------------------------------------------------------------------------------------------
# canary_info
# --------------------------------------------------------------------------------------------

def _summary(canary):
    status = canary.get('status') or {}
    lock = status.get('lock') or {}
    return {
        'phase': status.get('phase') or '',
        'run_id': status.get('runId'),
        'canary_weight': status.get('canaryWeight', 0),
        'primary_weight': status.get('primaryWeight', 100),
        'iterations': status.get('iterations', 0),
        'failed_checks': status.get('failedChecks', 0),
        'last_applied_revision': status.get('lastAppliedSpec'),
        'last_promoted_revision': status.get('lastPromotedSpec'),
        'lock': dict(lock) if lock else None,
        'status': status,
    }


def info(kube, name, namespace, history=10):
    rollout = Rollout(kube, name, namespace, holder='canary_info')
    canary = rollout.read_canary()
    spec = canary.get('spec') or {}
    result = _summary(canary)
    app = (spec.get('targetRef') or {}).get('name')
    readiness = {}
    for role, dep_name in (('primary', model.primary_name(app) if app else None), ('target', app)):
        dep = kube.get(DEPLOYMENT_API, 'Deployment', dep_name, namespace) if dep_name else None
        ready, reason = deployment_ready(dep)
        readiness[role] = {'name': dep_name, 'exists': dep is not None, 'ready': ready, 'detail': reason,
                           'replicas': ((dep or {}).get('spec') or {}).get('replicas'),
                           'available_replicas': ((dep or {}).get('status') or {}).get('availableReplicas', 0)}
    try:
        validated = model.validate_spec(spec)
        canary['spec'] = validated
        routes = rollout.live_routes(canary)
    except (model.SpecError, KubeError, KubeApiError) as exc:
        routes = {'error': str(exc)}
    result.update(changed=False, canary=canary, spec=spec, primary=readiness['primary'], target=readiness['target'],
                  routes=routes, gate_history=list((canary.get('status') or {}).get('gateHistory') or [])[-history:])
    return result
