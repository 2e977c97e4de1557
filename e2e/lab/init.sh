#!/bin/busybox sh
# /init of the nested KVM lab's outer VM (e2e/lab). It loads KVM, starts a
# heartbeat on the console (ttyS0), runs the job on the results channel
# (ttyS1) and powers off. Everything it says to the host starts with "@@".
/bin/busybox mkdir -p /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
# busybox's xz only decompresses: tests that need one that compresses skip.
rm -f /usr/bin/xz
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TMPDIR=/tmp
mkdir -p /tmp /root /lab/work
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t debugfs debugfs /sys/kernel/debug

# The results channel stays open (fd 3) so that its raw mode (no \r added,
# no echo) holds for the whole run.
exec 3<>/dev/ttyS1
stty raw -echo <&3
say() { echo "@@lab $*" >&3; }

# Modules in the order the host wrote (dependencies first), each with the
# parameters the job gives it ("NAME.ko PARAM=V ..." lines).
for m in $(cat /lab/modules/order); do
	params=$(sed -n "s/^$m //p" /lab/job/modparams 2>/dev/null)
	insmod "/lab/modules/$m" $params || say "insmod $m $params failed"
done
[ -c /dev/kvm ] || say "no /dev/kvm after loading the modules"

# The heartbeat: one line a second while the outer VM takes timer
# interrupts, with KVM's counters (all VMs) to show our guest's progress.
(
	n=0
	while :; do
		n=$((n + 1))
		line="@@hb $n up=$(cut -d' ' -f1 /proc/uptime)"
		for c in exits irq_injections io_exits halt_exits; do
			[ -r "/sys/kernel/debug/kvm/$c" ] && line="$line $c=$(cat /sys/kernel/debug/kvm/$c)"
		done
		echo "$line" >/dev/ttyS0
		sleep 1
	done
) &

say "ready $(cut -d' ' -f1 /proc/uptime)"
cd /lab/work
sh /lab/job/run >&3 2>&3
say "done"
sync
poweroff -f
