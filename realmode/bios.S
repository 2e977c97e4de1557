/*
 * kvmboot BIOS: a small PC BIOS that lives in the guest.
 *
 * Real-mode code linked into the same 64 KiB firmware image as firmware.S
 * (scripts/build-stubs.sh), running with CS=0xF000.  It answers the BIOS
 * services a bootloader, a Gujin-style real-mode part or Linux's own setup
 * code asks for, from tables the loader fills in guest RAM before the
 * first instruction (bios.go and loader/bios.go, which must agree with the
 * offsets below).  Everything runs as guest code: the same bytes answer
 * under our KVM machine, under QEMU -bios and on a PC.
 *
 * Guest memory it uses:
 *
 *   0x00000  IVT, 256 vectors (bios_init)
 *   0x00400  BDA: COM1 base, EBDA segment, equipment word, base memory,
 *            video mode and size, number of hard disks
 *   0x05000  tables, 4 KiB, filled by the loader (bios_tables placement):
 *            sizes, the E820 entries, the disk, and the log of unknown
 *            services that the handlers write and the host decodes
 *   0x9FC00  EBDA, 1 KiB (the loader reserves it in the memory map)
 *
 * Conventions of every handler: it runs on the caller's stack with the
 * caller's DS, ES, SS whatever they are; it preserves every register that
 * is not an output of the service (32-bit halves too); it reports CF (and
 * ZF for int 16h AH=01h) by editing the FLAGS image that `int` pushed, so
 * that `iret` gives the caller back its own IF and DF; it never enables
 * interrupts (the IRQ handlers run with them off too).  An unknown service
 * returns CF=1 (int 13h: AH=01h, int 15h: AH=86h, int 10h/16h/1Ah: AX
 * unchanged) and is recorded in the log.
 */

	.set ROM_BASE,       0xF0000
	.set ROM_SEG,        0xF000

	/* tables at TABLES (bios.go) */
	.set TABLES,         0x5000
	.set TABLES_SIZE,    0x1000
	.set TABLES_MAGIC,   0x534f4942  /* "BIOS" */
	.set TABLES_VERSION, 1
	.set T_MAGIC,        0x00        /* u32 */
	.set T_VERSION,      0x04        /* u16 */
	.set T_BASE_KB,      0x06        /* u16 int 12h, BDA 0x413 */
	.set T_EXT_KB,       0x08        /* u16 int 15h AH=88h */
	.set T_E801_AX,      0x0a        /* u16 KiB between 1 MiB and 16 MiB */
	.set T_E801_BX,      0x0c        /* u16 64 KiB blocks above 16 MiB */
	.set T_E820_COUNT,   0x0e        /* u16 */
	.set T_DISK_ADDR,    0x10        /* u32 guest physical address of the image */
	.set T_DISK_SECTORS, 0x14        /* u32 512-byte sectors */
	.set T_DISK_CYLS,    0x18        /* u16 cylinders, 1..1024 */
	.set T_DISK_HEADS,   0x1a        /* u8 heads, 1..255 */
	.set T_DISK_SPT,     0x1b        /* u8 sectors per track, 1..63 */
	.set T_DISK_DRIVE,   0x1c        /* u8 drive number (0x80) */
	.set T_DISK_COUNT,   0x1d        /* u8 number of drives, 0 or 1 */
	.set T_LOG_USED,     0x20        /* u16 log entries in use */
	.set T_LOG_DROPPED,  0x22        /* u16 unknown calls not logged: the log was full */
	.set T_E820,         0x40        /* E820_MAX entries of E820_SIZE bytes */
	.set E820_MAX,       128
	.set E820_SIZE,      20
	.set T_LOG,          0xa40       /* LOG_MAX entries of LOG_SIZE bytes */
	.set LOG_MAX,        32
	.set LOG_SIZE,       16
	/* log entry: u8 vector, u8 0, u16 AX, u16 count (saturating), then the
	 * first call's BX, CX, DX and return address IP, CS */
	.set L_VECTOR,       0
	.set L_AX,           2
	.set L_COUNT,        4
	.set L_BX,           6
	.set L_CX,           8
	.set L_DX,           10
	.set L_IP,           12
	.set L_CS,           14

	/* BDA and EBDA */
	.set BDA_COM1,       0x400
	.set BDA_EBDA_SEG,   0x40e
	.set BDA_EQUIPMENT,  0x410
	.set BDA_BASE_KB,    0x413
	.set BDA_VIDEO_MODE, 0x449       /* u8 mode, then u16 columns at 0x44a */
	.set BDA_TICKS,      0x46c       /* u32 timer ticks since midnight */
	.set BDA_MIDNIGHT,   0x470       /* u8 1 once the count passed midnight */
	.set BDA_HARD_DISKS, 0x475
	.set BDA_ROWS,       0x484       /* u8 rows-1, then u16 character height */
	.set EBDA_SEG,       0x9fc0
	.set EBDA_KB,        1
	/* equipment: math coprocessor (bit 1), 80x25 colour (bits 4-5 = 10),
	 * one serial port (bits 9-11) */
	.set EQUIPMENT,      0x0222

	/* The timer: PIT channel 0 counts 65536 of its 1.193182 MHz: 18.2 Hz,
	 * 0x1800B0 ticks a day; an RTC second is 19663/1080 ticks. */
	.set TICKS_PER_DAY,  0x1800b0
	.set PIT_MODE2,      0x34        /* channel 0, low then high byte, mode 2, binary */
	/* The 8259s' masks at hand-off: IRQ 0 (timer), 1 (keyboard) and 2
	 * (the cascade) on, as SeaBIOS leaves them for these two. */
	.set PIC_MASTER_MASK, 0xf8
	.set PIC_SLAVE_MASK, 0xff

	/* ACPI power management I/O block (loader/acpi.go describes it):
	 * PM1a event at +0, PM1a control at +4 (SCI_EN is bit 0), PM timer
	 * at +8.  QEMU's PC has it in the PIIX4's function 3 (00:01.3), where
	 * firmware must place and enable it; our KVM machine has it fixed. */
	.set PM_BASE,        0x600
	.set PIIX4_PM_CFG,   0x80000b00  /* PCI configuration address of 00:01.3 */
	.set PIIX4_PM_ID,    0x71138086  /* Intel 82371AB PIIX4 ACPI */
	.set PIIX4_PMBA,     0x40        /* its I/O base register */
	.set PIIX4_PMREGMISC, 0x80       /* bit 0: the I/O block is on */

	.set COM1,           0x3f8
	.set DEBUG_EXIT,     0xf4
	.set EXIT_BOOTSTRAP, 125         /* as the stub's ExitStubFailed */
	.set SMAP,           0x534d4150  /* "SMAP" */
	.set DISK_MAX_COUNT, 127         /* sectors per read */

	/* int 13h status codes (AH) */
	.set DS_OK,          0x00
	.set DS_BADPARAM,    0x01        /* also: no such drive */
	.set DS_WRITEPROT,   0x03
	.set DS_NOTFOUND,    0x04        /* beyond the end of the disk */
	.set DS_BOUNDARY,    0x09        /* buffer crosses the 1 MiB line */
	.set UNSUPPORTED,    0x86        /* int 15h */

	/* our GDT for the copies above 1 MiB */
	.set BSEL_CODE16,    0x08        /* 16-bit code, base ROM_BASE */
	.set BSEL_FLAT,      0x10        /* flat 4 GiB data */
	.set BSEL_DATA16,    0x18        /* 16-bit data, base 0, 64 KiB: real-mode limits */

	/* the frame every service handler builds: push %bp; mov %sp, %bp */
	.set F_IP,           2
	.set F_CS,           4
	.set F_FLAGS,        6
	/* after that frame, pushal puts the caller's registers at */
	.set F_AL,           -4
	.set F_AH,           -3
	.set F_CX,           -8
	.set F_DX,           -12
	.set F_BX,           -16
	.set F_SI,           -28
	.set F_ES,           -34         /* when the handler pushes ES after pushal */

	.text
	.code16
	.balign 16
	.globl bios_code_start
bios_code_start:

/*
 * bios_init: IVT, BDA, EBDA, the interrupt controllers, the timer and the
 * ACPI power-management block: what a PC's POST leaves.  Called once by
 * the stub (near call) in real mode with CS=0xF000, DS=ES=0, IF=0, DF=0 and
 * a valid stack.  Clobbers EAX, CX, DI, SI and the flags; everything else,
 * EDX and the segment registers included, is preserved.  Straight-line code
 * (forward branches only, rep counts once) so that it fits the stub's
 * instruction budget.
 */
	.globl bios_init
bios_init:
	pushl	%edx
	/* Every vector to an iret, the BDA zeroed (DI runs on into it). */
	movl	$(ROM_SEG << 16) + bios_iret, %eax
	xorw	%di, %di
	movw	$256, %cx
	rep stosl
	xorl	%eax, %eax
	movb	$256 / 4, %cl
	rep stosl
	/* Hardware interrupts: IRQ 0-7 at 0x08, IRQ 8-15 at 0x70. */
	movl	$(ROM_SEG << 16) + bios_irq_master, %eax
	movw	$0x08 * 4, %di
	movb	$8, %cl
	rep stosl
	movw	$bios_irq_slave, %ax
	movw	$0x70 * 4, %di
	movb	$8, %cl
	rep stosl
	/* The timer, the keyboard and the services: the segment is ROM_SEG
	 * already. */
	movw	$bios_irq0, 0x08 * 4
	movw	$bios_irq1, 0x09 * 4
	movw	$bios_int10, 0x10 * 4
	movw	$bios_int11, 0x11 * 4
	movw	$bios_int12, 0x12 * 4
	movw	$bios_int13, 0x13 * 4
	movw	$bios_int15, 0x15 * 4
	movw	$bios_int16, 0x16 * 4
	movw	$bios_int19, 0x19 * 4
	movw	$bios_int1a, 0x1a * 4
	/* BDA */
	movw	$COM1, BDA_COM1
	movw	$EBDA_SEG, BDA_EBDA_SEG
	movw	$EQUIPMENT, BDA_EQUIPMENT
	movw	$0x5003, BDA_VIDEO_MODE     /* mode 3, 80 columns */
	movw	$0x1018, BDA_ROWS           /* 25 rows, 16-line characters */
	cmpl	$TABLES_MAGIC, TABLES + T_MAGIC
	jne	1f
	cmpw	$TABLES_VERSION, TABLES + T_VERSION
	jne	1f
	movw	TABLES + T_BASE_KB, %ax
	movw	%ax, BDA_BASE_KB
	movb	TABLES + T_DISK_COUNT, %al
	movb	%al, BDA_HARD_DISKS
1:	/* EBDA: its size in KiB in its first word */
	pushw	%es
	movw	$EBDA_SEG, %ax
	movw	%ax, %es
	movw	$EBDA_KB, %es:0
	popw	%es
	/* Ticks since midnight from the RTC's time of day (BCD, 24-hour).
	 * The seconds are read first and last; when they differ, a second
	 * passed and the minutes and hours are read again, since the update
	 * may have carried into them.  DL, DH, CL: seconds, minutes, hours. */
	movb	$0x00, %al
	outb	%al, $0x70
	inb	$0x71, %al
	movb	%al, %dl
	movb	$0x02, %al
	outb	%al, $0x70
	inb	$0x71, %al
	movb	%al, %dh
	movb	$0x04, %al
	outb	%al, $0x70
	inb	$0x71, %al
	movb	%al, %cl
	movb	$0x00, %al
	outb	%al, $0x70
	inb	$0x71, %al
	cmpb	%al, %dl
	je	2f
	movb	%al, %dl
	movb	$0x02, %al
	outb	%al, $0x70
	inb	$0x71, %al
	movb	%al, %dh
	movb	$0x04, %al
	outb	%al, $0x70
	inb	$0x71, %al
	movb	%al, %cl
2:	movb	%cl, %al                   /* BCD to binary: AL = AL>>4 * 10 + AL&15 */
	movb	%al, %ah
	shrb	$4, %ah
	andb	$0x0f, %al
	aad
	imulw	$60, %ax, %cx              /* CX = hours * 60 */
	movb	%dh, %al
	movb	%al, %ah
	shrb	$4, %ah
	andb	$0x0f, %al
	aad
	addw	%ax, %cx                   /* CX = minutes since midnight */
	movb	%dl, %al
	movb	%al, %ah
	shrb	$4, %ah
	andb	$0x0f, %al
	aad
	movzwl	%cx, %ecx
	imull	$60, %ecx, %ecx
	movzwl	%ax, %eax
	addl	%ecx, %eax                 /* seconds since midnight */
	imull	$19663, %eax, %eax         /* ticks = seconds * 1573040 / 86400 */
	xorl	%edx, %edx
	movl	$1080, %ecx
	divl	%ecx
	movl	%eax, BDA_TICKS
	/* 8259s: ICW1 (edge, cascade, ICW4 follows), then on each data port
	 * ICW2 (vector base), ICW3 (cascade on IRQ 2), ICW4 (8086 mode) and
	 * the mask. */
	movb	$0x11, %al
	outb	%al, $0x20
	outb	%al, $0xa0
	movw	$bios_pic_init, %si
	movw	$0x21, %dx
	movw	$4, %cx
	rep outsb %cs:(%si), (%dx)
	movb	$0xa1, %dl
	movb	$4, %cl
	rep outsb %cs:(%si), (%dx)
	/* PIT channel 0: mode 2, count 65536, IRQ 0 at 18.2 Hz. */
	movb	$PIT_MODE2, %al
	outb	%al, $0x43
	movb	$0, %al
	outb	%al, $0x40
	outb	%al, $0x40
	/* QEMU's PC: the PIIX4's power management at PM_BASE, in ACPI mode
	 * (the tables say SMI_CMD 0: no mode switch).  Where there is no
	 * such function (our KVM machine, the ISA PC) the probe reads
	 * all-ones. */
	movw	$0xcf8, %dx
	movl	$PIIX4_PM_CFG, %eax
	outl	%eax, %dx
	movb	$0xfc, %dl
	inl	%dx, %eax
	cmpl	$PIIX4_PM_ID, %eax
	jne	3f
	movb	$0xf8, %dl
	movl	$PIIX4_PM_CFG + PIIX4_PMBA, %eax
	outl	%eax, %dx
	movb	$0xfc, %dl
	movl	$PM_BASE + 1, %eax         /* bit 0: an I/O address */
	outl	%eax, %dx
	movb	$0xf8, %dl
	movl	$PIIX4_PM_CFG + PIIX4_PMREGMISC, %eax
	outl	%eax, %dx
	movb	$0xfc, %dl
	movb	$1, %al
	outb	%al, %dx
	movw	$PM_BASE + 4, %dx
	movw	$1, %ax                    /* PM1a_CNT: SCI_EN */
	outw	%ax, %dx
3:	popl	%edx
	ret

/* ---- common exits and helpers ---------------------------------------- */

/* Handlers end here with BP = their frame: CF into the caller's FLAGS. */
iret_cf0:
	andb	$0xfe, F_FLAGS(%bp)
	popw	%bp
	iret
iret_cf1:
	orb	$0x01, F_FLAGS(%bp)
	popw	%bp
	iret
iret_plain:
	popw	%bp
bios_iret:
	iret

/* tables_ok: ZF=1 when DS:TABLES holds tables of our version (DS=0). */
tables_ok:
	cmpl	$TABLES_MAGIC, TABLES + T_MAGIC
	jne	1f
	cmpw	$TABLES_VERSION, TABLES + T_VERSION
1:	ret

/*
 * log_unknown: record an unknown service.  The handler pushes the vector
 * (a word) and calls it with its frame in BP and the caller's AX, BX, CX,
 * DX untouched.  Calls are counted per (vector, AX); the first call's
 * registers and return address are kept.  Preserves all registers.
 */
log_unknown:
	pushw	%ds
	pushw	%si
	pushw	%di
	pushw	%cx
	movw	%sp, %si                   /* ss:si: cx, di, si, ds, ret, vector */
	pushw	$0
	popw	%ds
	call	tables_ok
	jne	4f
	movb	%ss:10(%si), %ch           /* vector */
	movb	TABLES + T_LOG_USED, %cl   /* entries in use, at most LOG_MAX */
	movw	$TABLES + T_LOG, %di
	testb	%cl, %cl
	jz	2f
1:	cmpb	%ch, L_VECTOR(%di)
	jne	3f
	cmpw	%ax, L_AX(%di)
	jne	3f
	incw	L_COUNT(%di)
	jnz	4f
	decw	L_COUNT(%di)               /* saturate at 0xffff */
	jmp	4f
3:	addw	$LOG_SIZE, %di
	decb	%cl
	jnz	1b
2:	cmpw	$LOG_MAX, TABLES + T_LOG_USED
	jae	5f
	incw	TABLES + T_LOG_USED
	movb	%ch, L_VECTOR(%di)
	movb	$0, L_VECTOR + 1(%di)
	movw	%ax, L_AX(%di)
	movw	$1, L_COUNT(%di)
	movw	%bx, L_BX(%di)
	movw	%ss:(%si), %cx             /* the caller's CX */
	movw	%cx, L_CX(%di)
	movw	%dx, L_DX(%di)
	movw	F_IP(%bp), %cx
	movw	%cx, L_IP(%di)
	movw	F_CS(%bp), %cx
	movw	%cx, L_CS(%di)
	jmp	4f
5:	incw	TABLES + T_LOG_DROPPED
	jnz	4f
	decw	TABLES + T_LOG_DROPPED
4:	popw	%cx
	popw	%di
	popw	%si
	popw	%ds
	ret	$2

/* com1_putc: AL to COM1, waiting (boundedly) for the transmitter.  A
 * missing UART reads 0xff, which says "ready".  Preserves all registers. */
com1_putc:
	pushw	%ax
	pushw	%cx
	pushw	%dx
	movb	%al, %ah
	movw	$COM1 + 5, %dx
	movw	$0x4000, %cx
1:	inb	%dx, %al
	testb	$0x20, %al
	loopz	1b
	movb	%ah, %al
	movw	$COM1, %dx
	outb	%al, %dx
	popw	%dx
	popw	%cx
	popw	%ax
	ret

/*
 * pm_copy: copy ECX bytes from linear ESI to linear EDI, anywhere in the
 * 4 GiB space, through 16-bit protected mode with flat data segments.
 * Interrupts must be off (they are in a handler).  Saves and restores DS,
 * ES, the GDTR and the A20 gate (on while copying); FS, GS and SS are
 * never loaded, so their real-mode caches stay.  Clobbers EAX, ECX, ESI,
 * EDI and the flags.
 */
pm_copy:
	pushw	%ds
	pushw	%es
	pushw	%bx
	subw	$6, %sp
	movw	%sp, %bx
	sgdtl	%ss:(%bx)
	inb	$0x92, %al
	pushw	%ax                        /* the A20 gate as it was */
	orb	$0x02, %al
	andb	$0xfe, %al                 /* bit 0 would reset the machine */
	outb	%al, $0x92
	lgdtl	%cs:bios_gdt_pointer
	movl	%cr0, %eax
	orb	$1, %al
	movl	%eax, %cr0
	ljmp	$BSEL_CODE16, $1f
1:	movw	$BSEL_FLAT, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%cx, %ax
	shrl	$2, %ecx
	addr32 rep movsl
	andw	$3, %ax
	movw	%ax, %cx                   /* ECX was 0 */
	addr32 rep movsb
	movw	$BSEL_DATA16, %ax          /* real-mode limits before leaving */
	movw	%ax, %ds
	movw	%ax, %es
	movl	%cr0, %eax
	andb	$0xfe, %al
	movl	%eax, %cr0
	ljmp	$ROM_SEG, $2f
2:	popw	%ax
	andb	$0xfe, %al
	outb	%al, $0x92
	lgdtl	%ss:(%bx)
	addw	$6, %sp
	popw	%bx
	popw	%es
	popw	%ds
	ret

/* ---- int 10h: video, on the serial console ----------------------------- */
bios_int10:
	pushw	%bp
	movw	%sp, %bp
	cmpb	$0x0e, %ah
	je	v_tty
	cmpb	$0x0f, %ah
	je	v_mode
	cmpb	$0x03, %ah
	je	v_cursor
	cmpb	$0x4f, %ah
	je	v_vbe
	cmpb	$0x12, %ah
	je	v_alt
	cmpb	$0x02, %ah                 /* set mode, cursor shape, cursor */
	jbe	iret_plain                 /* position: nothing to do */
v_unknown:
	pushw	$0x10
	call	log_unknown
	jmp	iret_cf1
v_tty:	/* AH=0Eh teletype: AL to COM1 */
	call	com1_putc
	jmp	iret_plain
v_mode:	/* AH=0Fh: mode 3, 80 columns, page 0 */
	movw	$0x5003, %ax
	movb	$0, %bh
	jmp	iret_plain
v_cursor: /* AH=03h: row 0 column 0, the usual underline cursor */
	xorw	%dx, %dx
	movw	$0x0607, %cx
	jmp	iret_plain
v_vbe:	/* AH=4Fh: no VESA BIOS */
	movw	$0x014f, %ax
	jmp	iret_plain
v_alt:	/* AH=12h BL=10h: BL unchanged says "no EGA" (CGA/MDA) */
	cmpb	$0x10, %bl
	jne	v_unknown
	jmp	iret_plain

/* ---- int 11h: equipment, int 12h: base memory -------------------------- */
bios_int11:
	pushw	%ds
	pushw	$0
	popw	%ds
	movw	BDA_EQUIPMENT, %ax
	popw	%ds
	iret
bios_int12:
	pushw	%ds
	pushw	$0
	popw	%ds
	movw	BDA_BASE_KB, %ax
	popw	%ds
	iret

/* ---- int 13h: disk -------------------------------------------------------- */
bios_int13:
	pushw	%bp
	movw	%sp, %bp
	cmpb	$0x42, %ah
	je	d_ext_read
	cmpb	$0x02, %ah
	je	d_chs_read
	cmpb	$0x41, %ah
	je	d_check_ext
	cmpb	$0x48, %ah
	je	d_ext_params
	cmpb	$0x08, %ah
	je	d_params
	cmpb	$0x00, %ah
	je	d_reset
	cmpb	$0x43, %ah
	je	d_write
	pushw	$0x13
	call	log_unknown
d_bad:	movb	$DS_BADPARAM, %ah
	jmp	iret_cf1

/* drive_ok: ZF=1 when DL is our drive and the tables hold one. */
drive_ok:
	pushw	%ds
	pushw	$0
	popw	%ds
	call	tables_ok
	jne	1f
	cmpb	$1, TABLES + T_DISK_COUNT
	jne	1f
	cmpb	TABLES + T_DISK_DRIVE, %dl
1:	popw	%ds
	ret

d_reset:
	call	drive_ok
	jne	d_bad
	xorb	%ah, %ah
	jmp	iret_cf0

d_write:	/* AH=43h: the image is read-only */
	call	drive_ok
	jne	d_bad
	movb	$DS_WRITEPROT, %ah
	jmp	iret_cf1

d_params:	/* AH=08h: CH/CL cylinders and sectors, DH heads, DL drives */
	call	drive_ok
	jne	d_bad
	pushw	%ds
	pushw	$0
	popw	%ds
	movw	TABLES + T_DISK_CYLS, %cx
	decw	%cx                        /* highest cylinder */
	xchgb	%cl, %ch
	shlb	$6, %cl                    /* its bits 8-9 in CL bits 6-7 */
	orb	TABLES + T_DISK_SPT, %cl
	movb	TABLES + T_DISK_HEADS, %dh
	decb	%dh                        /* highest head */
	movb	TABLES + T_DISK_COUNT, %dl
	popw	%ds
	xorw	%ax, %ax
	jmp	iret_cf0

d_check_ext:	/* AH=41h BX=55AAh: EDD 1.1, the fixed-disk subset (CX bit 0) */
	cmpw	$0x55aa, %bx
	jne	d_bad
	call	drive_ok
	jne	d_bad
	movw	$0xaa55, %bx
	movb	$0x21, %ah
	movw	$0x0001, %cx
	jmp	iret_cf0

d_ext_params:	/* AH=48h: DS:SI result buffer, EDD 1.x layout (26 bytes) */
	call	drive_ok
	jne	d_bad
	cmpw	$0x1a, (%si)
	jb	d_bad
	pushw	%es
	pushl	%eax
	pushw	$0
	popw	%es
	movw	$0x1a, (%si)
	movw	$0x0002, 2(%si)            /* geometry valid */
	movzwl	%es:TABLES + T_DISK_CYLS, %eax
	movl	%eax, 4(%si)
	movzbl	%es:TABLES + T_DISK_HEADS, %eax
	movl	%eax, 8(%si)
	movzbl	%es:TABLES + T_DISK_SPT, %eax
	movl	%eax, 12(%si)
	movl	%es:TABLES + T_DISK_SECTORS, %eax
	movl	%eax, 16(%si)
	movl	$0, 20(%si)
	movw	$512, 24(%si)
	popl	%eax
	popw	%es
	xorb	%ah, %ah
	jmp	iret_cf0

/*
 * AH=42h extended read: DS:SI disk address packet {u8 size (>= 0x10), u8 0,
 * u16 count (<= 127), u16 offset, u16 segment, u64 LBA}.  On an error the
 * packet's count is set to 0 (nothing transferred).
 */
d_ext_read:
	call	drive_ok
	jne	d_bad
	pushal
	pushw	%es
	movb	$DS_BADPARAM, %bl
	cmpb	$0x10, (%si)
	jb	1f
	movzwl	2(%si), %ecx               /* count */
	movzwl	4(%si), %edi               /* buffer offset */
	movzwl	6(%si), %eax               /* buffer segment */
	shll	$4, %eax
	addl	%eax, %edi
	movl	8(%si), %eax               /* LBA */
	cmpl	$0, 12(%si)
	je	2f
	orl	$-1, %eax                  /* above 2^32: beyond any disk we serve */
2:	call	disk_read
	movw	F_SI(%bp), %si
	testb	%bl, %bl
	jz	disk_done
1:	movw	$0, 2(%si)
	jmp	disk_done

/*
 * AH=02h CHS read: AL sectors, CH cylinder bits 0-7, CL bits 6-7 cylinder
 * bits 8-9 and bits 0-5 sector (from 1), DH head, ES:BX buffer.  AL is the
 * number of sectors read.
 */
d_chs_read:
	call	drive_ok
	jne	d_bad
	pushal
	pushw	%es
	pushw	$0
	popw	%es                        /* ES = 0 for the tables */
	movzbl	F_AL(%bp), %ecx            /* count (a zero count is refused below) */
	movb	$DS_BADPARAM, %bl
	movw	F_CX(%bp), %ax             /* cylinder and sector */
	movb	%al, %dl
	andb	$0x3f, %dl                 /* sector */
	jz	2f
	cmpb	%es:TABLES + T_DISK_SPT, %dl
	ja	2f
	testw	%cx, %cx
	jz	2f
	xchgb	%al, %ah
	shrb	$6, %ah                    /* AX = cylinder */
	cmpw	%es:TABLES + T_DISK_CYLS, %ax
	jae	2f
	movb	F_DX + 1(%bp), %bh         /* head */
	cmpb	%es:TABLES + T_DISK_HEADS, %bh
	jae	2f
	/* LBA = (cylinder * heads + head) * spt + sector - 1 */
	movzbw	%es:TABLES + T_DISK_HEADS, %si
	mulw	%si                        /* DX:AX, at most 1024 * 255 */
	movzbw	%bh, %si
	addw	%si, %ax
	adcw	$0, %dx
	shll	$16, %edx
	movw	%ax, %dx                   /* EDX = cylinder * heads + head */
	movzbl	%es:TABLES + T_DISK_SPT, %eax
	imull	%edx, %eax
	movzbl	F_CX(%bp), %edx
	andb	$0x3f, %dl
	leal	-1(%eax, %edx), %eax
	movzwl	F_ES(%bp), %edi            /* the caller's ES */
	shll	$4, %edi
	movzwl	F_BX(%bp), %edx            /* the caller's BX */
	addl	%edx, %edi
	call	disk_read
	testb	%bl, %bl
	jnz	2f
	movb	F_AL(%bp), %al
	jmp	3f
2:	xorb	%al, %al
3:	movb	%al, F_AL(%bp)
	jmp	disk_done

/* The int 13h reads end here: BL = status, pushal and ES on the stack. */
disk_done:
	movb	%bl, F_AH(%bp)
	popw	%es
	popal
	testb	%ah, %ah
	jnz	iret_cf1
	jmp	iret_cf0

/*
 * disk_read: copy ECX sectors from LBA EAX of the disk to linear EDI.
 * Checks in this order: count 1..127 (else 01h), the sectors lie on the
 * disk (else 04h), the buffer ends at or below 1 MiB (else 09h).  BL = the
 * status.  Clobbers EAX, ECX, EDX, ESI, EDI, ES.
 */
disk_read:
	pushw	$0
	popw	%es
	movb	$DS_BADPARAM, %bl
	jecxz	1f
	cmpl	$DISK_MAX_COUNT, %ecx
	ja	1f
	movb	$DS_NOTFOUND, %bl
	movl	%es:TABLES + T_DISK_SECTORS, %edx
	cmpl	%edx, %eax
	jae	1f
	subl	%eax, %edx                 /* sectors from LBA to the end */
	cmpl	%edx, %ecx
	ja	1f
	movb	$DS_BOUNDARY, %bl
	shll	$9, %ecx                   /* bytes */
	leal	(%edi, %ecx), %edx
	cmpl	$0x100000, %edx
	ja	1f
	shll	$9, %eax
	addl	%es:TABLES + T_DISK_ADDR, %eax
	movl	%eax, %esi
	call	pm_copy
	movb	$DS_OK, %bl
1:	ret

/* ---- int 15h: system services ------------------------------------------------ */
bios_int15:
	pushw	%bp
	movw	%sp, %bp
	cmpw	$0xe820, %ax
	je	s_e820
	cmpw	$0xe801, %ax
	je	s_e801
	cmpb	$0x88, %ah
	je	s_ext
	cmpb	$0x24, %ah
	je	s_a20
	cmpb	$0x86, %ah
	je	s_ok
	cmpb	$0xc0, %ah
	je	s_config
	cmpw	$0xec00, %ax
	je	s_ok
	cmpb	$0x87, %ah
	je	s_move
s_unknown:
	pushw	$0x15
	call	log_unknown
s_unsupported:
	movb	$UNSUPPORTED, %ah
	jmp	iret_cf1
s_unsupported_ds:
	popw	%ds
	jmp	s_unsupported

s_ok:	/* AH=86h wait: returns at once; AX=EC00h target mode: noted */
	xorb	%ah, %ah
	jmp	iret_cf0

s_e820:	/* EAX=E820h EDX="SMAP" EBX=continuation ECX>=20 ES:DI buffer */
	cmpl	$SMAP, %edx
	jne	s_unsupported
	cmpl	$E820_SIZE, %ecx
	jb	s_unsupported
	pushw	%ds
	pushw	$0
	popw	%ds
	call	tables_ok
	jne	s_unsupported_ds
	cmpl	$E820_MAX, %ebx
	jae	s_unsupported_ds
	cmpw	TABLES + T_E820_COUNT, %bx
	jae	s_unsupported_ds
	pushw	%si
	pushw	%di
	imulw	$E820_SIZE, %bx, %si
	addw	$TABLES + T_E820, %si
	movl	$E820_SIZE / 4, %ecx
	cld
	rep movsl
	popw	%di
	popw	%si
	movb	$E820_SIZE, %cl            /* ECX = 20 */
	incl	%ebx
	cmpw	TABLES + T_E820_COUNT, %bx
	jb	1f
	xorl	%ebx, %ebx                 /* that was the last entry */
1:	popw	%ds
	movl	%edx, %eax
	jmp	iret_cf0

s_e801:	/* AX=CX KiB from 1 to 16 MiB, BX=DX 64 KiB blocks above */
	pushw	%ds
	pushw	$0
	popw	%ds
	call	tables_ok
	jne	s_unsupported_ds
	movw	TABLES + T_E801_AX, %ax
	movw	TABLES + T_E801_BX, %bx
	movw	%ax, %cx
	movw	%bx, %dx
	popw	%ds
	jmp	iret_cf0

s_ext:	/* AH=88h: AX KiB above 1 MiB */
	pushw	%ds
	pushw	$0
	popw	%ds
	call	tables_ok
	jne	s_unsupported_ds
	movw	TABLES + T_EXT_KB, %ax
	popw	%ds
	jmp	iret_cf0

s_config:	/* AH=C0h: ES:BX system configuration table */
	movw	$ROM_SEG, %bx
	movw	%bx, %es
	movw	$bios_config, %bx
	xorb	%ah, %ah
	jmp	iret_cf0

s_a20:	/* AX=2400h off, 2401h on, 2402h status, 2403h support: port 92h */
	cmpb	$3, %al
	ja	s_unknown
	je	2f
	cmpb	$2, %al
	je	1f
	pushw	%cx
	movb	%al, %cl
	shlb	$1, %cl                    /* the A20 bit */
	inb	$0x92, %al
	andb	$0xfc, %al
	orb	%cl, %al
	outb	%al, $0x92
	shrb	$1, %cl
	movb	%cl, %al
	popw	%cx
	xorb	%ah, %ah
	jmp	iret_cf0
1:	inb	$0x92, %al
	shrb	$1, %al
	andb	$1, %al
	xorb	%ah, %ah
	jmp	iret_cf0
2:	movw	$0x0002, %bx               /* fast A20 through port 92h */
	xorb	%ah, %ah
	jmp	iret_cf0

/*
 * AH=87h block move: CX words from the source to the destination that the
 * caller's GDT at ES:SI describes (descriptors at 10h and 18h; only their
 * bases are used: the copy runs with our own flat segments).
 */
s_move:
	pushal
	movzwl	%cx, %ecx
	shll	$1, %ecx
	movb	%es:0x1f(%si), %al
	shll	$24, %eax
	movl	%es:0x1a(%si), %edi
	andl	$0x00ffffff, %edi
	orl	%eax, %edi
	movb	%es:0x17(%si), %al
	shll	$24, %eax
	movl	%es:0x12(%si), %esi
	andl	$0x00ffffff, %esi
	orl	%eax, %esi
	call	pm_copy
	popal
	xorb	%ah, %ah
	jmp	iret_cf0

/* ---- int 16h: keyboard: there is none ---------------------------------------- */
bios_int16:
	pushw	%bp
	movw	%sp, %bp
	testb	$0xef, %ah
	jz	k_read                     /* 00h, 10h */
	cmpb	$0x01, %ah
	je	k_check
	cmpb	$0x11, %ah
	je	k_check
	cmpb	$0x02, %ah
	je	k_shift
	cmpb	$0x12, %ah
	je	k_shift
	cmpb	$0x03, %ah                 /* typematic rate: nothing to set */
	je	iret_plain
	pushw	$0x16
	call	log_unknown
	jmp	iret_cf1
k_read:	/* wait for a key: no key will come; AX=0 rather than hang */
	xorw	%ax, %ax
	jmp	iret_plain
k_check: /* ZF=1: no key */
	orb	$0x40, F_FLAGS(%bp)
	jmp	iret_plain
k_shift: /* no shift keys down */
	xorb	%al, %al
	cmpb	$0x12, %ah
	jne	iret_plain
	xorb	%ah, %ah
	jmp	iret_plain

/* ---- int 19h: bootstrap: nothing to boot ----------------------------------- */
bios_int19:
	movw	$bios_msg19, %si
1:	movb	%cs:(%si), %al
	testb	%al, %al
	jz	2f
	call	com1_putc
	incw	%si
	jmp	1b
2:	movb	$EXIT_BOOTSTRAP, %al
	outb	%al, $DEBUG_EXIT
3:	cli
	hlt
	jmp	3b

/* ---- int 1Ah: time: the tick count int 08h keeps, and the RTC (BCD,
 * 24-hour, as PCs and QEMU keep it) ----------------------------------------- */
bios_int1a:
	pushw	%bp
	movw	%sp, %bp
	cmpb	$0x00, %ah
	je	t_ticks
	cmpb	$0x01, %ah
	je	t_set_ticks
	cmpb	$0x02, %ah
	je	t_time
	cmpb	$0x04, %ah
	je	t_date
	pushw	$0x1a
	call	log_unknown
	jmp	iret_cf1

/* cmos_read: AL = RTC/CMOS register AL. */
cmos_read:
	outb	%al, $0x70
	inb	$0x71, %al
	ret

/* rtc_wait: wait until no update is in progress; CF=1 if it never ends.
 * Clobbers AX. */
rtc_wait:
	pushw	%cx
	movw	$0x4000, %cx
1:	movb	$0x0a, %al
	call	cmos_read
	testb	$0x80, %al
	jz	2f                         /* CF=0 */
	loop	1b
	stc
2:	popw	%cx
	ret

t_time:	/* AH=02h: CH hours, CL minutes, DH seconds, DL daylight saving */
	pushw	%ax
	call	rtc_wait
	jc	t_busy
	movb	$0x04, %al
	call	cmos_read
	movb	%al, %ch
	movb	$0x02, %al
	call	cmos_read
	movb	%al, %cl
	movb	$0x00, %al
	call	cmos_read
	movb	%al, %dh
	movb	$0x0b, %al
	call	cmos_read
	andb	$0x01, %al
	movb	%al, %dl
	popw	%ax
	xorb	%ah, %ah
	jmp	iret_cf0
t_busy:
	popw	%ax
	jmp	iret_cf1

t_date:	/* AH=04h: CH century, CL year, DH month, DL day */
	pushw	%ax
	call	rtc_wait
	jc	t_busy
	movb	$0x32, %al
	call	cmos_read
	movb	%al, %ch
	movb	$0x09, %al
	call	cmos_read
	movb	%al, %cl
	movb	$0x08, %al
	call	cmos_read
	movb	%al, %dh
	movb	$0x07, %al
	call	cmos_read
	movb	%al, %dl
	popw	%ax
	xorb	%ah, %ah
	jmp	iret_cf0

/* AH=00h: CX:DX ticks since midnight, AL the midnight flag, which the
 * call clears.  Interrupts are off in the handler: the count cannot
 * change between its halves. */
t_ticks:
	pushw	%ds
	pushw	$0
	popw	%ds
	movw	BDA_TICKS, %dx
	movw	BDA_TICKS + 2, %cx
	movb	BDA_MIDNIGHT, %al
	movb	$0, BDA_MIDNIGHT
	popw	%ds
	jmp	iret_cf0

/* AH=01h: the count from CX:DX, the midnight flag cleared, AH=0. */
t_set_ticks:
	pushw	%ds
	pushw	$0
	popw	%ds
	movw	%dx, BDA_TICKS
	movw	%cx, BDA_TICKS + 2
	movb	$0, BDA_MIDNIGHT
	popw	%ds
	xorb	%ah, %ah
	jmp	iret_cf0

/* ---- hardware interrupts -------------------------------------------------------- */

/* IRQ 0, int 08h: one more tick since midnight (0 again after 0x1800B0,
 * with the midnight flag set), int 1Ch (an iret unless someone hooks it),
 * then the EOI. */
bios_irq0:
	pushw	%ds
	pushw	$0
	popw	%ds
	incl	BDA_TICKS
	cmpl	$TICKS_PER_DAY, BDA_TICKS
	jb	1f
	movl	$0, BDA_TICKS
	movb	$1, BDA_MIDNIGHT
1:	popw	%ds
	int	$0x1c
	pushw	%ax
	movb	$0x20, %al
	outb	%al, $0x20
	popw	%ax
	iret

/* IRQ 1, int 09h: the keyboard controller's byte is read (which frees its
 * output buffer) and dropped: int 16h reports no keys. */
bios_irq1:
	pushw	%ax
	inb	$0x60, %al
	movb	$0x20, %al
	outb	%al, $0x20
	popw	%ax
	iret

/* The other IRQs: acknowledge and return. */
bios_irq_master:
	pushw	%ax
	movb	$0x20, %al
	outb	%al, $0x20
	popw	%ax
	iret
bios_irq_slave:
	pushw	%ax
	movb	$0x20, %al
	outb	%al, $0xa0
	outb	%al, $0x20
	popw	%ax
	iret

	.globl bios_code_end
bios_code_end:

/* ---- data -------------------------------------------------------------- */
	.balign 8
bios_gdt:
	.quad	0
	.quad	0x00009b0f0000ffff         /* 0x08: 16-bit code, base 0xF0000, accessed */
	.quad	0x00cf93000000ffff         /* 0x10: flat 4 GiB data, accessed */
	.quad	0x000093000000ffff         /* 0x18: 16-bit data, base 0, 64 KiB */
bios_gdt_end:
bios_gdt_pointer:
	.word	bios_gdt_end - bios_gdt - 1
	.long	ROM_BASE + bios_gdt

/* int 15h AH=C0h: an AT (model FCh); second 8259, RTC, EBDA allocated */
bios_config:
	.word	8
	.byte	0xfc, 0x00, 0x00
	.byte	0x64, 0x00, 0x00, 0x00, 0x00

/* 8259 initialisation words after ICW1: master, then slave */
bios_pic_init:
	.byte	0x08, 0x04, 0x01, PIC_MASTER_MASK
	.byte	0x70, 0x02, 0x01, PIC_SLAVE_MASK

bios_msg19:
	.asciz	"kvmboot bios: int 19h: no boot device, halting\r\n"

/*
 * ACPI's root pointer (RSDP), in the F segment where the standard search
 * finds it (16-byte aligned in 0xE0000-0xFFFFF; some programs look only
 * from 0xF0000).  Zero in the image: the backend writes the one the loader
 * built for its machine (loader.ACPITables) into its copy of the image, as
 * a PC's firmware builds it in its shadowed F segment.  firmware.ld puts it
 * at RSDP_SLOT.
 */
	.set RSDP_SLOT,      0xff80
	.set RSDP_SIZE,      36
	.section .rsdp, "a"
	.space	RSDP_SIZE

/*
 * Where the BIOS lies in the image, for the Go tests (bios.go): the code
 * span (every byte of it 16-bit code), bios_init, and the tables version
 * the handlers read.  firmware.ld puts it at 0xFFC0.
 */
	.section .bioslayout, "a"
	.ascii	"KVMBBIOS"
	.word	bios_code_start, bios_code_end
	.word	bios_init
	.word	TABLES_VERSION
