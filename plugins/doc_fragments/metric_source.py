# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# The metric source option of metric_gate and metric_watch; mirrors SOURCE_ARG_SPEC in
# plugins/module_utils/_metrics/__init__.py.

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type


class ModuleDocFragment(object):

    DOCUMENTATION = r'''
options:
  source:
    description:
      - Where the metric values come from.
      - When this is not given, the source is Prometheus at the Canary's C(spec.metricsServer).
    type: dict
    suboptions:
      type:
        description:
          - V(prometheus) uses the HTTP API for instant and range queries.
          - V(datadog) uses the metrics query API.
          - V(http) reads any JSON endpoint, and each metric's query is a JMESPath expression.
        type: str
        choices: [prometheus, datadog, http]
        default: prometheus
      address:
        description:
          - The base URL of Prometheus or Datadog, or the URL of the JSON endpoint for V(http).
          - For Prometheus, the default is the Canary's C(spec.metricsServer). For Datadog, the default is
            V(https://api.datadoghq.com).
        type: str
      bearer_token:
        description: The bearer token sent in the C(Authorization) header.
        type: str
      username:
        description: The user name for HTTP basic authentication. It needs O(source.password).
        type: str
      password:
        description: The password for HTTP basic authentication.
        type: str
      headers:
        description:
          - Extra HTTP headers, for example C(X-Scope-OrgID) for a multi-tenant Prometheus.
          - The values are treated as secrets.
        type: dict
      ca_cert:
        description: The path to the PEM bundle of the certificate authority that signed the source's certificate.
        type: path
      validate_certs:
        description: Whether to verify the source's TLS certificate.
        type: bool
        default: true
      timeout:
        description: The time limit, in seconds, for each HTTP request.
        type: float
        default: 10
      retries:
        description:
          - How many times a transient failure is retried, with exponential backoff. Transient failures are
            refused or reset connections, timeouts and HTTP 429, 500, 502, 503 or 504.
        type: int
        default: 3
      api_key:
        description: The Datadog API key.
        type: str
      application_key:
        description: The Datadog application key.
        type: str
      method:
        description: The HTTP method for the V(http) source.
        type: str
        choices: [GET, POST]
        default: GET
      body:
        description:
          - The request body for the V(http) source. A dict or list is sent as JSON, anything else as text.
        type: raw
'''
