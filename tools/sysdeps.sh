#!/usr/bin/env bash
# Install the Debian packages qetool needs, only those missing: Python venv support, the host C
# compiler (host bit-exact tests; g++ checks the headers from C++), the Arm toolchain and QEMU
# (firmware and emulator). Then, best effort, Chromium for the test that looks at report.html
# as a person would (that test says why it skips where Chromium could not be installed).
set -euo pipefail
need=()
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv python3-pip)
command -v gcc >/dev/null || need+=(gcc)
command -v g++ >/dev/null || need+=(g++)
command -v make >/dev/null || need+=(make)
command -v arm-none-eabi-gcc >/dev/null || need+=(gcc-arm-none-eabi)
[ -e /usr/lib/arm-none-eabi/newlib/libc.a ] || [ -e /usr/lib/arm-none-eabi/lib/libc.a ] || need+=(libnewlib-arm-none-eabi)
command -v qemu-system-arm >/dev/null || need+=(qemu-system-arm)
optional=()
command -v chromium >/dev/null || optional+=(chromium)
[ ${#need[@]} -eq 0 ] && [ ${#optional[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
if [ ${#need[@]} -gt 0 ]; then
    echo "installing Debian packages: ${need[*]}"
    $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ${#optional[@]} -gt 0 ]; then
    echo "installing Debian packages: ${optional[*]}"
    $sudo apt-get install -y -qq --no-install-recommends "${optional[@]}" >/dev/null \
        || echo "warning: could not install ${optional[*]}: the report's browser test will skip"
fi
