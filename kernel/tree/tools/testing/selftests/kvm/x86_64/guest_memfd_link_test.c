// SPDX-License-Identifier: GPL-2.0
/*
 * KVM_LINK_GUEST_MEMFD: a VM takes a guest_memfd of another VM of its type
 * and gets a new guest_memfd file of its own on the same inode. It is a
 * move: the source VM dies and the source file is retired.
 *
 * Checks that the new file shares the inode and size, is close-on-exec,
 * binds in the new VM (where the original is refused), outlives the
 * original file and its VM, and that every bad argument gets its errno:
 * another VM's guest_memfd claimed as this one's, a file that is not a
 * guest_memfd, a vm_fd that is not a VM, unknown flags or reserved bits,
 * closed fds, a VM of another type. KVM_CAP_GUEST_MEMFD_LINK must say which
 * VMs can link.
 *
 * The move: after the link, the source VM's ioctls fail with EIO, and a
 * vCPU of it that runs during the link is kicked out of KVM_RUN with EIO;
 * fallocate() (allocation and PUNCH_HOLE) and a second link through the
 * source file fail with EIO; the dead VM's other guest_memfd files can still
 * be linked. A VM cannot get a second file on one inode: a link to itself
 * fails with EEXIST, and the round trip A -> C -> A fails earlier, with EIO,
 * since A is dead after its first link. Two links of one file racing from
 * two VMs: exactly one succeeds.
 *
 * That the guest's data survives the link is shown by examples/vmm in the
 * xmem tree (a guest resumed in a successor's VM finds its secret).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/falloc.h>
#include <linux/kvm.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"

#define SIZE		(2UL << 20)
#define SLOT		10
#define GPA		0xc0000000ULL

static int link_gmem(struct kvm_vm *vm, int fd, int vm_fd, uint64_t flags,
		     uint64_t reserved0)
{
	struct kvm_link_guest_memfd l = {
		.fd = fd,
		.vm_fd = vm_fd,
		.flags = flags,
	};

	l.reserved[0] = reserved0;
	return __vm_ioctl(vm, KVM_LINK_GUEST_MEMFD, &l);
}

/*
 * Failed checks are counted, not fatal, so that a kernel without a check
 * shows every case it fails; main() fails at the end if any did.
 */
static int failures;

#define CHECK(cond, fmt, ...)						\
do {									\
	if (!(cond)) {							\
		pr_info("FAIL: " fmt "\n", ##__VA_ARGS__);		\
		failures++;						\
	}								\
} while (0)

static void expect_errno(int r, int err, const char *what)
{
	int e = errno;

	if (r == -1 && e == err) {
		pr_info("%s: %s\n", what, strerror(err));
		return;
	}
	CHECK(0, "%s: expected %s, got %d (errno %d: %s)", what, strerror(err), r,
	      r == -1 ? e : 0, r == -1 ? strerror(e) : "no error");
}

static int bind_gmem(struct kvm_vm *vm, int gmem)
{
	static void *alias;

	if (!alias) {
		alias = mmap(NULL, SIZE, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		TEST_ASSERT(alias != MAP_FAILED, "mmap alias");
	}
	return __vm_set_user_memory_region2(vm, SLOT, KVM_MEM_GUEST_MEMFD, GPA,
					    SIZE, alias, gmem, 0);
}

/* Whether @vm's ioctls work: KVM_CHECK_EXTENSION, -1 with errno if not. */
static int vm_alive(struct kvm_vm *vm)
{
	return __vm_ioctl(vm, KVM_CHECK_EXTENSION, (void *)KVM_CAP_USER_MEMORY);
}

static void guest_loop(void)
{
	for (;;)
		GUEST_SYNC(0);
}

static unsigned long vcpu_runs;
static int vcpu_errno, vcpu_done;

/* Runs the vCPU until KVM_RUN fails; counts the guest's exits. */
static void *vcpu_thread(void *arg)
{
	struct kvm_vcpu *vcpu = arg;

	for (;;) {
		int r = __vcpu_run(vcpu);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			__atomic_store_n(&vcpu_errno, errno, __ATOMIC_SEQ_CST);
			break;
		}
		/* Not get_ucall(): its KVM_GET_REGS would fail once the VM is dead. */
		TEST_ASSERT(vcpu->run->exit_reason == KVM_EXIT_IO,
			    "source vCPU: exit reason %u", vcpu->run->exit_reason);
		__atomic_add_fetch(&vcpu_runs, 1, __ATOMIC_SEQ_CST);
	}
	__atomic_store_n(&vcpu_done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

/*
 * A vCPU of the source VM runs while its guest_memfd is linked away: it must
 * leave KVM_RUN with EIO, and not run again.
 */
static void test_running_source(void)
{
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = KVM_X86_SW_PROTECTED_VM,
	};
	unsigned long runs0, more;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *src, *dst;
	pthread_t thread;
	int g, linked, r;

	src = vm_create_shape_with_one_vcpu(shape, &vcpu, guest_loop);
	dst = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
	g = vm_create_guest_memfd(src, SIZE, 0);
	pthread_create(&thread, NULL, vcpu_thread, vcpu);
	for (int i = 0; i < 600000 && !__atomic_load_n(&vcpu_runs, __ATOMIC_SEQ_CST); i++)
		usleep(100);
	TEST_ASSERT(vcpu_runs, "the source's vCPU never ran");

	linked = link_gmem(dst, g, src->fd, 0, 0);
	TEST_ASSERT(linked >= 0, "linking a running VM's guest_memfd: %s", strerror(errno));
	runs0 = __atomic_load_n(&vcpu_runs, __ATOMIC_SEQ_CST);
	for (int i = 0; i < 100000 && !__atomic_load_n(&vcpu_done, __ATOMIC_SEQ_CST); i++) {
		usleep(100);
		if (__atomic_load_n(&vcpu_runs, __ATOMIC_SEQ_CST) - runs0 > 1000)
			break;
	}
	more = __atomic_load_n(&vcpu_runs, __ATOMIC_SEQ_CST) - runs0;
	TEST_ASSERT(__atomic_load_n(&vcpu_done, __ATOMIC_SEQ_CST),
		    "the source's vCPU still runs after the link (%lu more guest exits)", more);
	pthread_join(thread, NULL);
	TEST_ASSERT(vcpu_errno == EIO, "the source's vCPU left KVM_RUN with %s, not EIO",
		    strerror(vcpu_errno));
	r = __vcpu_run(vcpu);
	TEST_ASSERT(r == -1 && errno == EIO,
		    "the source's vCPU, KVM_RUN again after the link: %d (%s), not EIO", r,
		    strerror(errno));
	pr_info("a running source vCPU: %lu guest exits before the link, %lu after, then KVM_RUN failed with EIO\n",
		runs0, more);

	close(linked);
	close(g);
	/* kvm_vm_free() would delete the dead VM's memslots with ioctls. */
	kvm_vm_release(src);
	kvm_vm_free(dst);
}

struct racer {
	struct kvm_vm *vm;
	pthread_barrier_t *barrier;
	int fd, vm_fd, r, err;
};

static void *link_racer(void *arg)
{
	struct racer *x = arg;

	pthread_barrier_wait(x->barrier);
	x->r = link_gmem(x->vm, x->fd, x->vm_fd, 0, 0);
	x->err = errno;
	return NULL;
}

/* Two VMs link one guest_memfd at the same time: one gets it, one EIO. */
static void test_link_race(int rounds)
{
	pthread_barrier_t barrier;
	int won = 0, lost = 0;

	pthread_barrier_init(&barrier, NULL, 2);
	for (int i = 0; i < rounds; i++) {
		struct kvm_vm *src = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
		int g = vm_create_guest_memfd(src, SIZE, 0);
		struct racer x[2];
		pthread_t t[2];

		for (int j = 0; j < 2; j++) {
			x[j] = (struct racer){
				.vm = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM),
				.barrier = &barrier,
				.fd = g,
				.vm_fd = src->fd,
			};
			pthread_create(&t[j], NULL, link_racer, &x[j]);
		}
		for (int j = 0; j < 2; j++) {
			pthread_join(t[j], NULL);
			if (x[j].r >= 0) {
				won++;
				close(x[j].r);
			} else {
				CHECK(x[j].err == EIO,
				      "round %d: the losing link failed with %s, not EIO",
				      i, strerror(x[j].err));
				lost++;
			}
			kvm_vm_free(x[j].vm);
		}
		CHECK(x[0].r < 0 || x[1].r < 0,
		      "round %d: both racing links of one guest_memfd succeeded", i);
		CHECK(x[0].r >= 0 || x[1].r >= 0, "round %d: neither racing link succeeded", i);
		close(g);
		kvm_vm_free(src);
	}
	pthread_barrier_destroy(&barrier);
	pr_info("%d racing pairs of links of one guest_memfd: %d succeeded, %d failed with EIO\n",
		rounds, won, lost);
}

int main(int argc, char *argv[])
{
	struct kvm_vm *a, *b, *c, *plain;
	int ga, ga2, gb, linked, memfd, r;
	struct stat sa, sl;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM));

	a = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
	b = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
	c = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
	plain = vm_create_barebones();

	TEST_ASSERT(vm_check_cap(c, KVM_CAP_GUEST_MEMFD_LINK) == 1,
		    "KVM_CAP_GUEST_MEMFD_LINK not offered on a SW_PROTECTED VM");
	TEST_ASSERT(vm_check_cap(plain, KVM_CAP_GUEST_MEMFD_LINK) == 0,
		    "KVM_CAP_GUEST_MEMFD_LINK offered on a VM without private memory");

	ga = vm_create_guest_memfd(a, SIZE, 0);
	ga2 = vm_create_guest_memfd(a, SIZE, 0);
	gb = vm_create_guest_memfd(b, SIZE, 0);
	memfd = memfd_create("not-gmem", MFD_CLOEXEC);
	TEST_ASSERT(memfd >= 0, "memfd_create");
	TEST_ASSERT(!ftruncate(memfd, SIZE), "ftruncate");

	/* Refusals. */
	expect_errno(link_gmem(c, gb, a->fd, 0, 0), EINVAL,
		     "B's guest_memfd claimed as A's");
	expect_errno(link_gmem(c, memfd, a->fd, 0, 0), EINVAL,
		     "a memfd as guest_memfd");
	expect_errno(link_gmem(c, ga, memfd, 0, 0), EINVAL, "a memfd as VM");
	expect_errno(link_gmem(c, ga, ga, 0, 0), EINVAL, "a guest_memfd as VM");
	expect_errno(link_gmem(c, ga, a->fd, 1, 0), EINVAL, "flags 1");
	expect_errno(link_gmem(c, ga, a->fd, 0, 1), EINVAL, "reserved[0] 1");
	expect_errno(link_gmem(c, 1000, a->fd, 0, 0), EBADF, "closed fd");
	expect_errno(link_gmem(c, ga, 1000, 0, 0), EBADF, "closed vm_fd");
	expect_errno(link_gmem(plain, ga, a->fd, 0, 0), EINVAL,
		     "a VM of another type");

	/* One file per VM on an inode: no link to itself. */
	expect_errno(link_gmem(a, ga, a->fd, 0, 0), EEXIST,
		     "A links its own guest_memfd");
	CHECK(vm_alive(a) >= 0, "A died of a refused link: %s", strerror(errno));

	/* The original is another VM's: c cannot bind it. */
	r = bind_gmem(c, ga);
	expect_errno(r, EINVAL, "binding A's guest_memfd in C");

	linked = link_gmem(c, ga, a->fd, 0, 0);
	TEST_ASSERT(linked >= 0, "KVM_LINK_GUEST_MEMFD: errno %d", errno);
	TEST_ASSERT(!fstat(ga, &sa) && !fstat(linked, &sl), "fstat");
	TEST_ASSERT(sa.st_ino == sl.st_ino && sa.st_dev == sl.st_dev,
		    "linked file on another inode");
	TEST_ASSERT(sl.st_size == SIZE, "linked size %ld", (long)sl.st_size);
	pr_info("linked: fd %d on inode %lu, %ld bytes, F_GETFD %d\n", linked,
		(unsigned long)sl.st_ino, (long)sl.st_size, fcntl(linked, F_GETFD));
	CHECK(fcntl(linked, F_GETFD) == FD_CLOEXEC, "the linked fd is not close-on-exec");

	/* A move: A is dead, its file retired. */
	expect_errno(vm_alive(a), EIO, "A's KVM_CHECK_EXTENSION after the link");
	expect_errno(fallocate(ga, FALLOC_FL_KEEP_SIZE, 0, SIZE), EIO,
		     "fallocate on A's linked-away file");
	expect_errno(fallocate(ga, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, SIZE),
		     EIO, "PUNCH_HOLE on A's linked-away file");
	expect_errno(link_gmem(b, ga, a->fd, 0, 0), EIO,
		     "linking A's linked-away file again, into B");
	expect_errno(link_gmem(a, linked, c->fd, 0, 0), EIO,
		     "the round trip: A links C's link back");
	CHECK(vm_alive(c) >= 0, "C died of a refused link: %s", strerror(errno));
	expect_errno(link_gmem(c, linked, c->fd, 0, 0), EEXIST,
		     "C links its own link");
	/* A dead VM is handed on file by file: its other file still links. */
	r = link_gmem(b, ga2, a->fd, 0, 0);
	TEST_ASSERT(r >= 0, "linking the dead A's other guest_memfd into B: %s",
		    strerror(errno));
	pr_info("the dead A's other guest_memfd links into B: fd %d\n", r);
	close(r);
	close(ga2);

	/* The original file and its VM go; the link lives on and binds. */
	close(ga);
	kvm_vm_free(a);
	TEST_ASSERT(!fstat(linked, &sl) && sl.st_ino == sa.st_ino,
		    "linked file lost its inode");
	TEST_ASSERT(!fallocate(linked, FALLOC_FL_KEEP_SIZE, 0, SIZE),
		    "fallocate on the linked file: errno %d", errno);
	r = bind_gmem(c, linked);
	TEST_ASSERT(!r, "binding the linked guest_memfd in C: errno %d", errno);
	pr_info("the link outlives A and binds in C\n");

	/* A link of a link. */
	r = link_gmem(b, linked, c->fd, 0, 0);
	TEST_ASSERT(r >= 0, "linking C's linked file into B: errno %d", errno);
	close(r);

	expect_errno(vm_alive(c), EIO, "C's KVM_CHECK_EXTENSION after B linked its file");
	expect_errno(fallocate(linked, FALLOC_FL_KEEP_SIZE, 0, SIZE), EIO,
		     "fallocate on C's linked-away file");

	close(linked);
	close(gb);
	close(memfd);
	kvm_vm_free(b);
	kvm_vm_free(c);
	kvm_vm_free(plain);

	test_link_race(20);
	/* Last: on a kernel that does not kill the source, it ends the test. */
	test_running_source();
	TEST_ASSERT(!failures, "%d checks failed", failures);
	pr_info("PASS\n");
	return 0;
}
