/*
 * kvmboot probe guest: 32-bit code that `kvmboot probe` boots through the
 * normal entry stub (linked and loaded at PROBE_ADDR, entered in flat
 * protected mode with paging off) to find out what the host's KVM can do.
 *
 * EAX selects the test:
 *   0  spin: run a two-instruction loop EBX times, then write 0 to the
 *      debug-exit port (the host times it: guest instructions per second);
 *   1  paging: build a page directory with one page table identity-mapping
 *      the first 4 MiB, set CR3 and CR0.PG, then write 0 to the debug-exit
 *      port.  A host that cannot run paged 32-bit guests triple-faults.
 */
	.set PROBE_ADDR, 0x100000
	.set PAGE_DIR,   0x200000
	.set PAGE_TABLE, 0x201000
	.set DEBUG_EXIT, 0xf4

	.text
	.code32
	.globl probe_start
probe_start:
	cmpl	$1, %eax
	je	paging
spin:
	movl	%ebx, %ecx
1:	decl	%ecx
	jnz	1b
	jmp	pass

paging:
	movl	$PAGE_TABLE, %edi
	movl	$0x003, %eax            /* present, writable, frame 0 */
	movl	$1024, %ecx
2:	movl	%eax, (%edi)
	addl	$4, %edi
	addl	$0x1000, %eax
	decl	%ecx
	jnz	2b
	movl	$PAGE_DIR, %edi
	movl	$(PAGE_TABLE | 0x003), (%edi)
	movl	$PAGE_DIR, %eax
	movl	%eax, %cr3
	movl	%cr0, %eax
	orl	$0x80000000, %eax
	movl	%eax, %cr0
	jmp	3f                      /* serialize after enabling paging */
3:
pass:
	xorl	%eax, %eax
	outb	%al, $DEBUG_EXIT
4:	cli
	hlt
	jmp	4b
	.globl probe_end
probe_end:
