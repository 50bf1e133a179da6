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
