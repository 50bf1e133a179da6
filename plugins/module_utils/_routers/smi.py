# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""SMI router (Linkerd, Open Service Mesh): a TrafficSplit named after the apex Service.

split.smi-spec.io/v1alpha4, the version the SMI SDK ships and the one its CRD serves: the apex
Service in ``spec.service`` and two backends with integer weights. Weights only: SMI's A/B
matching needs HTTPRouteGroup objects (specs.smi-spec.io), which meshes rarely install, and SMI
has no mirroring. An adopted TrafficSplit keeps its ``matches``.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

from ansible_collections.progressive.delivery.plugins.module_utils._routers import ObjectRouter, RouterError

API_VERSION = 'split.smi-spec.io/v1alpha4'
KIND = 'TrafficSplit'


class SMIRouter(ObjectRouter):
    name = 'smi'
    features = frozenset()
    api_version = API_VERSION
    kind = KIND

    def _backends(self, canary, primary_weight, canary_weight):
        _apex, primary, canary_name = self.names(canary)
        return [{'service': primary, 'weight': primary_weight}, {'service': canary_name, 'weight': canary_weight}]

    def _new(self, canary):
        return {'apiVersion': API_VERSION, 'kind': KIND, 'metadata': self._metadata(canary),
                'spec': {'service': self.names(canary)[0], 'backends': self._backends(canary, 100, 0)}}

    def _weighted(self, canary, obj):
        canary_name = self.names(canary)[2]
        return [backend for backend in ((obj.get('spec') or {}).get('backends') or [])
                if backend.get('service') == canary_name]

    def _adopt(self, canary, obj):
        spec = obj.get('spec') or {}
        obj['spec'] = spec
        # The split must keep applying to the apex: that is the name clients resolve.
        spec['service'] = self.names(canary)[0]
        spec['backends'] = self._backends(canary, 100, 0)

    def _sync(self, canary, obj):
        obj['spec']['service'] = self.names(canary)[0]

    def _route(self, canary, obj, primary_weight, canary_weight, mirrored, match, mirror_weight):
        obj['spec']['backends'] = self._backends(canary, primary_weight, canary_weight)

    def _read(self, canary, obj):
        _apex, primary, canary_name = self.names(canary)
        weights = {}
        for backend in (obj.get('spec') or {}).get('backends') or []:
            # v1alpha4 types weight as a number; the collection only ever writes integers.
            weights[backend.get('service')] = int(backend.get('weight') or 0)
        if canary_name not in weights:
            raise RouterError('provider', 'TrafficSplit %s in namespace %s has no backend %s; run canary_init to '
                                          'reconcile it' % (self.object_name(canary), self.namespace(canary),
                                                            canary_name))
        return weights.get(primary, 0), weights[canary_name], False
