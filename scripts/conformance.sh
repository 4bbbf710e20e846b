#!/usr/bin/env bash
# Scores qvisor-conformance against libvirt 9.0's corpus in ../shared/conformance
# (or $QVISOR_CONFORMANCE_DIR). Floors only rise: CI fails when a mode passes
# fewer cases than its floor.
#
#   scripts/conformance.sh [MODE...]     modes: caps xml2xml errors argv (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CONF=${QVISOR_CONFORMANCE_DIR:-$ROOT/../shared/conformance}
TOOL="$ROOT/target/release/qvisor-conformance"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

# mode  floor  extra check.py flags
FLOORS=(
    "caps 9"
    "xml2xml 85"
    "errors 33 --require-message"
    "argv 220"
)

[ -x "$TOOL" ] || cargo build --release -p qvisor-conformance
modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(caps xml2xml errors argv)

status=0
for entry in "${FLOORS[@]}"; do
    read -r mode floor extra <<<"$entry"
    [[ " ${modes[*]} " == *" $mode "* ]] || continue
    case $mode in
        caps) tmpl="$TOOL caps {replies}" ;;
        xml2xml) tmpl="$TOOL xml2xml --caps {caps} --conf {conf} --aux {aux} {xml}" ;;
        errors|argv) tmpl="$TOOL argv --caps {caps} --conf {conf} --aux {aux} {xml}" ;;
    esac
    echo "== conformance $mode (floor $floor)"
    # shellcheck disable=SC2086
    if ! "$PY" "$CONF/check.py" "$mode" --tool "$tmpl" --min-pass "$floor" -j 2 $extra | tail -n 3; then
        echo "conformance $mode: below the floor of $floor" >&2
        status=1
    fi
done
exit $status
