# Sourced by the in-L1 halves of the benchmarks (busybox sh): Firecracker
# takes its VM from a JSON file (firecracker --no-api --config-file FILE).
# Do not run it.

# fc_config FILE KERNEL INITRD BOOT_ARGS [DISK TAP MAC]: writes a config
# with 2 vCPUs and 512 MiB, as the benchmarks give every VMM; with DISK,
# TAP and MAC also a writable virtio-blk drive and a virtio-net device
# on TAP. Firecracker boots only an ELF vmlinux on x86.
fc_config() {
  local file=$1 kernel=$2 initrd=$3 args=$4 disk=${5:-} tap=${6:-} mac=${7:-} drives= nets=
  [ -n "$disk" ] && drives="{\"drive_id\": \"vda\", \"path_on_host\": \"$disk\", \"is_root_device\": false, \"is_read_only\": false}"
  [ -n "$tap" ] && nets="{\"iface_id\": \"eth0\", \"host_dev_name\": \"$tap\", \"guest_mac\": \"$mac\"}"
  cat >"$file" <<EOF
{
  "boot-source": {"kernel_image_path": "$kernel", "initrd_path": "$initrd", "boot_args": "$args"},
  "drives": [$drives],
  "network-interfaces": [$nets],
  "machine-config": {"vcpu_count": 2, "mem_size_mib": 512}
}
EOF
}
