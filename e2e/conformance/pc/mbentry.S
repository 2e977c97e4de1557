/*
 * mbentry.S: the Multiboot entry of the PC conformance programs written in
 * C (acpi.c): a header with no requests, a stack of our own, main(), and
 * a halt should main return.
 */
	.set MB_MAGIC, 0x1BADB002
	.set MB_FLAGS, 0

	.section .multiboot, "a"
	.balign 4
	.long	MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

	.text
	.code32
	.globl	_start
_start:
	cli
	cld
	movl	$stack_top, %esp
	call	main
1:	cli
	hlt
	jmp	1b

	.section .stack, "aw", @nobits
	.balign	16
	.space	16384
stack_top:
