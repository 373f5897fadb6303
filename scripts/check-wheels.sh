#!/usr/bin/env bash
# Build wheels of the core and of every plugin under plugins/, install them into an empty virtualenv,
# and check that each plugin sits on our rlm-core (>= 0.2), never on the unrelated rlm-core 0.1.0 that
# the public index serves under the same import name.
#
#   bash scripts/check-wheels.sh            (PYTHON=python3.12 to use another interpreter)
#
# Exits non-zero and says what failed. A new directory under plugins/ with a pyproject.toml is
# picked up without changes here.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/rlm-check-wheels.XXXXXX")"
WHEELS="$WORK/wheels"
ENV="$WORK/env"
FAILURES=()
trap 'rm -rf "$WORK"' EXIT

step() { printf '\n== [%ss] %s\n' "$SECONDS" "$*"; }
fail() { printf 'FAIL: %s\n' "$*"; FAILURES+=("$*"); }
die() { fail "$*"; printf '\ncheck-wheels: %d failure(s), stopping\n' "${#FAILURES[@]}"; exit 1; }

# Build from a copy of the files git would ship (tracked, plus new files not ignored): an in-tree
# setuptools build would leave build/ directories behind, whose stale files could enter later wheels.
SRC="$WORK/src"
mkdir -p "$SRC"
git -C "$ROOT" ls-files -z --cached --others --exclude-standard \
    | (cd "$ROOT" && xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' _) \
    | tar -C "$ROOT" --null -T - -cf - | tar -C "$SRC" -xf - \
    || die "cannot copy the checkout's files (is $ROOT a git checkout?)"

# Every plugin directory is a distribution of its own.
PLUGIN_DIRS=()
for dir in "$SRC"/plugins/*/; do
    dir="${dir%/}"
    [ -f "$dir/pyproject.toml" ] && PLUGIN_DIRS+=("$dir") || echo "note: $dir has no pyproject.toml, skipped"
done
[ "${#PLUGIN_DIRS[@]}" -gt 0 ] || die "no plugin directories with a pyproject.toml under plugins/"

step "building wheels: core and ${#PLUGIN_DIRS[@]} plugin(s)"
# One build environment for all wheels (pip's per-project isolated builds cost ~10 s each here).
# Virtualenvs are made without pip and driven by this interpreter's pip (--python), which skips
# the slow ensurepip step.
PIP=("$PYTHON" -m pip)
"$PYTHON" -m venv --without-pip "$WORK/build" || die "cannot create a virtualenv with $PYTHON"
"${PIP[@]}" --python "$WORK/build/bin/python" install --quiet "setuptools>=69" \
    || die "installing setuptools into the build environment failed"
mkdir -p "$WHEELS"
"${PIP[@]}" --python "$WORK/build/bin/python" wheel --quiet --no-deps --no-build-isolation \
    --wheel-dir "$WHEELS" "$SRC" "${PLUGIN_DIRS[@]}" || die "building the wheels failed (see pip's output above)"
CORE_WHEEL="$(ls "$WHEELS"/rlm_core-*.whl 2>/dev/null | head -n 1)"
[ -n "$CORE_WHEEL" ] || die "no rlm_core wheel was built"
ls -1 "$WHEELS"

# The distribution name each plugin's wheel carries (from its file name: name-version-....whl).
declare -A PLUGIN_WHEEL=()
for dir in "${PLUGIN_DIRS[@]}"; do
    name="$("$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["name"])' \
        "$dir/pyproject.toml")" || { fail "cannot read the project name of $dir/pyproject.toml"; continue; }
    normalized="$(echo "$name" | tr '.-' '__')"
    wheel="$(ls "$WHEELS"/"$normalized"-*.whl 2>/dev/null | head -n 1)"
    [ -n "$wheel" ] && PLUGIN_WHEEL["$name"]="$wheel" || fail "no wheel was built for $name ($dir)"
done

step "installing the core wheel and every plugin wheel into an empty virtualenv"
"$PYTHON" -m venv --without-pip "$ENV" || die "cannot create a virtualenv with $PYTHON"
VPY="$ENV/bin/python"
# The report records where pip took each distribution from: rlm-core must come from our wheel.
"${PIP[@]}" --python "$VPY" install --quiet --report "$WORK/install-report.json" --find-links "$WHEELS" \
    "$CORE_WHEEL" "${PLUGIN_WHEEL[@]}" || die "installing the wheels failed (see pip's output above)"

# Run from the scratch directory so the checkout's own rlm_core cannot shadow the installed one.
cd "$WORK" || die "cannot enter $WORK"

step "the installed rlm_core is ours"
"$VPY" - <<'EOF' || fail "the installed rlm_core is not ours (see above)"
import importlib.metadata as metadata
import re
import sys

import rlm_core

version = metadata.version("rlm-core")
release = tuple(int(part) for part in re.match(r"\d+(?:\.\d+)*", version).group(0).split("."))
problems = []
if release < (0, 2):
    problems.append(f"rlm-core {version} is installed, expected >= 0.2")
if not hasattr(rlm_core, "hookimpl"):
    problems.append("rlm_core.hookimpl is missing")
if not rlm_core.__file__.startswith(sys.prefix):
    problems.append(f"rlm_core was imported from {rlm_core.__file__}, outside the virtualenv {sys.prefix}")
try:
    from rlm_core.identity import foreign_core_problem
except ImportError:
    pass
else:
    problems.extend(filter(None, [foreign_core_problem()]))
print(f"rlm-core {version} at {rlm_core.__file__}")
for problem in problems:
    print("  problem:", problem)
sys.exit(1 if problems else 0)
EOF

step "each plugin appears in 'rlm plugins --json' without an error"
"$ENV/bin/rlm" plugins --json >"$WORK/plugins.json" || fail "'rlm plugins --json' exited non-zero"
"$VPY" - "$WORK/plugins.json" "${!PLUGIN_WHEEL[@]}" <<'EOF' || fail "a plugin is missing from 'rlm plugins' or failed to load"
import json
import re
import sys

def norm(name):
    return re.sub(r"[-_.]+", "-", name or "").lower()

infos = json.load(open(sys.argv[1]))
by_distribution = {}
for info in infos:
    by_distribution.setdefault(norm(info.get("distribution")), []).append(info)
bad = False
for distribution in sys.argv[2:]:
    entries = by_distribution.get(norm(distribution), [])
    if not entries:
        print(f"  {distribution}: not listed by 'rlm plugins'")
        bad = True
    for info in entries:
        registered = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in info["registered"].items())
        if info.get("error"):
            print(f"  {distribution} ({info['name']}): error: {info['error']}")
            bad = True
        elif not registered:
            print(f"  {distribution} ({info['name']}): registered nothing")
            bad = True
        else:
            print(f"  {distribution} {info['version']} ({info['name']}): {registered}")
sys.exit(1 if bad else 0)
EOF

step "each plugin wheel resolves our rlm-core, never the unrelated 0.1.0"
check_report() {  # check_report REPORT WHAT MODE
    "$VPY" - "$@" <<'EOF'
import json
import re
import sys

report_path, what, mode = sys.argv[1:4]
installs = json.load(open(report_path)).get("install", [])
core = [item for item in installs if re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower() == "rlm-core"]
if not core:
    print(f"  {what} ({mode}): rlm-core is not in the resolution at all")
    sys.exit(1)
version = core[0]["metadata"]["version"]
url = core[0].get("download_info", {}).get("url", "")
release = tuple(int(part) for part in re.match(r"\d+(?:\.\d+)*", version).group(0).split("."))
print(f"  {what} ({mode}): rlm-core {version} from {url}")
if release < (0, 2):
    print(f"  {what} ({mode}): resolved the unrelated rlm-core {version}")
    sys.exit(1)
if mode == "local wheels" and not url.startswith("file:"):
    print(f"  {what} ({mode}): rlm-core did not come from the local wheel")
    sys.exit(1)
EOF
}
check_report "$WORK/install-report.json" "all plugins" "local wheels" || fail "the install did not use our rlm-core wheel"
# Each plugin wheel alone: its declared rlm-core requirement, resolved against the index with our wheels
# hidden (the index and any configured find-links reachable). pip must refuse for want of an rlm-core
# >= 0.2, or pick one >= 0.2 once ours is published; it must never settle on the unrelated 0.1.0.
# (Resolving the requirement rather than the whole wheel skips fetching every other dependency.)
for name in "${!PLUGIN_WHEEL[@]}"; do
    requirement="$("$VPY" - "${PLUGIN_WHEEL[$name]}" <<'EOF'
import re
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as wheel:
    meta = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    lines = wheel.read(meta).decode().splitlines()
for line in lines:
    if line.startswith("Requires-Dist:"):
        spec = line.split(":", 1)[1].split(";", 1)[0].strip()
        if re.match(r"rlm[-_.]core\b", spec, re.I) and "extra ==" not in line:
            print(spec)
            break
EOF
)"
    if [ -z "$requirement" ]; then
        fail "$name: its wheel does not require rlm-core (add \"rlm-core>=0.2\" to its dependencies)"
        continue
    fi
    report="$WORK/report-$name.json"
    log="$WORK/pip-$name.log"
    if "${PIP[@]}" --python "$VPY" install --dry-run --ignore-installed --no-deps --report "$report" \
        "$requirement" >"$log" 2>&1; then
        check_report "$report" "$name: $requirement" "index only" || fail "$name: $requirement admits the unrelated rlm-core"
    elif refusal="$(grep -E -m1 'ERROR: .*rlm-core' "$log")"; then
        echo "  $name: $requirement (index only): pip refuses: $refusal"
    else
        grep -v '^WARNING: Location' "$log"
        fail "$name: resolving $requirement from the index failed for a reason other than rlm-core"
    fi
done

if [ "${#FAILURES[@]}" -gt 0 ]; then
    printf '\ncheck-wheels: %d failure(s):\n' "${#FAILURES[@]}"
    printf '  - %s\n' "${FAILURES[@]}"
    exit 1
fi
printf '\ncheck-wheels: core and %d plugin(s) build, install together, and resolve rlm-core >= 0.2\n' "${#PLUGIN_WHEEL[@]}"
