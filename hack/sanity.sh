#!/usr/bin/env bash
# Runs ansible-test sanity on a copy of the collection placed where
# ansible-test wants it: .../ansible_collections/progressive/delivery.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="$(cd "${VENV:-$repo/.venv}" && pwd)"
dest="$repo/build/sanity/ansible_collections/progressive/delivery"
rm -rf "$dest"; mkdir -p "$dest"
# Only what git tracks or would track (untracked but not ignored): the same set a release would ship.
(cd "$repo" && git ls-files -z --cached --others --exclude-standard) | \
  (cd "$repo" && xargs -0 cp --parents -a -t "$dest" 2>/dev/null || true)
# ansible-test bootstraps pip in its venvs with a script from a host that is
# unreachable here; give it a stand-in where it looks (see get_pip_standin.py).
pip_version="$("$venv/bin/python" -c 'import re, ansible_test._internal.python_requirements as r, inspect; print(re.search(r"pip=.([0-9.]+)", inspect.getsource(r.get_venv_packages)).group(1))')"
cache="$HOME/.ansible/test/cache"; mkdir -p "$cache"
for v in $pip_version; do
  [ -f "$cache/get_pip_${v//./_}.py" ] || cp "$repo/hack/get_pip_standin.py" "$cache/get_pip_${v//./_}.py"
done
cd "$dest"
# A git repository lets ansible-test skip ignored files exactly as upstream CI does.
git init -q . && git add -A >/dev/null && git -c user.name=ci -c user.email=ci@localhost commit -qm sanity
python_version="$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
exec "$venv/bin/ansible-test" sanity --color no --python "$python_version" --requirements "$@"
