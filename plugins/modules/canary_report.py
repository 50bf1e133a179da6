#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

DOCUMENTATION = r'''
module: canary_report
short_description: Write the report of a canary run as a self-contained HTML page and as JSON
version_added: 0.1.0
description:
  - Reads a Canary and writes the report of one of its runs into O(dest), as
    C(<namespace>-<name>-<run_id>.html) and C(<namespace>-<name>-<run_id>.json).
  - The HTML page has no script and no external asset. It shows the outcome in words, a short paragraph
    that says why, an SVG chart of the canary weight over time and one chart per metric with its threshold
    range drawn. Every gate is marked as passed or failed by shape and colour, so the page also reads in
    greyscale, and the promotion or rollback is marked with its reason. The failing metric comes first and
    is highlighted.
  - The JSON file holds the same data with a stable schema (RV(data)). See the collection's docs/report.md.
  - The data comes from the Canary's status (phase, run id, C(gateHistory) entries of the run, the
    decision) and from O(events), the records the playbook kept itself (weights set, hooks, alerts).
  - Read-only on the cluster. The files are written where the module runs, usually the controller
    (C(delegate_to) localhost or a local connection).
  - The same Canary and options give the same bytes, so a second run reports C(changed=false).
author:
  - progressive.delivery developers (!UNKNOWN)
extends_documentation_fragment:
  - progressive.delivery.auth
  - progressive.delivery.canary
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: The report is built and returned, no file is written; C(changed) says whether the files would change.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: none
options:
  run_id:
    description:
      - The run to report on. Defaults to the Canary's current or last run (C(status.runId)).
      - An earlier run can be reported while its gate results are still in C(gateHistory), which keeps the
        newest 50 gates, or when O(events) carry its records.
    type: str
  dest:
    description:
      - Directory to write the two files into; created when missing.
      - Must be an absolute path, for example C({{ playbook_dir }}/reports).
    type: path
    required: true
  events:
    description:
      - Records the playbook kept during the run, each a mapping with C(time) (RFC 3339, or epoch seconds) and
        C(kind), one of V(weight), V(gate), V(hook), V(alert), V(decision), V(promoted) or V(rolled_back).
      - V(weight) events carry C(weight). When any is given they replace the weights derived from the gates.
      - V(gate) events take the shape of a C(gateHistory) entry. They fill in gates that no longer fit
        in the Canary's history.
      - V(decision), V(promoted) and V(rolled_back) events carry C(reason). V(hook) and V(alert) events may
        carry any other fields, which the report lists.
      - An event with a C(run_id) of another run is left out.
    type: list
    elements: dict
    default: []
  title:
    description: Title of the page. Defaults to C(<app> release <revision>).
    type: str
requirements:
  - kubernetes >= 24.2.0
notes:
  - Without O(events) the weight at each gate is taken as set right after the previous gate, which is
    how the collection's role steps. Pass weight events for exact times.
'''

EXAMPLES = r'''
- name: Write the report of the last podinfo run
  progressive.delivery.canary_report:
    name: podinfo
    namespace: shop
    dest: "{{ playbook_dir }}/reports"
  delegate_to: localhost
  register: report

- name: Publish the report path for the AWX workflow
  ansible.builtin.set_stats:
    data:
      podinfo_report: "{{ report.html_path }}"
      podinfo_outcome: "{{ report.outcome }}"

- name: Report an earlier run, with the hooks the play recorded
  progressive.delivery.canary_report:
    name: podinfo
    namespace: shop
    run_id: 1a2b3c4d-20260131120000
    dest: /var/lib/awx/reports
    title: podinfo 6.5.1 to production
    events:
      - time: "2026-01-31T12:00:30Z"
        kind: hook
        name: load-test
        type: rollout
        ok: true
      - time: "2026-01-31T12:04:02Z"
        kind: rolled_back
        reason: request-success-rate below 99
'''

RETURN = r'''
html_path:
  description: Path of the HTML report (written unless in check mode).
  returned: success
  type: str
  sample: /home/ops/reports/shop-podinfo-1a2b3c4d-20260131120000.html
json_path:
  description: Path of the JSON report (written unless in check mode).
  returned: success
  type: str
  sample: /home/ops/reports/shop-podinfo-1a2b3c4d-20260131120000.json
run_id:
  description: The run reported on.
  returned: success
  type: str
  sample: 1a2b3c4d-20260131120000
outcome:
  description: V(promoted), V(rolled_back), V(failed) (promotion failed), V(in_progress) or V(unknown).
  returned: success
  type: str
  sample: rolled_back
summary:
  description: One line saying how the run ended and which metric failed.
  returned: success
  type: str
  sample: "shop/podinfo run 1a2b3c4d-20260131120000: rolled back at 30% after 4 gates; request-success-rate failed 2 of 4 (min 99%)"
data:
  description:
    - The report data, the same as the JSON file. Its schema is described in the collection's docs/report.md.
    - Keys include C(schema_version), C(run_id), C(app), C(namespace), C(provider), C(strategy), C(revision),
      C(started), C(finished), C(outcome), C(why), C(weights) (time, weight), C(metrics) (name,
      threshold_range, failing, points of time, value and verdict), C(gates), C(decisions) (time, kind,
      reason) and C(events).
  returned: success
  type: dict
'''

import os
import tempfile

from ansible.module_utils.common.text.converters import to_bytes, to_native

from ansible_collections.progressive.delivery.plugins.module_utils._module import build_module, exit_with, hide_webhook_urls, kube_for
from ansible_collections.progressive.delivery.plugins.module_utils._kube import KubeError
from ansible_collections.progressive.delivery.plugins.module_utils import _canary, _report


def argspec():
    return dict(
        run_id=dict(type='str'),
        dest=dict(type='path', required=True),
        events=dict(type='list', elements='dict', default=[]),
        title=dict(type='str'),
    )


def _differs(path, content):
    try:
        with open(path, 'rb') as handle:
            return handle.read() != content
    except (IOError, OSError):
        return True


def _write(module, directory, path, content):
    fd, temporary = tempfile.mkstemp(dir=directory, prefix='.canary_report-')
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(content)
        module.atomic_move(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def main():
    module = build_module(argspec())
    params = module.params
    dest = params['dest']
    if not os.path.isabs(dest):
        # A module runs from a temporary directory Ansible deletes afterwards: a relative path
        # would write the report where nobody finds it.
        module.fail_json(msg='dest must be an absolute path, e.g. "{{ playbook_dir }}/reports", got "%s"' % dest,
                         field='dest')
    if os.path.exists(dest) and not os.path.isdir(dest):
        module.fail_json(msg='dest must be a directory, but %s is a file' % dest, field='dest')

    kube = kube_for(module)
    try:
        canary = kube.get(_canary.API_VERSION, _canary.KIND, params['name'], params['namespace'])
    except KubeError as exc:
        module.fail_json(msg=str(exc), field=exc.field)
    if canary is None:
        missing = 'Canary %s not found in namespace %s; check name and namespace' % (params['name'], params['namespace'])
        module.fail_json(msg=missing, field='name')
    hide_webhook_urls(module, canary.get('spec'))
    try:
        data = _report.build(canary, run_id=params['run_id'], events=params['events'], title=params['title'])
    except _report.ReportError as exc:
        module.fail_json(msg=exc.message, field=exc.field)

    stem = _report.file_stem(params['namespace'], params['name'], data['run_id'])
    files = (
        (os.path.join(dest, stem + '.html'), to_bytes(_report.to_html(data), errors='surrogate_or_strict')),
        (os.path.join(dest, stem + '.json'), to_bytes(_report.to_json(data), errors='surrogate_or_strict')),
    )
    changed = any(_differs(path, content) for path, content in files)
    if changed and not module.check_mode:
        try:
            if not os.path.isdir(dest):
                os.makedirs(dest)
            for path, content in files:
                if _differs(path, content):
                    _write(module, dest, path, content)
        except (IOError, OSError) as exc:
            module.fail_json(msg='cannot write the report into %s: %s' % (dest, to_native(exc)), field='dest')

    exit_with(module, dict(changed=changed, html_path=files[0][0], json_path=files[1][0], run_id=data['run_id'],
                           outcome=data['outcome'], summary=data['summary'], data=data))


if __name__ == '__main__':
    main()
