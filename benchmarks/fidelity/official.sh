#!/usr/bin/env bash
# Checkouts of the official code that the parity checks import at run time (never part of this repository):
#   benchmarks/fidelity/official.sh [DIR]      -> DIR/ijepa, DIR/jepa, DIR/vjepa2, DIR/dmtjepa, DIR/tjepa, DIR/seqjepa, DIR/tdjepa, DIR/lejepa (default DIR: runs/official)
# Each is cloned once at the commit the published parity results (and tests/data/official fixtures) were measured against; an existing folder is
# left as it is. IJEPA_OFFICIAL / VJEPA_OFFICIAL / DMT_OFFICIAL / TJEPA_OFFICIAL / SEQJEPA_OFFICIAL /
# TDJEPA_OFFICIAL / LEJEPA_OFFICIAL, when set, name checkouts
# of your own and nothing is cloned.
set -u
dir=${1:-runs/official}
status=0
fetch() {  # name, url, commit, env override
  local target="$dir/$1"
  if [ -n "${4:-}" ]; then echo "$1: using $4"; return; fi
  if [ -d "$target" ]; then echo "$1: $target"; return; fi
  mkdir -p "$dir"
  if git clone --quiet "$2" "$target" && git -C "$target" checkout --quiet "$3"; then
    echo "$1: $target at $3"
  else
    rm -rf "$target"
    echo "$1: could not clone $2 (no network?); its parity check needs a checkout: set $5" >&2
    status=1
  fi
}
fetch ijepa https://github.com/facebookresearch/ijepa 52c1ae95d05f743e000e8f10a1f3a79b10cff048 "${IJEPA_OFFICIAL:-}" IJEPA_OFFICIAL
fetch jepa https://github.com/facebookresearch/jepa 51c59d518fc63c08464af6de585f78ac0c7ed4d5 "${VJEPA_OFFICIAL:-}" VJEPA_OFFICIAL
fetch vjepa2 https://github.com/facebookresearch/vjepa2 c2963a47433ecca0ad4f06ec28bcfa8cb5b5cefb "${VJEPA2_OFFICIAL:-}" VJEPA2_OFFICIAL
fetch dmtjepa https://github.com/DMTJEPA/DMTJEPA b8ad2d89adeb04b657ff6efbb9edcb7ef43b2241 "${DMT_OFFICIAL:-}" DMT_OFFICIAL
fetch tjepa https://github.com/jose-melo/t-jepa 98dda991dd5e5d12266b3557aa80a33c4e0a6606 "${TJEPA_OFFICIAL:-}" TJEPA_OFFICIAL
fetch seqjepa https://github.com/hafezgh/seq-jepa 73e0550601725de59d2205c5bb192c7f86b04018 "${SEQJEPA_OFFICIAL:-}" SEQJEPA_OFFICIAL
fetch tdjepa https://github.com/marbaga/td_jepa_public 9152a328a5a4379127c625ef5a50003185fd8dd8 "${TDJEPA_OFFICIAL:-}" TDJEPA_OFFICIAL
fetch lejepa https://github.com/rbalestr-lab/lejepa eddffdd857a19726342ef6526e01021fb3c32cae "${LEJEPA_OFFICIAL:-}" LEJEPA_OFFICIAL
exit $status
