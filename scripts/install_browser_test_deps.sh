#!/usr/bin/env bash
# Install what the browser test of the web demo (tests/test_demo_browser.py) needs:
#   * Debian's `chromium` package (the system browser Playwright drives through `executable_path`), and
#   * the Python packages of the `demo` and `browser-test` extras (gradio, playwright) into the current Python.
# It never runs `playwright install`: that downloads a browser build of its own, which this project does not use.
#
# Usage: scripts/install_browser_test_deps.sh [PYTHON]      (default: $PYTHON, else `python3`)
# Needs root (or sudo) for apt-get. Exits non-zero with one line when something cannot be installed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${1:-${PYTHON:-python3}}"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"; else
        echo "install_browser_test_deps: need root or sudo to apt-get install chromium" >&2; return 1; fi
}

if ! command -v chromium >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install_browser_test_deps: no apt-get here; install Chromium yourself and set REFALIGN_CHROMIUM" >&2
        exit 1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
fi

# The requirements of the `browser-test` extra, read from pyproject.toml (the package itself is not reinstalled).
mapfile -t reqs < <("$python" - "$here/pyproject.toml" <<'PY'
import sys
try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib
with open(sys.argv[1], "rb") as fh:
    print("\n".join(tomllib.load(fh)["project"]["optional-dependencies"]["browser-test"]))
PY
)
"$python" -m pip install -q "${reqs[@]}"

echo "browser test dependencies ready: $(command -v chromium) ($(chromium --version 2>/dev/null || echo '?'))"
