# -*- coding: utf-8 -*-
# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# Connection and authentication options shared by every module of the collection.
# Mirrors AUTH_ARG_SPEC in plugins/module_utils/_kube.py option for option; a unit test
# (tests/unit/plugins/module_utils/test_kube.py) keeps the two in step.

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type


class ModuleDocFragment(object):

    DOCUMENTATION = r'''
options:
  kubeconfig:
    description:
      - Path to a kubeconfig file, or several paths joined with V(:), or the kubeconfig itself as a dictionary.
      - When neither this, O(context) nor O(host) with a credential is given, the module uses the service
        account of the pod it runs in, and outside a pod the default kubeconfig (E(KUBECONFIG), else
        C(~/.kube/config)).
      - Can also be set with the E(K8S_AUTH_KUBECONFIG) environment variable.
    type: raw
  context:
    description:
      - Name of the kubeconfig context to use instead of its current-context.
      - Can also be set with the E(K8S_AUTH_CONTEXT) environment variable.
    type: str
  host:
    description:
      - URL of the Kubernetes API server, for example V(https://127.0.0.1:6443).
      - With O(api_key), O(username) and O(password), or O(client_cert), no kubeconfig is read;
        otherwise it overrides the server of the kubeconfig.
      - Can also be set with the E(K8S_AUTH_HOST) environment variable.
    type: str
  api_key:
    description:
      - Bearer token used to authenticate with the API server.
      - Treated as a secret (C(no_log)).
      - Can also be set with the E(K8S_AUTH_API_KEY) environment variable.
      - Mutually exclusive with O(username) and O(password).
    type: str
  username:
    description:
      - User name for HTTP basic authentication; needs O(password).
      - Only clusters configured for basic authentication accept it.
      - Can also be set with the E(K8S_AUTH_USERNAME) environment variable.
    type: str
  password:
    description:
      - Password for HTTP basic authentication; needs O(username).
      - Treated as a secret (C(no_log)).
      - Can also be set with the E(K8S_AUTH_PASSWORD) environment variable.
    type: str
  validate_certs:
    description:
      - Whether to verify the TLS certificate of the API server.
      - Defaults to V(true), unlike C(kubernetes.core) which leaves the choice to the kubeconfig;
        set V(false) explicitly to skip verification, even when the kubeconfig says
        C(insecure-skip-tls-verify).
      - Can also be set with the E(K8S_AUTH_VALIDATE_CERTS) or E(K8S_AUTH_VERIFY_SSL) environment variable.
    type: bool
    default: true
    aliases: [ verify_ssl ]
  ca_cert:
    description:
      - Path to the PEM bundle of the certificate authority that signed the API server's certificate;
        include the full chain.
      - Can also be set with the E(K8S_AUTH_CA_CERT) or E(K8S_AUTH_SSL_CA_CERT) environment variable.
    type: path
    aliases: [ ssl_ca_cert ]
  client_cert:
    description:
      - Path to a PEM client certificate used to authenticate with the API server.
      - Can also be set with the E(K8S_AUTH_CLIENT_CERT) or E(K8S_AUTH_CERT_FILE) environment variable.
    type: path
    aliases: [ cert_file ]
  client_key:
    description:
      - Path to the PEM key of O(client_cert).
      - Can also be set with the E(K8S_AUTH_CLIENT_KEY) or E(K8S_AUTH_KEY_FILE) environment variable.
    type: path
    aliases: [ key_file ]
  proxy:
    description:
      - URL of the HTTP proxy to reach the API server through.
      - Can also be set with the E(K8S_AUTH_PROXY) environment variable.
    type: str
  no_proxy:
    description:
      - Comma-separated hosts, domains, IP addresses and CIDR ranges reached without O(proxy),
        for example V(localhost,.local,127.0.0.1,10.0.0.0/8).
      - Can also be set with the E(K8S_AUTH_NO_PROXY) environment variable.
    type: str
  proxy_headers:
    description:
      - Headers sent to O(proxy).
      - When not given, the suboptions are read from their environment variables.
    type: dict
    suboptions:
      proxy_basic_auth:
        description:
          - V(user:password) for the proxy's basic authentication.
          - Treated as a secret (C(no_log)).
          - Can also be set with the E(K8S_AUTH_PROXY_HEADERS_PROXY_BASIC_AUTH) environment variable.
        type: str
      basic_auth:
        description:
          - V(user:password) for a basic authentication header.
          - Treated as a secret (C(no_log)).
          - Can also be set with the E(K8S_AUTH_PROXY_HEADERS_BASIC_AUTH) environment variable.
        type: str
      user_agent:
        description:
          - User-Agent header, for example V(foo/1.0).
          - Can also be set with the E(K8S_AUTH_PROXY_HEADERS_USER_AGENT) environment variable.
        type: str
  persist_config:
    description:
      - Whether tokens the client refreshes (OIDC, cloud provider plugins) are written back to the kubeconfig
        file, so that the next run does not start from an expired refresh token.
      - Not written back when unset.
      - Can also be set with the E(K8S_AUTH_PERSIST_CONFIG) environment variable.
    type: bool
  impersonate_user:
    description:
      - User to act as (C(Impersonate-User) header); the authenticated identity needs the C(impersonate) verb on it.
      - Can also be set with the E(K8S_AUTH_IMPERSONATE_USER) environment variable.
    type: str
  impersonate_groups:
    description:
      - Groups to act as, one C(Impersonate-Group) header each; needs O(impersonate_user).
      - Can also be set with the E(K8S_AUTH_IMPERSONATE_GROUPS) environment variable, comma-separated,
        for example V(group1,group2).
    type: list
    elements: str
requirements:
  - python >= 3.9
  - kubernetes >= 24.2.0
notes:
  - The option names and E(K8S_AUTH_*) variables are those of C(kubernetes.core), so an AWX or
    Automation Controller Kubernetes credential works unchanged.
  - Transient API errors (HTTP 429, 500, 502, 503, 504, refused or reset connections, timeouts) are
    retried a bounded number of times with exponential backoff; validation errors are not.
'''
