#!/usr/bin/env bash
# Regenerate the committed results: the default suite on the pinned stack (constraints.txt).
#
#   results/baseline.json  the baseline that CI checks (.ci/run: gradparity check)
#   results/default/       the result folder of the same run, as 'gradparity run' writes it,
#                          with kernels/<name>/: the same suite under this CPU's other kernel
#                          configurations (--kernels auto), whose worst errors the baseline
#                          keeps (gradparity.ci.kernels)
#
# Two or three runs of the default suite (a few minutes on two cores). Running it again on
# the same stack and machine reproduces every file byte for byte; 'git diff --stat
# results/' then shows nothing. Needs gradparity installed with torch and jax:
#   pip install -c constraints.txt -e '.[all]'
set -euo pipefail
cd "$(dirname "$0")/.."
gradparity baseline save default --out results/baseline.json --force \
  --results results/default -q
