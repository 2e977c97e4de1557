/*
 * The test kernel's real-mode part, in the spirit of Gujin's kernels: it runs
 * in real mode before the kernel, asks the BIOS for the memory map (int 15h
 * E820), and leaves it at RM_RESULTS for the 32-bit kernel, which compares it
 * with the Multiboot memory map. Position independent within its segment:
 * the loader far-calls offset 0 with CS = the part's segment; it returns
 * with lret.
 *
 * Results: u32 magic, u16 count, u16 status (0 ok, 1 E820 failed at once,
 * 2 a bad signature), then count x {u64 base, u64 length, u32 type}.
 */
#include "realmode.h"

	.code16
	.text
	.globl	rm_entry
rm_entry:
	pushw	%ds
	pushw	%es
	pushal
	movw	%cs, %ax
	movw	%ax, %ds
	movw	%ax, %es
	cld
	movw	$0, RM_RESULTS + 4
	movw	$0, RM_RESULTS + 6
	movw	$RM_RESULTS + 8, %di
	xorl	%ebx, %ebx
1:	movl	$0xe820, %eax
	movl	$RM_ENTRY_SIZE, %ecx
	movl	$0x534d4150, %edx		/* "SMAP" */
	int	$0x15
	jc	3f
	cmpl	$0x534d4150, %eax
	jne	4f
	incw	RM_RESULTS + 4
	addw	$RM_ENTRY_SIZE, %di
	cmpw	$RM_MAX, RM_RESULTS + 4
	jae	5f
	testl	%ebx, %ebx
	jnz	1b
	jmp	5f
3:	cmpw	$0, RM_RESULTS + 4		/* CF after the last entry is fine */
	jne	5f
	movw	$1, RM_RESULTS + 6
	jmp	5f
4:	movw	$2, RM_RESULTS + 6
5:	movl	$RM_MAGIC, RM_RESULTS
	popal
	popw	%es
	popw	%ds
	lretw
