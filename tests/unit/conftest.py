# Copyright: (c) 2026, progressive.delivery developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make the collection importable as ansible_collections.progressive.delivery for pytest.

ansible-test unit runs from inside an ansible_collections/<ns>/<name> tree and needs none of this.
A plain `pytest tests/unit` from a checkout gets a temporary tree: a symlink named
ansible_collections/progressive/delivery pointing at the repository root, its parent put first on
sys.path.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import atexit
import os
import shutil
import sys
import tempfile

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _collection_importable():
    try:
        import ansible_collections.progressive.delivery.plugins  # noqa: F401 pylint: disable=unused-import
    except ImportError:
        return False
    return True


def _link_collection():
    root = tempfile.mkdtemp(prefix='pd-collections-')
    namespace_dir = os.path.join(root, 'ansible_collections', 'progressive')
    os.makedirs(namespace_dir)
    os.symlink(_REPO_ROOT, os.path.join(namespace_dir, 'delivery'))
    atexit.register(shutil.rmtree, root, True)
    sys.path.insert(0, root)
    # A failed import above leaves a half-initialised package behind; forget it.
    for name in list(sys.modules):
        if name == 'ansible_collections' or name.startswith('ansible_collections.'):
            del sys.modules[name]


if not _collection_importable():
    _link_collection()
