#!/bin/bash
# tests/vm/run.sh - the VFIO test: boot a QEMU guest with an emulated Intel IOMMU,
# four virtio-net NICs and four Intel 82576 (igb) on four isolated QEMU hubs (no host
# network), drive them from user space with xfwd's `vfio:` port, print PASS/FAIL per check.
#
#   sudo tests/vm/run.sh          (root: apt-get; first run downloads ~80 MB and
#                                  builds static binaries; then ~1-3 min under TCG)
#
# Steps: tests/vm/fetch.sh (QEMU, Debian guest kernel package, busybox-static) ->
# static xfwd, xfwd-host and the pmd guest test binary -> initramfs with the vfio
# modules and tests/vm/guest-init.sh as /init -> QEMU (TCG) bounded by `timeout`.
#
# env: VM_TIMEOUT (s, default 900), VM_CACHE, KPKG (pin the guest kernel package),
#      XFWD_BIN / XFWD_HOST_BIN / VFIO_VM_BIN (use prebuilt static binaries),
#      TESTPMD=1 (also Debian's dpdk-testpmd in the guest as a peer: five more checks),
#      BENCH=1 (also the igb side-by-side, xfwd vs testpmd: BENCH lines, not checks;
#      BENCH=only: after devbind, the side-by-side alone),
#      VM_ONLY=igb-link (after the peer: only the igb filter and link-loss checks; iterating),
#      GUEST_APPEND=xfwd.peer_only (stop after the peer), GUEST_APPEND=xfwd.only=afxdp (only the
#      AF_XDP zero-copy checks; the summary then says FAIL for the missing ones), QEMU_EXTRA, NIC_EXTRA.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TD=${CARGO_TARGET_DIR:-$ROOT/target}
C=${VM_CACHE:-$TD/vm}
TMO=${VM_TIMEOUT:-900}
export VM_CACHE=$C
log() { echo "HOST: $*"; }

"$HERE/fetch.sh" || { echo "VM RESULT: FAIL (fetch)"; exit 1; }
# shellcheck disable=SC1091
. "$C/env"

# Static binaries for the guest (its initramfs has no libc).
TRIPLE=x86_64-unknown-linux-gnu
ST=${VM_TARGET_DIR:-$TD/vm-static}
if [ -z "${XFWD_BIN:-}" ] || [ -z "${XFWD_HOST_BIN:-}" ] || [ -z "${VFIO_VM_BIN:-}" ]; then
	command -v cargo >/dev/null || { echo "VM RESULT: FAIL (cargo missing)"; exit 1; }
	log "building static xfwd, xfwd-host and the pmd guest test (release, $TRIPLE)"
	export RUSTFLAGS="-C target-feature=+crt-static"
	(cd "$ROOT" && CARGO_TARGET_DIR=$ST cargo build -q --release -p xfwd -p xfwd-hostprep --target $TRIPLE) ||
		{ echo "VM RESULT: FAIL (build)"; exit 1; }
	VT=$(cd "$ROOT" && CARGO_TARGET_DIR=$ST cargo test -q --release -p xfwd-pmd --test vfio_vm --no-run \
		--target $TRIPLE --message-format=json 2>/dev/null | grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4)
	[ -x "$VT" ] || { echo "VM RESULT: FAIL (build of the pmd guest test)"; exit 1; }
	XFWD_BIN=${XFWD_BIN:-$ST/$TRIPLE/release/xfwd}
	XFWD_HOST_BIN=${XFWD_HOST_BIN:-$ST/$TRIPLE/release/xfwd-host}
	VFIO_VM_BIN=${VFIO_VM_BIN:-$VT}
fi
for b in "$XFWD_BIN" "$XFWD_HOST_BIN" "$VFIO_VM_BIN"; do
	ldd "$b" 2>&1 | grep -qE 'not a dynamic|statically linked' || { echo "VM RESULT: FAIL ($b is not static)"; exit 1; }
done

# Initramfs.
R=$C/initramfs
rm -rf "$R" && mkdir -p "$R"/{bin,dev,proc,sys,modules,tmp}
cp "$C/busybox" "$R/bin/busybox"
cp "$C"/kernel/modules/*.ko "$R/modules/"
cp "$XFWD_BIN" "$R/xfwd"
cp "$XFWD_HOST_BIN" "$R/xfwd-host"
cp "$VFIO_VM_BIN" "$R/vfio_vm"
cp "$HERE/guest-init.sh" "$R/init"
cp "$HERE"/checks-*.sh "$R/"
chmod +x "$R/init"
if [ "${TESTPMD:-0}" = 1 ] || [ -n "${BENCH:-}" ]; then "$HERE/testpmd.sh" "$R" || log "testpmd peer not added"; fi
(cd "$R" && find . | sort | "$C/busybox" cpio -o -H newc 2>/dev/null) > "$C/initrd.cpio"
log "guest kernel $KVER ($KDEB); initramfs $(du -h "$C/initrd.cpio" | cut -f1)"

# QEMU: q35 + VT-d (created before the devices it translates); virtio-net modern
# only, ACCESS_PLATFORM so the DMA goes through the vIOMMU; romfile= drops iPXE.
nic() { echo "-netdev hubport,id=n$1,hubid=$2 -device virtio-net-pci,id=d$1,netdev=n$1,addr=$1,disable-legacy=on,iommu_platform=on,romfile=,mac=52:54:00:12:00:0$1${NIC_EXTRA:-}"; }
# Intel 82576 (QEMU 10's igb): every DMA of an emulated PCI device goes through the vIOMMU.
# Its SR-IOV functions take devfn PF+0x80.. (two slots): the PFs sit two slots apart.
# virtio-net left on the guest kernel's virtio_net driver (AF_XDP zero-copy checks).
knic() { echo "-netdev hubport,id=n$1,hubid=$2 -device virtio-net-pci,netdev=n$1,addr=$1,disable-legacy=on,iommu_platform=on,romfile=,mac=52:54:00:12:00:$1"; }
igb() { echo "-netdev hubport,id=n$1,hubid=$2 -device igb,id=d$1,netdev=n$1,addr=$1,romfile=,mac=52:54:00:12:00:$1"; }
LOG=$C/guest.log
case ${BENCH:-} in only) BA=xfwd.bench_only ;; "") BA= ;; *) BA=xfwd.bench ;; esac
# shellcheck disable=SC2086,SC2046
set -- $QEMU -nographic -vga none -no-reboot -m 2048 -smp 2 -accel tcg -cpu max \
	-machine q35,kernel-irqchip=split -device intel-iommu,intremap=on,caching-mode=on \
	$(nic 3 0) $(nic 4 0) $(nic 5 1) $(nic 6 1) $(igb 07 2) $(igb 09 2) $(igb 0b 3) $(igb 0d 3) \
	$(knic 0e 4) $(knic 0f 4) $(knic 10 5) $(knic 11 5) \
	-kernel "$C/kernel/vmlinux" -initrd "$C/initrd.cpio" \
	-append "console=ttyS0 panic=-1 edd=off loglevel=4 intel_iommu=on no_timer_check ${VM_ONLY:+xfwd.only=$VM_ONLY} $BA ${GUEST_APPEND:-}" \
	-qmp "unix:$C/qmp.sock,server=on,wait=off" ${QEMU_EXTRA:-}
log "booting (timeout ${TMO}s): $*"
t0=$(date +%s)
# The link checks (checks-link.sh) ask for `set_link` on the console; qmp-link.py sends it.
rm -f "$C/qmp.sock" "$LOG"
python3 "$HERE/qmp-link.py" "$LOG" "$C/qmp.sock" "$((TMO + 20))" &
qpid=$!
# (line-buffered: the helper must see a guest's request when it is printed)
timeout --foreground -k 10 "$TMO" "$@" </dev/null 2>&1 | stdbuf -oL tr -d '\r' | tee "$LOG"
rc=${PIPESTATUS[0]}
kill "$qpid" 2>/dev/null; wait "$qpid" 2>/dev/null
log "qemu rc=$rc after $(($(date +%s) - t0))s; log: $LOG"

# Summary.
echo "=================== VFIO guest checks ==================="
grep -E '^CHECK ' "$LOG" | sed 's/^CHECK //'
want=$((34 + 5)) # + 5: checks-afxdp-zc.sh
want=$((want + 11)) # checks-igb.sh 6, checks-link.sh 5
if [ "${TESTPMD:-0}" = 1 ]; then
	echo "------- dpdk-testpmd as a peer on the same NICs (counts only: TCG timings mean nothing) -------"
	grep -E '^PEER ' "$LOG" | sed 's/^PEER //'
	# The peer's lines count as checks: three on virtio-net, two on igb.
	sed -i 's/^PEER /CHECK peer_/' "$LOG"
	want=$((want + 5))
fi
grep -E '^BENCH ' "$LOG" | sed 's/^BENCH /bench (emulated 82576 under TCG: per-packet cost, not line rate): /'
pass=$(grep -cE '^CHECK [^:]+: PASS' "$LOG")
fail=$(grep -cE '^CHECK [^:]+: FAIL' "$LOG")
done_seen=$(grep -c 'GUEST: done' "$LOG")
echo "passed $pass, failed $fail (expected at least $want checks), guest finished: $done_seen"
if [ "$fail" = 0 ] && [ "$pass" -ge $want ] && [ "$done_seen" -ge 1 ] && [ "$rc" = 0 ]; then
	echo "VM RESULT: PASS"
	exit 0
fi
echo "VM RESULT: FAIL"
exit 1
