#!/usr/bin/env bash
# Install the SLURM + munge binaries used by tests/test_slurm_cluster.py (a real 2-node cluster on this host).
#
# Idempotent and never fatal: if the binaries are already on PATH this does nothing; if they cannot be
# installed (not root, no apt-get, no network, ...) it prints one line saying why and exits 0, and the
# SLURM tests then skip with that reason. It only installs packages: the test fixture starts its own
# daemons with its own config (SLURM_CONF), so nothing here is configured or started.
set -uo pipefail

PACKAGES=(slurmctld slurmd slurm-client munge)
NEEDED=(sbatch slurmctld slurmd munged)

missing() {
    local b
    for b in "${NEEDED[@]}"; do
        # The daemons live in /usr/sbin, which is not on every user's PATH.
        command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || { echo "$b"; return 0; }
    done
    return 1
}

if ! first_missing=$(missing); then
    exit 0  # everything already installed
fi

skip() { echo "setup-slurm: SLURM tests will be skipped: $*"; exit 0; }

if ! command -v apt-get >/dev/null 2>&1; then
    skip "$first_missing not installed and apt-get is not available (install slurmctld slurmd slurm-client munge by hand)"
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    skip "$first_missing not installed and not root (run: sudo bash .ci/setup-slurm.sh)"
fi

# Package maintainer scripts would start system-wide munge/slurm services; the tests run their own, so
# forbid service starts for the duration of the install (standard Debian policy-rc.d mechanism), unless
# the machine already has its own policy, which we leave alone.
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
    # shellcheck disable=SC2016
    "${SUDO[@]}" sh -c 'printf "#!/bin/sh\nexit 101\n" > "$1" && chmod 755 "$1"' _ "$POLICY" \
        && trap '"${SUDO[@]}" rm -f "$POLICY"' EXIT
fi

install() {
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >/tmp/setup-slurm.log 2>&1
}

echo "setup-slurm: installing ${PACKAGES[*]} (log: /tmp/setup-slurm.log)"
if ! install; then
    # Stale or absent package lists are the usual cause: refresh them once and retry.
    if ! "${SUDO[@]}" apt-get update -q >>/tmp/setup-slurm.log 2>&1 || ! install; then
        skip "apt-get install ${PACKAGES[*]} failed: $(tail -n 1 /tmp/setup-slurm.log)"
    fi
fi

if first_missing=$(missing); then
    skip "$first_missing still missing after installing ${PACKAGES[*]}"
fi
echo "setup-slurm: installed $(/usr/sbin/slurmd -V 2>/dev/null || echo slurm)"
