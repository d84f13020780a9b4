#!/usr/bin/env bash
# Installs everything fuelsim needs on a fresh Debian machine, then runs the main job or the tests.
#   ./quickstart.sh          install, then the main job (fuelsim tui)
#   ./quickstart.sh test     install, then the whole test suite (what CI runs)
set -euo pipefail
cd "$(dirname "$0")"

DEBIAN_PACKAGES=(
    python3 python3-venv python3-dev gcc
    pcscd vsmartcard-vpcd pcsc-tools opensc libpcsclite-dev swig tmux
    postgresql
)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install_debian_packages() {
    local missing=()
    for pkg in "${DEBIAN_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "==> installing Debian packages: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

install_python_packages() {
    local python=${PYTHON:-python3}
    "$python" -c 'import sys; assert sys.version_info >= (3, 11), "fuelsim needs Python 3.11+"'
    [ -x .venv/bin/python ] || "$python" -m venv .venv
    echo "==> installing Python packages into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
}

install_debian_packages
install_python_packages

case "${1:-run}" in
    run)
        shift || true
        exec .venv/bin/fuelsim tui "$@"
        ;;
    test)
        echo "==> static checks"
        .venv/bin/ruff check .
        .venv/bin/ruff format --check .
        .venv/bin/mypy
        .venv/bin/lint-imports
        echo "==> tests"
        exec .venv/bin/pytest
        ;;
    *)
        echo "usage: ./quickstart.sh [run|test]" >&2
        exit 2
        ;;
esac
