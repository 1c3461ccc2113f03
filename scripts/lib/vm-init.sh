#!/bin/busybox sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# PID 1 of the xmem test VM: scripts/vm-run packs this file as /init of a busybox initramfs.
#
# It mounts the host's / (9p tag "hostroot", read-only) on /root and the per-run control
# directory (9p tag "xmemctl", read-write) on /ctl, prepares the usual kernel filesystems
# inside /root, mounts the extra shares listed in /ctl/mounts, then runs /ctl/cmd.sh with bash
# chrooted into /root. The command's stdout and stderr go to the virtio-serial ports named
# xmem.stdout and xmem.stderr; its exit status, the guest's uptimes and dmesg go back in
# /ctl/status, /ctl/times and /ctl/dmesg. Then the guest powers off (reboot -f, and QEMU runs
# with -no-reboot). Any failure here leaves /ctl/status absent, which the host reports.
export PATH=/bin

# fail MESSAGE: report on the console and end the VM without a status.
fail() {
	echo "vm-init: $*" >/dev/console
	[ -d /ctl ] && echo "$*" >/ctl/init-error
	reboot -f
	sleep 10
}

mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys || fail "mount /sys"
mount -t devtmpfs devtmpfs /dev || fail "mount /dev"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 xmemctl /ctl || fail "mount control share"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro,cache=loose hostroot /root ||
	fail "mount host root"
hostname xmem-vm

r=/root
mount -t proc proc $r/proc || fail "mount proc in the chroot"
mount -t sysfs sysfs $r/sys || fail "mount sysfs in the chroot"
mount -t devtmpfs devtmpfs $r/dev || fail "mount devtmpfs in the chroot"
mount -t debugfs debugfs $r/sys/kernel/debug || fail "mount debugfs"
if [ -d $r/sys/kernel/tracing ]; then
	mount -t tracefs tracefs $r/sys/kernel/tracing || fail "mount tracefs"
fi
if [ -d $r/sys/fs/cgroup ] && grep -q cgroup2 /proc/filesystems; then
	mount -t cgroup2 cgroup2 $r/sys/fs/cgroup || fail "mount cgroup2"
fi
mkdir -p $r/dev/pts $r/dev/shm
# What udev would add: bash's process substitution needs /dev/fd.
ln -sf /proc/self/fd $r/dev/fd
ln -sf /proc/self/fd/0 $r/dev/stdin
ln -sf /proc/self/fd/1 $r/dev/stdout
ln -sf /proc/self/fd/2 $r/dev/stderr
if grep -q devpts /proc/filesystems; then
	mount -t devpts -o newinstance,ptmxmode=0666 devpts $r/dev/pts || fail "mount devpts"
fi
for d in /tmp /run /dev/shm; do
	mount -t tmpfs -o mode=1777 tmpfs $r$d || fail "mount tmpfs on $d"
done

# Extra shares, parents before children: "TAG ro|rw PATH" per line.
while read -r tag mode path; do
	[ -n "$tag" ] || continue
	opts=trans=virtio,version=9p2000.L,msize=262144,cache=mmap
	[ "$mode" = ro ] && opts=$opts,ro
	mkdir -p "$r$path" 2>/dev/null
	mount -t 9p -o "$opts" "$tag" "$r$path" || fail "mount share $tag on $path"
done </ctl/mounts

# The command's output ports. Its stdout and stderr are pipes (FIFOs here), copied to the
# ports by cat: a virtio port can be opened once only, and programs reopen /dev/stdout.
out_port='' err_port=''
for p in /sys/class/virtio-ports/*; do
	case $(cat "$p/name" 2>/dev/null) in
	xmem.stdout) out_port=/dev/${p##*/} ;;
	xmem.stderr) err_port=/dev/${p##*/} ;;
	esac
done
if [ -z "$out_port" ] || [ -z "$err_port" ]; then
	fail "virtio-serial ports xmem.stdout/xmem.stderr not found"
fi
mkfifo /out.fifo /err.fifo || fail "mkfifo"
cat /out.fifo >"$out_port" &
out_pid=$!
cat /err.fifo >"$err_port" &
err_pid=$!

mkdir -p $r/run/xmem
cp /ctl/cmd.sh $r/run/xmem/cmd.sh || fail "copy the command"
read -r t_start _ </proc/uptime
chroot $r /usr/bin/env -i /bin/bash /run/xmem/cmd.sh </dev/null >/out.fifo 2>/err.fifo
status=$?
read -r t_end _ </proc/uptime

# Let the copies drain (a blocking write to a virtio port returns once the host took the
# data); a leftover background process holding the pipes must not hang the VM.
i=0
while [ $i -lt 50 ] && { kill -0 $out_pid || kill -0 $err_pid; } 2>/dev/null; do
	sleep 0.1
	i=$((i + 1))
done
kill $out_pid $err_pid 2>/dev/null

dmesg >/ctl/dmesg
echo "$t_start $t_end" >/ctl/times
echo $status >/ctl/status.tmp && mv /ctl/status.tmp /ctl/status
sync
reboot -f
sleep 10
