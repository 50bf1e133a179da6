# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# The options that name the Canary a module works on; mirrors CANARY_ID_SPEC in
# plugins/module_utils/_module.py.

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type


class ModuleDocFragment(object):

    DOCUMENTATION = r'''
options:
  name:
    description: Name of the Canary resource.
    type: str
    required: true
  namespace:
    description: Namespace of the Canary (and of its target Deployment).
    type: str
    required: true
'''

    # Modules that take the Canary object from the task before them (CANARY_OBJECT_SPEC).
    OBJECT = r'''
options:
  canary:
    description:
      - The Canary object as the previous task of the run returned it (RV(canary) of
        M(progressive.delivery.canary_init), M(progressive.delivery.mesh_weight),
        M(progressive.delivery.metric_watch) or M(progressive.delivery.metric_gate)), to save reading it again.
      - Only a cache of one read, never trusted for writes. A status write made from it is pinned to its
        C(metadata.resourceVersion), so a stale copy costs one conflict and a fresh read, never a lost update.
      - Must be the Canary named by O(name) and O(namespace). Its C(spec.analysis.webhooks) are ignored (Ansible
        masks their URLs in task results).
    type: dict
'''
