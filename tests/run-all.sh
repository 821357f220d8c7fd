#!/usr/bin/env bash
# The test suite runner that `make test` calls once the binaries and the
# sanitized unit test binaries are built.
#
# Usage: tests/run-all.sh [--unit-only | --integration-only | --k8s] [-k EXPR]
#   --unit-only         only the cmocka unit tests (build/asan/tests/test_*)
#   --integration-only  only the pytest tests (tests/integration, tests/security, tests/compat)
#   --k8s               only the cluster test modules, against a real
#                       kube-apiserver and kube-controller-manager from
#                       $KUBEBUILDER_ASSETS (SANDPIT_K8S=real; `make test-k8s`)
#   -k EXPR             passed to pytest (select integration/security tests by name)
#
# Unit tests run with CMOCKA_MESSAGE_OUTPUT=TAP; their `ok` / `not ok` lines are
# counted (a binary that crashes or exits non-zero without a `not ok` counts as
# one failure). The integration and security results come from pytest's JUnit
# XML (build/test-results.xml, build/test-results-security.xml,
# build/test-results-compat.xml; three sessions);
# errors count as failures. The last line printed is
# exactly `N passed, N failed` (`, N skipped` when any). Exits non-zero if
# anything failed or if no test ran. Needs no terminal and no stdin.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2

run_unit=1
run_integration=1
k8s=0
pytest_k=()
while [ $# -gt 0 ]; do
	case $1 in
	--unit-only) run_integration=0 ;;
	--integration-only) run_unit=0 ;;
	--k8s) run_unit=0 k8s=1 ;;
	-k) [ $# -ge 2 ] || { echo "run-all: -k needs an expression" >&2; exit 2; }
		pytest_k=(-k "$2"); shift ;;
	-k*) pytest_k=(-k "${1#-k}") ;;
	-h | --help) sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
	*) echo "run-all: unknown argument: $1" >&2; exit 2 ;;
	esac
	shift
done
if [ $run_unit -eq 0 ] && [ $run_integration -eq 0 ]; then
	echo "run-all: --unit-only and --integration-only exclude each other" >&2
	exit 2
fi

PYTHON=/usr/bin/python3
# The cluster test modules (tests/README.md): on the fixture API server in a
# plain run, on the real control plane with --k8s.
K8S_MODULES=(test_operator.py test_operator_cluster.py test_operator_e2e.py test_operator_leader.py
	test_operator_template.py test_operator_build.py test_operator_pools.py test_operator_metrics.py test_helm.py test_helm_values.py test_rbac.py test_examples.py test_agent_cluster.py
	test_gateway_auth_cluster.py test_container_images.py)
# The same for the E2B SDKs against the operator's gateway (tests/compat, a session of its own).
K8S_COMPAT_MODULES=(test_cluster.py test_mcp_cluster.py)
if [ $k8s -eq 1 ]; then
	if ! why=$("$PYTHON" -c 'import os, sys; sys.path.insert(0, "tests/fixtures")
from control_plane import assets_problem
p = assets_problem(os.environ.get("KUBEBUILDER_ASSETS"))
print(p or "")') || [ -n "$why" ]; then
		echo "run-all: ${why:-cannot check KUBEBUILDER_ASSETS}" >&2
		exit 2
	fi
	export SANDPIT_K8S=real
	export KUBEBUILDER_ASSETS
	KUBEBUILDER_ASSETS=$(cd "$KUBEBUILDER_ASSETS" && pwd)
fi
UNIT_DIR=build/asan/tests
JUNIT=build/test-results.xml
JUNIT_SECURITY=build/test-results-security.xml
JUNIT_COMPAT=build/test-results-compat.xml
LOGDIR=build/test-logs
mkdir -p "$LOGDIR"

unit_pass=0 unit_fail=0 unit_bins=0
int_pass=0 int_fail=0 int_skip=0
summary=()

# ------------------------------------------------------------------ unit tests

if [ $run_unit -eq 1 ]; then
	echo "=== unit tests ($UNIT_DIR/test_*, ASan+UBSan)"
	shopt -s nullglob
	for bin in "$UNIT_DIR"/test_*; do
		[ -f "$bin" ] && [ -x "$bin" ] || continue
		case $bin in *.d | *.o | *.log) continue ;; esac
		unit_bins=$((unit_bins + 1))
		name=$(basename "$bin")
		log="$LOGDIR/$name.log"
		CMOCKA_MESSAGE_OUTPUT=TAP timeout -k 10 600 "$bin" </dev/null >"$log" 2>&1
		rc=$?
		ok=$(grep -cE '^ok( |$)' "$log")
		notok=$(grep -cE '^not ok( |$)' "$log")
		unit_pass=$((unit_pass + ok))
		unit_fail=$((unit_fail + notok))
		if [ $rc -ne 0 ] && [ "$notok" -eq 0 ]; then
			unit_fail=$((unit_fail + 1))
			if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
				echo "  $name: TIMED OUT (exit $rc) after $ok ok"
			else
				echo "  $name: CRASHED or failed (exit $rc) after $ok ok"
			fi
			tail -n 40 "$log" | sed 's/^/    | /'
		elif [ "$notok" -gt 0 ]; then
			echo "  $name: $ok ok, $notok not ok (exit $rc)"
			grep -E '^not ok|^# ' "$log" | head -n 60 | sed 's/^/    | /'
			# sanitizer reports and assertion messages
			grep -E 'ERROR: AddressSanitizer|runtime error:|SUMMARY:' "$log" | head -n 20 | sed 's/^/    | /'
		else
			echo "  $name: $ok ok"
		fi
	done
	shopt -u nullglob
	if [ $unit_bins -eq 0 ]; then
		echo "  no unit test binaries in $UNIT_DIR (make SANITIZE=1 unit-bins builds them)"
	fi
	summary+=("unit: $unit_pass passed, $unit_fail failed ($unit_bins binaries)")
fi

# ------------------------------------------------------------------ integration tests

# run_pytest LABEL JUNIT PATH...: one pytest session over the PATHs; adds its
# counts to int_pass/int_fail/int_skip and a line to the summary.
run_pytest() {
	local label=$1 junit=$2 prc p f s counts
	shift 2
	echo "=== $label tests (pytest $*)"
	rm -f "$junit"
	PYTHONDONTWRITEBYTECODE=1 "$PYTHON" -m pytest -p no:cacheprovider -q -rs --junitxml="$junit" \
		"${pytest_k[@]}" "$@" </dev/null
	prc=$?
	p=0 f=0 s=0
	if [ -s "$junit" ]; then
		# Lists the failed test cases, then writes "passed failed skipped" to
		# $counts (errors count as failed; each test case once).
		counts="$LOGDIR/junit-counts"
		rm -f "$counts"
		"$PYTHON" - "$junit" "$counts" <<-'EOF'
			import sys
			import xml.etree.ElementTree as ET
			root = ET.parse(sys.argv[1]).getroot()
			p = f = s = 0
			for tc in root.iter("testcase"):
			    bad = [c for c in tc if c.tag in ("failure", "error")]
			    if bad:
			        f += 1
			        name = tc.get("classname", "") + "::" + tc.get("name", "")
			        msg = (bad[0].get("message") or "").strip().splitlines()
			        print(f"  {bad[0].tag.upper()} {name}: {msg[0][:160] if msg else ''}")
			    elif any(c.tag == "skipped" for c in tc):
			        s += 1
			    else:
			        p += 1
			with open(sys.argv[2], "w") as out:
			    print(p, f, s, file=out)
		EOF
		if ! read -r p f s <"$counts" 2>/dev/null; then
			p=0 f=1 s=0
			echo "run-all: could not parse $junit"
		fi
		if [ $prc -ne 0 ] && [ $prc -ne 5 ] && [ "$f" -eq 0 ]; then
			echo "run-all: pytest exited $prc with no failed test in $junit: counting one failure"
			f=1
		fi
	elif [ $prc -ne 5 ]; then
		echo "run-all: pytest exited $prc and wrote no $junit: counting one failure"
		f=1
	fi
	int_pass=$((int_pass + p)) int_fail=$((int_fail + f)) int_skip=$((int_skip + s))
	summary+=("$label: $p passed, $f failed, $s skipped (junit: $junit)")
}

if [ $k8s -eq 1 ]; then
	echo "=== on the real kube-apiserver ($KUBEBUILDER_ASSETS)"
	run_pytest cluster "$JUNIT" "${K8S_MODULES[@]/#/tests/integration/}"
	run_pytest compat-cluster "$JUNIT_COMPAT" "${K8S_COMPAT_MODULES[@]/#/tests/compat/}"
elif [ $run_integration -eq 1 ]; then
	run_pytest integration "$JUNIT" tests/integration
	# Its own session: its agents get their own cgroup parent and state.
	run_pytest security "$JUNIT_SECURITY" tests/security
	# The real E2B SDKs (npm, pinned; tests/compat/setup.sh) against the gateway.
	run_pytest compat "$JUNIT_COMPAT" tests/compat
fi

# ------------------------------------------------------------------ summary

passed=$((unit_pass + int_pass))
failed=$((unit_fail + int_fail))
skipped=$int_skip
echo "=== summary"
for line in "${summary[@]}"; do echo "  $line"; done
rc=0
if [ $failed -gt 0 ]; then
	rc=1
elif [ $((passed + failed)) -eq 0 ]; then
	echo "  no test ran"
	rc=1
fi
if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
exit $rc
