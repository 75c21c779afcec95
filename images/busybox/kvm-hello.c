/*
 * kvm-hello: runs a guest of its own on this machine's /dev/kvm, as
 * proof that it can run VMs (an instance with nested virtualization).
 * The guest is five bytes of real-mode code: it writes 42 to I/O port
 * 0x10 and halts. Prints "kvm-hello: guest said 42" and exits 0, or says
 * which step failed and exits 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define GUEST_BASE 0x1000
#define GUEST_PORT 0x10

static void fail(const char *what)
{
	fprintf(stderr, "kvm-hello: %s: %s\n", what, strerror(errno));
	exit(1);
}

int main(void)
{
	static const unsigned char code[] = {
		0xb0, 42,         /* mov al, 42 */
		0xe6, GUEST_PORT, /* out GUEST_PORT, al */
		0xf4,             /* hlt */
	};
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		fail("open /dev/kvm");
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		fail("KVM_CREATE_VM");
	unsigned char *memory = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE,
				     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (memory == MAP_FAILED)
		fail("mmap guest memory");
	memcpy(memory, code, sizeof(code));
	struct kvm_userspace_memory_region region = {
		.slot = 0,
		.guest_phys_addr = GUEST_BASE,
		.memory_size = 0x1000,
		.userspace_addr = (unsigned long)memory,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		fail("KVM_SET_USER_MEMORY_REGION");
	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		fail("KVM_CREATE_VCPU");
	int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < (int)sizeof(struct kvm_run))
		fail("KVM_GET_VCPU_MMAP_SIZE");
	struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE,
				   MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		fail("mmap kvm_run");
	/* Real mode, code segment at 0, starting at the guest's code. */
	struct kvm_sregs sregs;
	if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
		fail("KVM_GET_SREGS");
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
		fail("KVM_SET_SREGS");
	struct kvm_regs regs = { .rip = GUEST_BASE, .rflags = 0x2 };
	if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
		fail("KVM_SET_REGS");
	int said = -1;
	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0)
			fail("KVM_RUN");
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == GUEST_PORT)
				said = *((unsigned char *)run + run->io.data_offset);
			break;
		case KVM_EXIT_HLT:
			printf("kvm-hello: guest said %d\n", said);
			return said == 42 ? 0 : 1;
		default:
			fprintf(stderr, "kvm-hello: unexpected exit reason %u\n", run->exit_reason);
			return 1;
		}
	}
}
