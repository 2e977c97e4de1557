/*
 * ap.S: where an application processor starts, for kt.smp (kernel.c).
 *
 * kt_ap_trampoline is real-mode code that kernel.c copies to a free page
 * below 1 MiB: a startup IPI (SIPI) with that page's number starts the
 * processor at its offset 0, CS = page >> 4. It loads kt_ap_gdt through
 * the GDTR kernel.c wrote at AP_GDTR, turns on protected mode and jumps
 * through the far pointer at AP_FAR to kt_ap_entry32, in the kernel image
 * wherever the loader put it: both are filled in with relocated addresses.
 * Position independent: every offset is from the start of its segment.
 */
#include "smp.h"

	.text
	.code16
	.globl	kt_ap_trampoline
kt_ap_trampoline:
	cli
	cld
	movw	%cs, %ax
	movw	%ax, %ds
	lgdtl	AP_GDTR
	movl	%cr0, %eax
	orl	$1, %eax
	movl	%eax, %cr0
	ljmpl	*AP_FAR
	.org	kt_ap_trampoline + AP_GDTR
	.word	0
	.long	0
	.org	kt_ap_trampoline + AP_FAR
	.long	0
	.word	0
	.globl	kt_ap_trampoline_end
kt_ap_trampoline_end:

/*
 * kt_ap_entry32: flat 32-bit protected mode, paging and interrupts off.
 * Each processor takes a ticket (0, 1, ... in the order they come), which
 * picks its stack in kt_ap_stacks, and runs kt_ap_main(ticket). `movl
 * $symbol` and `symbol(%reg)` are R_386_32 relocations: right only where
 * the loader relocated the image.
 */
	.code32
	.globl	kt_ap_entry32
	.type	kt_ap_entry32, @function
kt_ap_entry32:
	movl	$AP_DATA_SEL, %eax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %fs
	movw	%ax, %gs
	movw	%ax, %ss
	movl	$1, %eax
	lock xaddl %eax, kt_ap_tickets
	cmpl	$KT_MAX_APS, %eax
	jae	1f			/* more processors than stacks: stop here */
	leal	1(%eax), %ecx
	shll	$AP_STACK_SHIFT, %ecx
	leal	kt_ap_stacks(%ecx), %esp
	xorl	%ebp, %ebp
	pushl	%eax
	call	kt_ap_main		/* does not return */
1:	cli
	hlt
	jmp	1b
	.size	kt_ap_entry32, . - kt_ap_entry32

	.data
	.balign	8
	.globl	kt_ap_gdt
kt_ap_gdt:
	.quad	0
	.quad	0x00cf9a000000ffff	/* AP_CODE_SEL: base 0, 4 GiB, 32-bit code */
	.quad	0x00cf92000000ffff	/* AP_DATA_SEL: base 0, 4 GiB, data */
	.globl	kt_ap_gdt_end
kt_ap_gdt_end:

	.section .note.GNU-stack, "", @progbits
