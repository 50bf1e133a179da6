"""Stand-in for the get-pip.py bootstrap script ansible-test downloads from
ci-files.testing.ansible.com, a host this machine cannot reach. ansible-test
documents that the script may be saved into its cache by hand; this one
installs pip from the interpreter's own bundled wheel (ensurepip) and then the
packages ansible-test asked for, from the ordinary package index."""
import ensurepip
import os
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
# get-pip.py accepts these; pip install does not.
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
# ansible-test runs this with a scrubbed environment (no PIP_CERT, no
# SSL_CERT_FILE); on machines behind a TLS-inspecting proxy the system trust
# store is the only one that verifies the index, so name it.
for bundle in (os.environ.get("PIP_CERT"), "/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"):
    if bundle and os.path.exists(bundle):
        args = ["--cert", bundle] + args
        break
subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)
