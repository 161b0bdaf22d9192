#!/bin/sh
# Removes from the image's venv what the server never loads, so that the image stays small:
# pip and setuptools, test suites, type stubs, C headers, numpy's build tools, and onnxruntime's
# offline tool packages and its C library (the Python module links its own copy statically).
# Usage: trim-venv.sh VENV
set -eu
VENV="$1"
"$VENV/bin/python" -m pip uninstall --quiet --yes pip setuptools >/dev/null 2>&1 || true
SITE=$(echo "$VENV"/lib/python3*/site-packages)
ORT="$SITE/onnxruntime"
rm -rf "$ORT/transformers" "$ORT/quantization" "$ORT/tools" "$ORT/datasets" "$ORT/backend" \
  "$ORT"/capi/libonnxruntime.so* "$ORT/ThirdPartyNotices.txt"
rm -rf "$SITE/numpy/f2py" "$SITE/numpy/distutils" "$SITE/numpy/_pyinstaller" \
  "$SITE/numpy/_core/include" "$SITE/numpy/random/_examples" "$SITE/numpy/doc"
find "$SITE" -depth -type d -name tests -exec rm -rf {} +
find "$SITE" \( -name '*.pyi' -o -name '*.pxd' -o -name '*.h' -o -name 'py.typed' \) -delete
rm -rf "$VENV"/bin/pip* "$VENV"/bin/f2py "$VENV"/bin/numpy-config "$VENV"/bin/onnxruntime_test \
  "$VENV"/bin/Activate.ps1 "$VENV"/bin/activate*
