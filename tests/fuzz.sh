#!/usr/bin/env bash
# Runs every Fuzz target of every package for FUZZTIME each (make fuzz).
#
# Go's fuzz coordinator sometimes ends a run with "context deadline
# exceeded" when -fuzztime expires while a worker is still minimizing a new
# interesting input (not a failure of the code under test: nothing is
# written to testdata/fuzz). Such a run is repeated once; a real failure
# always names the input it wrote ("Failing input written to") and fails.
set -uo pipefail
FUZZTIME=${FUZZTIME:-8s}
TAGS=${GO_TAGS:+-tags $GO_TAGS}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

run() { # pkg fuzzfunc
	go test $TAGS -run '^$' -fuzz "^$2\$" -fuzztime "$FUZZTIME" -parallel 2 "$1" >"$log" 2>&1
}

engine_flake() {
	grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written to' "$log"
}

for pkg in $(go list ./... | grep -v '/tests$'); do
	list=$(go test $TAGS -list '^Fuzz' "$pkg") || { echo "$list"; exit 1; }
	for f in $(echo "$list" | grep '^Fuzz'); do
		echo "fuzz $pkg $f ($FUZZTIME)"
		if run "$pkg" "$f"; then continue; fi
		if engine_flake; then
			echo "fuzz $pkg $f: the fuzz engine timed out minimizing (no failing input); once more"
			run "$pkg" "$f" && continue
		fi
		cat "$log"
		exit 1
	done
done
