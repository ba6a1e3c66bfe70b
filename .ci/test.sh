#!/usr/bin/env bash
# Installs what the tests need and runs the whole test suite. This is the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v prometheus-node-exporter >/dev/null 2>&1 || need_apt+=(prometheus-node-exporter)
if ((${#need_apt[@]})); then
  echo "installing: ${need_apt[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
for tool in prometheus promtool prometheus-node-exporter; do
  command -v "$tool" >/dev/null || { echo "$tool is required and could not be installed" >&2; exit 1; }
done

# moto's S3 server for the object-storage tests (tests/long_term_s3.rs, long_term_queries.rs).
if ! command -v moto_server >/dev/null 2>&1; then
  echo "installing: moto[server] (PyPI)"
  python3 -m pip install --quiet 'moto[server]' || pip install --quiet 'moto[server]' || true
  hash -r
fi
command -v moto_server >/dev/null || { echo "moto_server is required and could not be installed (pip install 'moto[server]')" >&2; exit 1; }

if [[ ! -d ../shared/prometheus ]]; then
  echo "../shared/prometheus (Prometheus's test data) must be beside the repository" >&2
  exit 1
fi

# One build for everything; tests run in parallel across the 2 cores.
if command -v cargo-nextest >/dev/null 2>&1 || cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
