#!/usr/bin/env bash
# Where an embedded send spends its time: the bench's embedded run under py-spy.
#   bash bench/profile_send.sh [RECIPIENTS] [OUT]
# OUT (default profile-send.txt) holds collapsed stacks ("frame;frame;frame count"); feed it
# to flamegraph.pl or speedscope, or read the summary this script prints: the functions that
# are on the stack in the most samples (inclusive), and where samples end (exclusive).
# GIL=1: sample only the thread holding the interpreter lock (CPU, not waiting).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-50000}"
out="${2:-profile-send.txt}"
PATH="$PWD/.venv/bin:$PATH"
command -v py-spy >/dev/null || { echo "pip install py-spy" >&2; exit 1; }
BENCH_PROFILE_GIL="${GIL:-}" BENCH_PROFILE="$out" .venv/bin/python bench/send_throughput.py --recipients "$n" --skip-celery --naive-sample 500
.venv/bin/python - "$out" <<'PY'
import collections, sys
inclusive, exclusive, total = collections.Counter(), collections.Counter(), 0
for line in open(sys.argv[1]):
    stack, _, count = line.rstrip("\n").rpartition(" ")
    frames = [f.split(" (")[0] for f in stack.split(";")]
    n = int(count)
    total += n
    exclusive[frames[-1]] += n
    for frame in set(frames):
        inclusive[frame] += n
print(f"{total} samples")
for title, counter in (("inclusive", inclusive), ("exclusive", exclusive)):
    print(f"-- {title}")
    for name, n in counter.most_common(25):
        print(f"{100 * n / total:5.1f}%  {name}")
PY
