#!/bin/sh
# Inside the rig's L1: boot the default busybox image with gureum, console
# on L1's console (scripts/quickstart uses this on hosts without vmx/svm).
# $1: the kernel command line (default: the image manifest's).
exec gureum boot --kernel "$RIG_GUEST_KERNEL" --initrd "$RIG_GUEST_INITRD" \
  --vcpus 2 --memory 512 --cmdline "${1:-$RIG_GUEST_CMDLINE}"
