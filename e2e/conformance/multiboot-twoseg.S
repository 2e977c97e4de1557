/*
 * multiboot-twoseg.S: a Multiboot ELF that cannot move, with one PT_LOAD
 * at 0x40000, below 640K, and one at 1M (multiboot-twoseg.ld). A loader
 * that places it segment by segment, as GRUB does, leaves the memory
 * between them alone; one that copies the whole span from the lowest to
 * the highest segment as one block (QEMU's -kernel) writes over the EBDA,
 * the VGA window and the BIOS. The program checks its low segment's bytes,
 * the EBDA the BIOS set up (its first byte is its size in KiB, not 0) and
 * the BIOS's reset vector (a far jump, 0xEA, at 0xFFFF0), prints
 * "multiboot-twoseg: pass" and writes 0 to the debug-exit port; else
 * "multiboot-twoseg: FAIL <why>" and 1.
 */
	.set MB_MAGIC, 0x1BADB002
	.set MB_FLAGS, 0x00000002	/* memory information */

	.section .multiboot, "a"
	.balign	4
	.long	MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

	.section .low, "aw"
low_pattern:
	.set	i, 0
	.rept	256
	.byte	(i * 5 + 1) & 0xff
	.set	i, i + 1
	.endr

	.text
	.globl	_start
_start:
	cli
	cld
	movl	$stack_top, %esp
	cmpl	$0x2BADB002, %eax
	je	1f
	call	fail32
	.asciz	"no Multiboot magic in EAX"
1:	call	say32
	.asciz	"multiboot-twoseg: running at "
	movl	$_start, %eax
	call	hex32
	call	say32
	.asciz	", low segment at "
	movl	$low_pattern, %eax
	call	hex32
	call	say32
	.asciz	"\r\n"

	xorl	%ecx, %ecx
1:	movl	%ecx, %eax
	imull	$5, %eax
	incl	%eax
	cmpb	%al, low_pattern(%ecx)
	jne	2f
	incl	%ecx
	cmpl	$256, %ecx
	jb	1b
	jmp	3f
2:	call	fail32
	.asciz	"the low segment's bytes are wrong"
3:	movzwl	0x40e, %eax		/* the BDA's EBDA segment */
	shll	$4, %eax
	jz	4f
	cmpb	$0, (%eax)
	jne	5f
4:	call	fail32
	.asciz	"the EBDA was overwritten"
5:	cmpb	$0xea, 0xffff0
	je	6f
	call	fail32
	.asciz	"the BIOS's reset vector was overwritten"
6:	call	say32
	.asciz	"multiboot-twoseg: pass\r\n"
	movb	$0, %al
	jmp	exit32

/* fail32: print "multiboot-twoseg: FAIL " and the string after the call, exit 1. */
fail32:
	call	say32
	.asciz	"multiboot-twoseg: FAIL "
	popl	%esi
	call	puts32
	call	say32
	.asciz	"\r\n"
	movb	$1, %al
	jmp	exit32

	.include "print32.inc"

	.bss
	.balign	16
	.skip	4096
stack_top:
