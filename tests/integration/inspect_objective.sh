#!/usr/bin/env bash
# `vdm inspect objective` as a user runs it: weightings chosen by override, values at given
# lambdas against ../shared/testvectors/objectives.md, the CSV and SVG files, and the exit
# code and message for bad input.
set -euo pipefail
VDM=$1
SRC=$2
CFG=$SRC/configs/quickstart.yaml
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# column $2 of the row whose lambda is $1 must equal $3 within $4
check() {
  local file=$1 lambda=$2 col=$3 want=$4 tol=$5
  awk -F, -v l="$lambda" -v c="$col" -v w="$want" -v t="$tol" '
    NR == 1 { for (i = 1; i <= NF; i++) idx[$i] = i; next }
    $1 + 0 == l + 0 { found = 1; d = $idx[c] - w; if (d < 0) d = -d
                      if (d > t) { printf "lambda %s: %s = %s, want %s\n", l, c, $idx[c], w; exit 1 } }
    END { if (!found) { printf "no row for lambda %s\n", l; exit 1 } }' "$file" \
    || fail "$file: $col at lambda $lambda"
}

# sigmoid weighting with bias 2 under the linear schedule: p = 1/18.3 inside [-5, 13.3]
"$VDM" inspect objective "$CFG" objective.name=weighted objective.weighting.name=sigmoid \
  objective.weighting.bias=2 schedule.name=linear --lambda=-2,0,2,5 --csv "$WORK/sig.csv" \
  --plot "$WORK/sig.svg" > "$WORK/stdout.csv" 2> "$WORK/stderr.txt"
head -1 "$WORK/stdout.csv" | grep -qx 'lambda,w,p,weight,monotone,augmentation' || fail "CSV header"
cmp -s "$WORK/stdout.csv" "$WORK/sig.csv" || fail "--csv file differs from stdout"
[ "$(wc -l < "$WORK/sig.csv")" -eq 5 ] || fail "expected 4 rows"
check "$WORK/sig.csv" -2 w 0.982014 1e-6
check "$WORK/sig.csv" 0 w 0.880797 1e-6
check "$WORK/sig.csv" 2 w 0.5 1e-9
check "$WORK/sig.csv" 5 w 0.047426 1e-6
check "$WORK/sig.csv" 0 p 0.05464480874 1e-9
check "$WORK/sig.csv" 2 weight 9.15 1e-6
grep -q ',true,' "$WORK/sig.csv" || fail "sigmoid must be monotone"
# the noise-augmentation density -w'(lambda)/w(lambda_min), w(lambda_min) = sigmoid(7)
check "$WORK/sig.csv" 2 augmentation 0.2502279705 1e-6
grep -q 'w(lambda_min) = 0.99908' "$WORK/stderr.txt" || fail "w(lambda_min) line: $(cat "$WORK/stderr.txt")"
grep -q 'ELBO' "$WORK/stderr.txt" || fail "summary line"
grep -q '<svg' "$WORK/sig.svg" && grep -q 'p(lambda)' "$WORK/sig.svg" || fail "SVG plot"

# EDM weighting, whole-map override, with EDM's own proposal
"$VDM" inspect objective "$CFG" objective.name=weighted objective.weighting=edm \
  objective.proposal=edm_lognormal --lambda=-2,0,2,5 > "$WORK/edm.csv"
check "$WORK/edm.csv" -2 w 0.946112 1e-6
check "$WORK/edm.csv" 5 w 0.094930 1e-6
# EDM's log-normal truncated to the schedule's lambda range [-5, 13.3] and renormalised
check "$WORK/edm.csv" 0 p 0.1009247111 1e-9
grep -q ',false,$' "$WORK/edm.csv" || fail "edm must be non-monotone"

# every weighting of the contract is accepted, with a default lambda grid
# (flow matching is the flow-matching loss only under the rectified-flow proposal)
for w in elbo sigmoid edm edm_monotonic iddpm v_mse min_snr p2 flow_matching; do
  proposal=schedule
  [ $w = flow_matching ] && proposal=rectified_flow
  "$VDM" inspect objective "$CFG" objective.name=weighted objective.weighting.name=$w \
    objective.proposal.name=$proposal --points 11 > "$WORK/$w.csv" 2>/dev/null || fail "weighting $w"
  [ "$(wc -l < "$WORK/$w.csv")" -eq 12 ] || fail "weighting $w: rows"
done
"$VDM" inspect objective "$CFG" objective.name=weighted objective.weighting.name=min_snr \
  --lambda 2 > "$WORK/ms.csv"
check "$WORK/ms.csv" 2 w 0.438523 1e-6

# the VLB: w = 1, weight = gamma'(t)
"$VDM" inspect objective "$CFG" objective.name=vlb schedule.name=linear --lambda=0 > "$WORK/vlb.csv"
check "$WORK/vlb.csv" 0 weight 18.3 1e-9

# bad input: exit code 2 and one message naming file, line and key
set +e
"$VDM" inspect objective "$CFG" objective.weighting.nmae=edm > /dev/null 2> "$WORK/err1.txt"
code=$?
set -e
[ $code -eq 2 ] || fail "unknown key: exit $code"
grep -q "objective.weighting.nmae" "$WORK/err1.txt" && grep -q "name" "$WORK/err1.txt" \
  || fail "unknown key message: $(cat "$WORK/err1.txt")"
printf 'name: bad\nobjective:\n  name: vlb\n  timesteps: many\n' > "$WORK/bad.yaml"
set +e
"$VDM" inspect objective "$WORK/bad.yaml" > /dev/null 2> "$WORK/err2.txt"
code=$?
set -e
[ $code -eq 2 ] || fail "wrong type: exit $code"
grep -q "bad.yaml:4" "$WORK/err2.txt" && grep -q "objective.timesteps" "$WORK/err2.txt" \
  || fail "wrong type message: $(cat "$WORK/err2.txt")"
set +e
"$VDM" inspect objective "$WORK/missing.yaml" > /dev/null 2> "$WORK/err3.txt"
code=$?
"$VDM" inspect objective "$CFG" --lambda=abc > /dev/null 2> "$WORK/err4.txt"
code4=$?
set -e
[ $code -eq 2 ] && grep -q "missing.yaml" "$WORK/err3.txt" || fail "missing file"
[ $code4 -eq 2 ] && grep -q "abc" "$WORK/err4.txt" || fail "bad --lambda"
grep -q "Traceback\|terminate called" "$WORK"/err*.txt && fail "stack dump on bad input"
echo "inspect_objective: all checks passed"
