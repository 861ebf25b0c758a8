# Shared by scripts/* and bench/*: installing system packages on Debian/Ubuntu, and Python modules.
# shellcheck shell=bash

# Runs a command as root (directly, or through sudo when we are not root).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        echo "error: '$*' needs root and sudo is not installed" >&2
        return 1
    fi
}

# ensure_packages PROGRAM:PACKAGE... installs each PACKAGE whose PROGRAM is
# missing, with one apt-get run. A PROGRAM that starts with / is a file
# the package provides (a library, a jar).
ensure_packages() {
    local wanted=() pair program package
    for pair in "$@"; do
        program=${pair%%:*}
        package=${pair#*:}
        if [[ $program == /* ]]; then
            [ -e "$program" ] || wanted+=("$package")
        elif ! command -v "$program" >/dev/null && [ ! -x "/usr/sbin/$program" ]; then
            wanted+=("$package")
        fi
    done
    if [ ${#wanted[@]} -eq 0 ]; then
        return 0
    fi
    if ! command -v apt-get >/dev/null; then
        echo "error: missing ${wanted[*]} and this is not a Debian/Ubuntu system; install them by hand" >&2
        return 1
    fi
    echo "==> installing ${wanted[*]}" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # A policy-rc.d that says "no" keeps the packaged services (MariaDB,
    # HAProxy) from starting: the sandbox and benchmarks run their own.
    local policy=/usr/sbin/policy-rc.d added_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod +x "$policy"
        added_policy=yes
    fi
    local status=0
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${wanted[@]}" >/dev/null || status=$?
    if [ -n "$added_policy" ]; then
        as_root rm -f "$policy"
    fi
    return "$status"
}

# The MariaDB server and client the sandbox needs.
ensure_mariadb() {
    ensure_packages mariadbd:mariadb-server mariadb:mariadb-client
}

# ensure_python_modules MODULE:PACKAGE... installs from PyPI, for the
# python3 on PATH, each PACKAGE whose MODULE does not import.
ensure_python_modules() {
    local pair
    for pair in "$@"; do
        if ! python3 -c "import ${pair%%:*}" 2>/dev/null; then
            echo "==> installing ${pair#*:} for $(command -v python3)" >&2
            python3 -m pip install --quiet --disable-pip-version-check "${pair#*:}"
        fi
    done
}
