#!/usr/bin/env bash
# The README's second command: installs what is needed, builds moat (Release, warnings as
# errors) and runs the whole test suite with ctest; then does the same in the sanitizer
# build (ASan + UBSan). Set MOAT_SKIP_SANITIZE=1 to skip the second pass.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh

jobs=$(nproc)
run_suite() {
  local type=$1 dir=$2
  shift 2
  echo "== moat: $type build in $dir"
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="$type" -DMOAT_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  echo "== moat: $type tests"
  (cd "$dir" && ctest --output-on-failure -j "$jobs" --timeout 600)
}

run_suite Release build/release
if [ "${MOAT_SKIP_SANITIZE:-0}" != 1 ]; then
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  run_suite Sanitize build/sanitize -DMOAT_MICRO_BENCHMARKS=OFF
fi
