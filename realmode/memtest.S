/*
 * kvmboot memtest guest: a RAM test that runs before the real boot.
 *
 * Flat 32-bit code, linked and loaded at MEMTEST_ADDR and entered through the
 * normal entry stub (flat protected mode, paging off, interrupts off) with
 * EBX = the address of its table (memtest.go builds it):
 *
 *   0x00 u32 magic "MTST"          0x10 u32 number of ranges (<= MAX_RANGES)
 *   0x04 u32 version (1)           0x14 u32 reserved
 *   0x08 u32 mode (0 quick,        0x20 {u32 start, u32 end} per range: page
 *            1 thorough)                aligned, end exclusive, ascending
 *   0x0c u32 seed
 *
 * It walks the ranges page by page.  Every page gets the quick test:
 * twelve sampled words (offset 0, the ten power-of-two offsets 4..2048,
 * and the last word) written with address-in-address (page+off+R, R derived
 * from the seed) and read back, then written with the inverse and read back.
 * The inversion puts every bit of a sampled word through 0 and 1; the
 * power-of-two offsets make an in-page address line that aliases two
 * cells show.  `thorough' then runs four passes over every word: address in
 * address, its inverse, walking ones (word i holds 1 rol (i+s)) and walking
 * zeros.  At the first failure a page is reported and the test moves on to
 * the next page, so a faulty area costs little.  After all pages, two
 * range-wide passes write word 0 of every page with its own address
 * (ascending, then the inverse descending) and read them back: that finds an
 * address line above the page size, whose writes land in another page.
 *
 * Failures go to the host over COM2 (0x2f8) as frames (memtest.go, and
 * machine/memtest for the decoder):
 *
 *   0xa5, type, seq, len, payload[len], check: the CRC-32 of type..payload
 *   (IEEE, reflected, as zlib; sent little endian, 4 bytes)
 *   'H' hello 16 bytes: u8 version, u8 mode, u16 ranges, u32 pages, u32 seed, u32 0
 *   'F' fail  17 bytes: u32 address, u32 expected, u32 got, u8 test, u32 pages:
 *             a run of consecutive pages that failed the same test, the
 *             first failure's details
 *   'D' done  12 bytes: u32 pages tested, u32 pages failed (per-page test),
 *             u32 failures in the range-wide passes
 *
 * COM2 is programmed like the 16550 it is on a PC (115200 8N1, FIFOs, no
 * interrupts) and every byte waits for LSR.THRE, with a bound: no UART (its
 * scratch register does not hold a value) ends the test at once with exit
 * value EXIT_NO_UART, a UART that stops accepting bytes with EXIT_UART_STUCK.
 * The end is a write to the debug-exit port 0xf4: 0 after the done frame.
 */
	.set MEMTEST_ADDR, 0x10000
	.set TABLE_MAGIC, 0x5453544d    /* "MTST" */
	.set TABLE_VERSION, 1
	.set T_MAGIC,   0x00
	.set T_VERSION, 0x04
	.set T_MODE,    0x08
	.set T_SEED,    0x0c
	.set T_NRANGES, 0x10
	.set T_RANGES,  0x20
	.set MAX_RANGES, 508
	.set MODE_QUICK, 0
	.set MODE_THOROUGH, 1

	.set COM2, 0x2f8
	.set DEBUG_EXIT, 0xf4
	.set POLL_MAX, 100000           /* LSR reads before a byte is given up */
	.set PAGE, 4096
	.set SEED_MUL, 0x9e3779b1       /* R = seed * golden ratio */

	.set SOF, 0xa5
	.set FRAME_HELLO, 0x48          /* 'H' */
	.set FRAME_FAIL,  0x46          /* 'F' */
	.set FRAME_DONE,  0x44          /* 'D' */
	.set PROTO_VERSION, 2            /* 1 had an 8-bit sum for a check */
	.set CRC32_POLY, 0xedb88320     /* IEEE, reflected */

	.set EXIT_OK, 0
	.set EXIT_BAD_TABLE, 1
	.set EXIT_NO_UART, 2
	.set EXIT_UART_STUCK, 3

	/* test numbers in fail frames */
	.set TEST_QUICK_ADDR, 1         /* sampled words, address in address */
	.set TEST_QUICK_INV,  2         /* sampled words, inverse */
	.set TEST_ADDR,       3         /* every word, address in address */
	.set TEST_INV,        4         /* every word, inverse */
	.set TEST_WALK1,      5         /* every word, walking ones */
	.set TEST_WALK0,      6         /* every word, walking zeros */
	.set TEST_WIDE_UP,    7         /* word 0 of every page, ascending */
	.set TEST_WIDE_DOWN,  8         /* word 0 of every page, inverse, written descending */

	.text
	.code32
	.globl memtest_start
memtest_start:
	jmp	start
	.balign 4
	/* header for the Go tests: where the code lies */
	.ascii	"KVMBMEMT"
	.long	start - memtest_start
	.long	code_end - memtest_start

start:
	cld
	movl	%ebx, table
	cmpl	$TABLE_MAGIC, T_MAGIC(%ebx)
	jne	bad_table
	cmpl	$TABLE_VERSION, T_VERSION(%ebx)
	jne	bad_table
	movl	T_MODE(%ebx), %eax
	cmpl	$MODE_THOROUGH, %eax
	ja	bad_table
	movl	%eax, mode
	movl	T_SEED(%ebx), %eax
	movl	%eax, seed
	imull	$SEED_MUL, %eax, %eax
	movl	%eax, pat_r
	movl	T_NRANGES(%ebx), %ecx
	cmpl	$MAX_RANGES, %ecx
	ja	bad_table
	movl	%ecx, nranges
	/* count the pages; every range must be page aligned and ascending */
	xorl	%eax, %eax
	xorl	%esi, %esi              /* end of the previous range */
	leal	T_RANGES(%ebx), %edi
	jecxz	2f
1:	movl	(%edi), %edx
	testl	$PAGE - 1, %edx
	jnz	bad_table
	cmpl	%esi, %edx
	jb	bad_table
	movl	4(%edi), %esi
	testl	$PAGE - 1, %esi
	jnz	bad_table
	cmpl	%edx, %esi
	jb	bad_table
	subl	%edx, %esi
	shrl	$12, %esi
	addl	%esi, %eax
	movl	4(%edi), %esi
	addl	$8, %edi
	loop	1b
2:	movl	%eax, total

	call	com2_init
	testl	%eax, %eax
	jnz	no_uart

	/* hello */
	movl	$payload, %edi
	movb	$PROTO_VERSION, (%edi)
	movb	mode, %al
	movb	%al, 1(%edi)
	movl	nranges, %eax
	movw	%ax, 2(%edi)
	movl	total, %eax
	movl	%eax, 4(%edi)
	movl	seed, %eax
	movl	%eax, 8(%edi)
	movl	$0, 12(%edi)
	movb	$FRAME_HELLO, %al
	movl	$16, %ecx
	call	send_frame

	movl	$test_page, %eax
	call	each_page
	call	flush_fail
	movl	failed, %eax
	movl	%eax, page_failed
	movl	$0, failed

	movl	$wide_write_up, %eax
	call	each_page
	movl	$wide_check_up, %eax
	call	each_page
	call	flush_fail
	movl	$wide_write_down, %eax
	call	each_page_down
	movl	$wide_check_down, %eax
	call	each_page
	call	flush_fail

	/* done */
	movl	$payload, %edi
	movl	tested, %eax
	movl	%eax, (%edi)
	movl	page_failed, %eax
	movl	%eax, 4(%edi)
	movl	failed, %eax
	movl	%eax, 8(%edi)
	movb	$FRAME_DONE, %al
	movl	$12, %ecx
	call	send_frame

	movb	$EXIT_OK, %al
	cmpb	$0, com2_stuck
	je	exit
	movb	$EXIT_UART_STUCK, %al
	jmp	exit
bad_table:
	movb	$EXIT_BAD_TABLE, %al
	jmp	exit
no_uart:
	movb	$EXIT_NO_UART, %al
exit:
	outb	%al, $DEBUG_EXIT
9:	cli
	hlt
	jmp	9b

/*
 * each_page: call %eax with %edi = each page of every range, ascending.
 * The callback may clobber every register.
 */
each_page:
	movl	%eax, callback
	movl	$0, range_i
1:	movl	range_i, %ecx
	cmpl	nranges, %ecx
	jae	9f
	movl	table, %ebx
	movl	T_RANGES(%ebx,%ecx,8), %edi
	movl	T_RANGES+4(%ebx,%ecx,8), %edx
	movl	%edx, range_end
2:	cmpl	range_end, %edi
	jae	3f
	movl	%edi, cur
	call	*callback
	movl	cur, %edi
	addl	$PAGE, %edi
	jmp	2b
3:	incl	range_i
	jmp	1b
9:	ret

/* each_page_down: the same, from the last page of the last range down. */
each_page_down:
	movl	%eax, callback
	movl	nranges, %ecx
	movl	%ecx, range_i
1:	movl	range_i, %ecx
	testl	%ecx, %ecx
	jz	9f
	decl	%ecx
	movl	%ecx, range_i
	movl	table, %ebx
	movl	T_RANGES(%ebx,%ecx,8), %edx
	movl	%edx, range_start
	movl	T_RANGES+4(%ebx,%ecx,8), %edi
2:	cmpl	range_start, %edi
	jbe	1b
	subl	$PAGE, %edi
	movl	%edi, cur
	call	*callback
	movl	cur, %edi
	jmp	2b
9:	ret

/* Quick-test macros: %edi = page, %ebp = R. On a mismatch they jump to
 * page_fail with %ecx = address, %eax = expected, %edx = got, %bl = test. */
	.macro QW off
	leal	\off(%edi,%ebp), %eax
	movl	%eax, \off(%edi)
	.endm
	.macro QR off
	leal	\off(%edi,%ebp), %eax
	movl	\off(%edi), %edx
	cmpl	%eax, %edx
	je	1f
	leal	\off(%edi), %ecx
	movb	$TEST_QUICK_ADDR, %bl
	jmp	page_fail
1:
	.endm
	.macro QWN off
	leal	\off(%edi,%ebp), %eax
	notl	%eax
	movl	%eax, \off(%edi)
	.endm
	.macro QRN off
	leal	\off(%edi,%ebp), %eax
	notl	%eax
	movl	\off(%edi), %edx
	cmpl	%eax, %edx
	je	1f
	leal	\off(%edi), %ecx
	movb	$TEST_QUICK_INV, %bl
	jmp	page_fail
1:
	.endm

/* test_page: the per-page test of the page at %edi. */
test_page:
	movl	pat_r, %ebp
	.irp off, 0, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4092
	QW	\off
	.endr
	.irp off, 0, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4092
	QR	\off
	.endr
	.irp off, 0, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4092
	QWN	\off
	.endr
	.irp off, 0, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4092
	QRN	\off
	.endr
	cmpl	$MODE_THOROUGH, mode
	jne	page_ok

	/* address in address, every word */
	movl	cur, %edi
	leal	(%edi,%ebp), %eax
	movl	$PAGE / 4, %ecx
1:	stosl
	addl	$4, %eax
	loop	1b
	movl	cur, %esi
	leal	(%esi,%ebp), %edx
	movl	$PAGE / 4, %ecx
2:	lodsl
	cmpl	%edx, %eax
	jne	3f
	addl	$4, %edx
	loop	2b
	jmp	4f
3:	movb	$TEST_ADDR, %bl
	jmp	loop_fail

	/* its inverse: ~(a+4) = ~a - 4 */
4:	movl	cur, %edi
	leal	(%edi,%ebp), %eax
	notl	%eax
	movl	$PAGE / 4, %ecx
1:	stosl
	subl	$4, %eax
	loop	1b
	movl	cur, %esi
	leal	(%esi,%ebp), %edx
	notl	%edx
	movl	$PAGE / 4, %ecx
2:	lodsl
	cmpl	%edx, %eax
	jne	3f
	subl	$4, %edx
	loop	2b
	jmp	4f
3:	movb	$TEST_INV, %bl
	jmp	loop_fail

	/* walking ones: word i holds 1 rol (i + s), s = page number + seed */
4:	call	walk_start
	movl	%edx, %eax
	movl	cur, %edi
	movl	$PAGE / 4, %ecx
1:	stosl
	roll	$1, %eax
	loop	1b
	call	walk_start
	movl	cur, %esi
	movl	$PAGE / 4, %ecx
2:	lodsl
	cmpl	%edx, %eax
	jne	3f
	roll	$1, %edx
	loop	2b
	jmp	4f
3:	movb	$TEST_WALK1, %bl
	jmp	loop_fail

	/* walking zeros */
4:	call	walk_start
	notl	%edx
	movl	%edx, %eax
	movl	cur, %edi
	movl	$PAGE / 4, %ecx
1:	stosl
	roll	$1, %eax
	loop	1b
	call	walk_start
	notl	%edx
	movl	cur, %esi
	movl	$PAGE / 4, %ecx
2:	lodsl
	cmpl	%edx, %eax
	jne	3f
	roll	$1, %edx
	loop	2b
	jmp	page_ok
3:	movb	$TEST_WALK0, %bl
	jmp	loop_fail

page_ok:
	incl	tested
	ret

/* A loop found %eax (got) at -4(%esi) where it expected %edx. */
loop_fail:
	xchgl	%eax, %edx
	leal	-4(%esi), %ecx
page_fail:
	call	record_fail
	incl	tested
	ret

/* walk_start: %edx = 1 rol ((cur >> 12) + seed). Clobbers %ecx. */
walk_start:
	movl	cur, %ecx
	shrl	$12, %ecx
	addl	seed, %ecx
	movl	$1, %edx
	roll	%cl, %edx
	ret

/* The range-wide passes: word 0 of page %edi. */
wide_write_up:
	movl	pat_r, %eax
	addl	%edi, %eax
	movl	%eax, (%edi)
	ret
wide_check_up:
	movl	pat_r, %eax
	addl	%edi, %eax
	movl	(%edi), %edx
	cmpl	%eax, %edx
	je	1f
	movl	%edi, %ecx
	movb	$TEST_WIDE_UP, %bl
	call	record_fail
1:	ret
wide_write_down:
	movl	pat_r, %eax
	addl	%edi, %eax
	notl	%eax
	movl	%eax, (%edi)
	ret
wide_check_down:
	movl	pat_r, %eax
	addl	%edi, %eax
	notl	%eax
	movl	(%edi), %edx
	cmpl	%eax, %edx
	je	1f
	movl	%edi, %ecx
	movb	$TEST_WIDE_DOWN, %bl
	call	record_fail
1:	ret

/*
 * record_fail: %ecx = address, %eax = expected, %edx = got, %bl = test.
 * Pages come in ascending order within a pass: a failure in the page right
 * after a pending run of the same test extends it, anything else sends the
 * pending run and starts a new one.
 */
record_fail:
	incl	failed
	movl	%ecx, %esi
	andl	$~(PAGE - 1), %esi      /* this page */
	movl	pend_count, %edi
	testl	%edi, %edi
	jz	1f
	cmpb	pend_test, %bl
	jne	2f
	shll	$12, %edi
	addl	pend_page, %edi         /* the page after the run */
	cmpl	%edi, %esi
	jne	2f
	incl	pend_count
	ret
2:	pushl	%eax
	pushl	%ecx
	pushl	%edx
	pushl	%ebx
	pushl	%esi
	call	flush_fail
	popl	%esi
	popl	%ebx
	popl	%edx
	popl	%ecx
	popl	%eax
1:	movl	%ecx, pend_addr
	movl	%eax, pend_exp
	movl	%edx, pend_got
	movb	%bl, pend_test
	movl	%esi, pend_page
	movl	$1, pend_count
	ret

/* flush_fail: send the pending run, if any, as a fail frame. */
flush_fail:
	cmpl	$0, pend_count
	je	1f
	movl	$payload, %edi
	movl	pend_addr, %eax
	movl	%eax, (%edi)
	movl	pend_exp, %eax
	movl	%eax, 4(%edi)
	movl	pend_got, %eax
	movl	%eax, 8(%edi)
	movb	pend_test, %al
	movb	%al, 12(%edi)
	movl	pend_count, %eax
	movl	%eax, 13(%edi)
	movl	$0, pend_count
	movb	$FRAME_FAIL, %al
	movl	$17, %ecx
	call	send_frame
1:	ret

/*
 * send_frame: %al = type, %ecx = payload length (at payload).
 * Clobbers %eax, %ebx, %ecx, %edx, %esi.
 */
send_frame:
	movl	$payload, %esi
	movb	%al, %bl
	movl	$0xffffffff, frame_crc
	movb	$SOF, %al
	call	putc
	movb	%bl, %al
	call	putc_crc
	movb	seq, %al
	incb	seq
	call	putc_crc
	movb	%cl, %al
	call	putc_crc
	jecxz	2f
1:	lodsb
	call	putc_crc
	loop	1b
2:	movl	frame_crc, %ebx
	notl	%ebx
	movl	$4, %ecx
3:	movb	%bl, %al
	call	putc
	shrl	$8, %ebx
	loop	3b
	ret

/* putc_crc: fold %al into frame_crc, then send it. As putc. */
putc_crc:
	call	crc_byte
	jmp	putc

/* crc_byte: fold %al into the running CRC-32 in frame_crc, a bit at a
 * time (a frame is a few dozen bytes: no table needed, and no SSE4.2
 * crc32, which an emulating KVM cannot execute). Preserves every register. */
crc_byte:
	pushl	%eax
	pushl	%ecx
	pushl	%edx
	movzbl	%al, %eax
	movl	frame_crc, %edx
	xorl	%eax, %edx
	movl	$8, %ecx
1:	shrl	$1, %edx                /* CF = the bit shifted out */
	jnc	2f
	xorl	$CRC32_POLY, %edx
2:	loop	1b
	movl	%edx, frame_crc
	popl	%edx
	popl	%ecx
	popl	%eax
	ret

/* putc: send %al on COM2 once LSR says the holding register is empty.
 * Preserves everything but %edx. */
putc:
	cmpb	$0, com2_ok
	je	3f
	pushl	%ecx
	pushl	%eax
	movl	$POLL_MAX, %ecx
	movw	$COM2 + 5, %dx
1:	inb	%dx, %al
	testb	$0x20, %al
	jnz	2f
	loop	1b
	movb	$0, com2_ok             /* stuck: stop sending, report at the end */
	movb	$1, com2_stuck
	popl	%eax
	popl	%ecx
	ret
2:	popl	%eax
	movw	$COM2, %dx
	outb	%al, %dx
	popl	%ecx
3:	ret

/* com2_init: %eax = 0 when a UART answers at COM2, else 1. */
com2_init:
	movw	$COM2 + 7, %dx          /* scratch register */
	movb	$0x5a, %al
	outb	%al, %dx
	inb	%dx, %al
	cmpb	$0x5a, %al
	jne	1f
	movb	$0xa5, %al
	outb	%al, %dx
	inb	%dx, %al
	cmpb	$0xa5, %al
	jne	1f
	movw	$COM2 + 1, %dx          /* IER: no interrupts */
	xorb	%al, %al
	outb	%al, %dx
	movw	$COM2 + 3, %dx          /* LCR: DLAB */
	movb	$0x80, %al
	outb	%al, %dx
	movw	$COM2, %dx              /* divisor 1: 115200 baud */
	movb	$1, %al
	outb	%al, %dx
	movw	$COM2 + 1, %dx
	xorb	%al, %al
	outb	%al, %dx
	movw	$COM2 + 3, %dx          /* 8N1 */
	movb	$0x03, %al
	outb	%al, %dx
	movw	$COM2 + 2, %dx          /* FIFOs on and cleared */
	movb	$0x07, %al
	outb	%al, %dx
	movw	$COM2 + 4, %dx          /* DTR, RTS; OUT2 off: no IRQ */
	movb	$0x03, %al
	outb	%al, %dx
	movb	$1, com2_ok
	xorl	%eax, %eax
	ret
1:	movl	$1, %eax
	ret
	.globl code_end
code_end:

/* ---- variables (the program runs from RAM) ---- */
	.balign 64
table:		.long 0
mode:		.long 0
seed:		.long 0
pat_r:		.long 0
nranges:	.long 0
total:		.long 0
tested:		.long 0
failed:		.long 0
page_failed:	.long 0
callback:	.long 0
range_i:	.long 0
range_start:	.long 0
range_end:	.long 0
cur:		.long 0
pend_addr:	.long 0
pend_exp:	.long 0
pend_got:	.long 0
pend_page:	.long 0
pend_count:	.long 0
frame_crc:	.long 0
pend_test:	.byte 0
seq:		.byte 0
com2_ok:	.byte 0
com2_stuck:	.byte 0
	.balign 4
payload:	.fill 32, 1, 0
	.globl memtest_end
memtest_end:
