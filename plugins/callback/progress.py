# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

DOCUMENTATION = r'''
name: progress
type: aggregate
short_description: The release's step lines, and a per-cluster recap at the end of the playbook
version_added: 0.1.0
description:
  - Collects the progress line that the progressive.delivery.canary role prints at every gate (its C(Show the step)
    task; C(canary_progress=true)), one per step, of the form
    C(<cluster> <namespace>/<app> step k/n weight w% PASS | metric=value [min..max] ok | failed checks x/y).
  - At the end of the playbook prints, for every cluster, its steps in order and the outcome of the release
    (promoted, rolled back, not started, reverted; the C(pd_record) fact of progressive.delivery.multicluster),
    so that a fleet's progress reads in a few lines whatever the stdout callback, including AWX's.
  - Works beside any stdout callback. Enable it with C(callbacks_enabled = progressive.delivery.progress) in the
    C([defaults]) section of C(ansible.cfg), or C(ANSIBLE_CALLBACKS_ENABLED=progressive.delivery.progress).
author: progressive.delivery developers (!UNKNOWN)
requirements:
  - enable in configuration
'''

from ansible.plugins.callback import CallbackBase

STEP_TASK = 'Show the step'
# playbooks/multicluster.yml keeps each cluster's outcome in this fact.
RECORD_FACT = 'pd_record'


class CallbackModule(CallbackBase):
    """Collects step lines and outcomes per host; prints a recap at the end."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'progressive.delivery.progress'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.steps = {}
        self.outcomes = {}

    def v2_runner_on_ok(self, result):
        name = result._task.get_name()
        host = result._host.get_name()
        values = result._result
        if name.endswith(STEP_TASK) and isinstance(values.get('msg'), str):
            self.steps.setdefault(host, []).append(' '.join(values['msg'].split()))
        else:
            record = (values.get('ansible_facts') or {}).get(RECORD_FACT)
            if isinstance(record, dict) and record.get('outcome'):
                self.outcomes[host] = record

    def v2_playbook_on_stats(self, stats):
        if not self.steps and not self.outcomes:
            return
        self._display.banner('PROGRESSIVE DELIVERY')
        for host in sorted(set(self.steps) | set(self.outcomes)):
            record = self.outcomes.get(host) or {}
            outcome = str(record.get('outcome') or 'in progress').upper()
            detail = record.get('failure') or ''
            self._display.display('%s: %s%s' % (host, outcome, (' - %s' % detail) if detail else ''))
            for line in self.steps.get(host, []):
                mark = 'ok' if ' PASS ' in line + ' ' else 'x'
                self._display.display('  [%s] %s' % (mark, line))
