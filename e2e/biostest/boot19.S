/*
 * BIOS test program: int 19h (bootstrap).  There is nothing to boot: the
 * BIOS prints its message and writes 125 to the debug-exit port.
 */
	.include "bt.inc"

main:
	cld
	call	bios_check
	call	say
	.asciz	"bt: int 19h\r\n"
	int	$0x19
	call	say
	.asciz	"bt: int 19h returned\r\n"
	jmp	done
