#!/usr/bin/env bash
# Builds bench/.venv-perf: Triton's perf_analyzer (a C++ load generator shipped in the
# tritonclient 2.41.0 wheel), py-spy and the FastAPI baseline's packages, kept apart from the
# server's own dependencies.
# perf_analyzer links libb64 (Debian's libb64-0d) and libcudart.so.12 (the PyPI wheel
# nvidia-cuda-runtime-cu12); gRPC load needs no GPU. Safe to run again.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-perf"
python="${PYTHON:-python3}"

if ! ldconfig -p | grep -q 'libb64\.so\.0d'; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y -q libb64-0d >/dev/null
    elif command -v sudo >/dev/null; then
        sudo apt-get install -y -q libb64-0d >/dev/null
    else
        echo "bench/setup.sh: install libb64-0d (apt-get install libb64-0d) and re-run" >&2
        exit 1
    fi
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q \
    "tritonclient==2.41.0" \
    "nvidia-cuda-runtime-cu12==12.3.101" \
    "py-spy==0.4.1"
# The FastAPI + onnxruntime baseline of bench/http_bench.py (bench/fastapi_baseline.py) runs here too,
# apart from the server's environment, as such an app is commonly deployed.
"$venv/bin/python" -m pip install -q \
    "fastapi==0.165.0" \
    "uvicorn[standard]==0.55.0" \
    "onnxruntime==1.32.0"

# A wrapper that puts libcudart on the library path, so callers just run bench/.venv-perf/bin/pa.
cudart="$("$venv/bin/python" -c 'import nvidia.cuda_runtime, os; print(os.path.join(nvidia.cuda_runtime.__path__[0], "lib"))')"
cat >"$venv/bin/pa" <<EOF
#!/bin/sh
LD_LIBRARY_PATH="$cudart\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$venv/bin/perf_analyzer" "\$@"
EOF
chmod +x "$venv/bin/pa"

"$venv/bin/pa" --version >/dev/null 2>&1 || {
    echo "bench/setup.sh: perf_analyzer does not start; bench/run.py will use its grpc.aio fallback" >&2
    exit 1
}
echo "perf_analyzer ready: $venv/bin/pa"
