# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""No-mesh router: the split is approximated by the replica counts of the primary and the target.

A Service that selects the pods of both Deployments spreads connections over all their ready
pods, so ``canary / (primary + canary)`` of the pods is roughly the canary's share of the traffic.
``total`` is the primary's replica count recorded (as an annotation on the primary) when the
router is reconciled outside a run. For canary weight ``w``::

    canary replicas  = round(total * w / 100)          (halves round up)
    primary replicas = total - canary replicas, but at least 1 while w < 100

so the granularity is ``100 / total`` percent: with 4 replicas the weights that change anything
are 25, 50, 75 and 100, and a weight below ``50 / total`` (12.5 % with 4 replicas) gives the
canary no pod at all. ``get_routes`` returns the weight last set while the replica counts still
match it, otherwise the split the replica counts actually give. No match, no mirroring.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import copy
import math

from ansible_collections.progressive.delivery.plugins.module_utils import _canary as model
from ansible_collections.progressive.delivery.plugins.module_utils._routers import (
    ANNOTATION_PREFIX, Router, RouterError, dumps,
)

API_VERSION = 'apps/v1'
KIND = 'Deployment'
TOTAL_REPLICAS_ANNOTATION = ANNOTATION_PREFIX + 'total-replicas'
CANARY_WEIGHT_ANNOTATION = ANNOTATION_PREFIX + 'canary-weight'


def replicas_for(total, canary_weight):
    """(primary replicas, canary replicas) for a canary weight, as the module docstring explains."""
    canary_replicas = int(math.floor(total * canary_weight / 100.0 + 0.5))
    primary_replicas = total - canary_replicas
    if canary_weight < 100:
        primary_replicas = max(primary_replicas, 1)
    return primary_replicas, canary_replicas


def _replicas(deployment):
    replicas = (deployment.get('spec') or {}).get('replicas')
    return 1 if replicas is None else int(replicas)


def _snapshot(deployment):
    if deployment is None:
        return None
    annotations = dict((key, value) for key, value in (deployment['metadata'].get('annotations') or {}).items()
                       if key in (TOTAL_REPLICAS_ANNOTATION, CANARY_WEIGHT_ANNOTATION))
    shown = {'metadata': {'name': deployment['metadata']['name'],
                          'namespace': deployment['metadata'].get('namespace')},
             'spec': {'replicas': _replicas(deployment)}}
    if annotations:
        shown['metadata']['annotations'] = annotations
    return shown


class KubernetesRouter(Router):
    name = 'kubernetes'
    features = frozenset()
    scales_workloads = True

    # -- names and reads ----------------------------------------------------------------------

    @staticmethod
    def target_name(canary):
        return canary['spec']['targetRef']['name']

    def primary_name(self, canary):
        return model.primary_name(self.target_name(canary))

    def _get(self, canary, name):
        return self.kube.get(API_VERSION, KIND, name, self.namespace(canary))

    def _read_both(self, canary, missing_primary_ok=False):
        primary = self._get(canary, self.primary_name(canary))
        if primary is None:
            if missing_primary_ok:
                return None, None
            raise self._missing(KIND, self.primary_name(canary), canary)
        target = self._get(canary, self.target_name(canary))
        if target is None:
            raise RouterError('targetRef.name', 'Deployment %s (targetRef.name) not found in namespace %s'
                              % (self.target_name(canary), self.namespace(canary)))
        return primary, target

    @staticmethod
    def _total(primary):
        value = (primary['metadata'].get('annotations') or {}).get(TOTAL_REPLICAS_ANNOTATION)
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    def _weights(self, primary, target):
        primary_replicas, canary_replicas = _replicas(primary), _replicas(target)
        total = self._total(primary)
        nominal = (primary['metadata'].get('annotations') or {}).get(CANARY_WEIGHT_ANNOTATION)
        if total and nominal is not None and nominal.isdigit() and int(nominal) <= 100 \
                and replicas_for(total, int(nominal)) == (primary_replicas, canary_replicas):
            return 100 - int(nominal), int(nominal), False
        if primary_replicas + canary_replicas == 0:
            return 100, 0, False
        canary_weight = int(math.floor(100.0 * canary_replicas / (primary_replicas + canary_replicas) + 0.5))
        return 100 - canary_weight, canary_weight, False

    def _result(self, canary, primary, target):
        weights = self._weights(primary, target)
        return {'weights': {'primary': weights[0], 'canary': weights[1], 'mirrored': weights[2]},
                'objects': {'%s/%s' % (KIND, self.primary_name(canary)): _snapshot(primary),
                            '%s/%s' % (KIND, self.target_name(canary)): _snapshot(target)}}

    def _check_apex_service(self, canary, primary, target):
        """Warn when the apex Service cannot spread traffic over both Deployments' pods."""
        apex = self.names(canary)[0]
        service = self.kube.get('v1', 'Service', apex, self.namespace(canary))
        if service is None:
            return
        selector = (service.get('spec') or {}).get('selector') or {}
        for deployment in (primary, target):
            labels = ((((deployment.get('spec') or {}).get('template') or {}).get('metadata') or {})
                      .get('labels') or {})
            if not selector or any(labels.get(key) != value for key, value in selector.items()):
                self.warnings.append(
                    'provider kubernetes splits traffic by replica counts, but Service %s (selector %s) does not '
                    'select the pods of Deployment %s, so its replicas get none of the traffic sent to %s; give '
                    'the primary and the target a pod label in common and select on it'
                    % (apex, dumps(selector), deployment['metadata']['name'], apex))

    # -- interface ----------------------------------------------------------------------------

    def reconcile(self, canary):
        # In check mode a first canary_init only dry-run created the primary: nothing to annotate
        # yet, the real run will.
        primary, target = self._read_both(canary, missing_primary_ok=getattr(self.kube, 'dry_run', False))
        if primary is None:
            return True
        self._check_apex_service(canary, primary, target)
        if canary['spec'].get('autoscalerRef'):
            self.warnings.append('provider kubernetes sizes the primary itself; the autoscaler %s will resize it '
                                 'between steps' % canary['spec']['autoscalerRef']['name'])

        def rebuild(obj):
            desired = copy.deepcopy(obj)
            annotations = desired['metadata'].setdefault('annotations', {})
            weight = annotations.get(CANARY_WEIGHT_ANNOTATION)
            # Outside a run the primary carries all the traffic: its size is the total to split.
            if weight in (None, '0') or TOTAL_REPLICAS_ANNOTATION not in annotations:
                annotations[TOTAL_REPLICAS_ANNOTATION] = str(max(1, _replicas(obj)))
                annotations[CANARY_WEIGHT_ANNOTATION] = weight or '0'
            return desired

        desired = rebuild(primary)
        self._write(primary, desired, rebuild)
        return desired != primary

    def get_routes(self, canary):
        primary, target = self._read_both(canary)
        return self._weights(primary, target)

    def set_routes(self, canary, primary_weight, canary_weight, mirrored=False, match=None, mirror_weight=None):
        self.check(canary, primary_weight, canary_weight, mirrored, match, mirror_weight)
        primary, target = self._read_both(canary)
        total = self._total(primary)
        if not total:
            raise RouterError('provider', 'Deployment %s has no %s annotation: the kubernetes router has not been '
                                          'set up for Canary %s; run canary_init first (it reconciles the router)'
                              % (self.primary_name(canary), TOTAL_REPLICAS_ANNOTATION, canary['metadata']['name']))
        primary_replicas, canary_replicas = replicas_for(total, canary_weight)

        def primary_build(obj):
            desired = copy.deepcopy(obj)
            desired['spec']['replicas'] = primary_replicas
            desired['metadata'].setdefault('annotations', {})[CANARY_WEIGHT_ANNOTATION] = str(canary_weight)
            return desired

        def target_build(obj):
            desired = copy.deepcopy(obj)
            desired['spec']['replicas'] = canary_replicas
            return desired

        desired_primary, desired_target = primary_build(primary), target_build(target)
        # Grow before shrinking, so capacity never dips in between.
        if canary_replicas > _replicas(target):
            after_target = self._write(target, desired_target, target_build)
            after_primary = self._write(primary, desired_primary, primary_build)
        else:
            after_primary = self._write(primary, desired_primary, primary_build)
            after_target = self._write(target, desired_target, target_build)
        changed = desired_primary != primary or desired_target != target
        return changed, self._result(canary, primary, target), self._result(canary, after_primary, after_target)

    def finalize(self, canary):
        changed = False
        primary = self._get(canary, self.primary_name(canary))
        if primary is not None and self._total(primary):
            total = self._total(primary)

            def restored(obj):
                desired = copy.deepcopy(obj)
                desired['spec']['replicas'] = total
                annotations = desired['metadata'].get('annotations') or {}
                for key in (TOTAL_REPLICAS_ANNOTATION, CANARY_WEIGHT_ANNOTATION):
                    annotations.pop(key, None)
                return desired

            self._write(primary, restored(primary), restored)
            changed = True
        return self.restore_apex_service(canary) or changed
