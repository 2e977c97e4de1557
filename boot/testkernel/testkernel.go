// Package testkernel holds kvmboot's own i386 test kernel and a parser for
// the report it prints on its serial console.
//
// The kernel (sources in e2e/testkernel, built by scripts/build-testkernel.sh)
// is a Multiboot 1 ELF32 linked at LinkBase with `ld --emit-relocs`, so a
// loader can put it elsewhere and relocate it. It checks what its boot loader
// did: Multiboot magic and information, the R_386_32 relocations (pointers in
// .text, .data and .rodata must point into the loaded image and find what the
// linker put there), relocations against absolute symbols (which must NOT be
// applied), a zeroed .bss, boot information and modules outside the image, and
// the image inside available RAM. It prints "kt: " lines (see ParseReport),
// runs the kt.* actions from its command line, and writes its exit status to
// the debug-exit port 0xf4.
//
// Command-line actions, run in order after the report:
//
//	kt.exit=N     exit status N (decimal, 0-255) instead of 0 (pass) or 1 (fail)
//	kt.poke=ADDR  32-bit store of 0xDEADBEEF to physical ADDR (0x hex), then "kt: poke ADDR done"
//	kt.peek=ADDR  32-bit load from ADDR, then "kt: peek ADDR=VALUE"
//	kt.flood=N    N characters (decimal, up to 4 GiB) of a 62-character cycle in
//	              lines of 64 (newlines not counted), then "kt: flood done"
//	kt.ports      outb/inb to unassigned ports 0x100-0x11f and 0x2e0-0x2e3, then "kt: ports done"
//	kt.com2=N     N bytes of malformed frames and garbage on COM2 (0x2f8), then "kt: com2 done"
//	kt.panic      print PanicMessage and hang
//	kt.hang       cli; hlt forever
//	kt.spin       cli; jmp . forever
//	kt.triple     load an empty IDT and execute ud2: triple fault
//	kt.reset      write 0xFE to port 0x64 (keyboard controller reset), then hang
//
// SMP mode, before the result line whatever the words' order:
//
//	kt.smp           start every application processor (AP) the MP table lists with
//	                 INIT-SIPI-SIPI, from start-up code the kernel copies to a free page
//	                 below 1 MiB; each AP prints its APIC ID ("kt: ap apic=N") and counts
//	                 itself in; the kernel waits for them all (5 s of the PIT) and fails
//	                 unless exactly the table's APs came (Report.SMP). Then the APs halt.
//	kt.ap.spin       with kt.smp: the AP with the highest APIC ID, once the result line
//	                 is out, spins with interrupts off instead
//	kt.ap.triple     likewise, triple-faults
//	kt.ap.poke=ADDR  likewise, stores 0xDEADBEEF at physical ADDR, then halts
//
// A malformed or unknown kt.* word is a reported failure ("kt: fail cmdline: ...").
package testkernel

import _ "embed" // for ELF

// ELF is the test kernel: an ELF32 i386 ET_EXEC Multiboot kernel with its
// relocations (.rel.text, .rel.rodata, .rel.data) and symbol table.
//
//go:embed testkernel.elf
var ELF []byte

// FileName is the test kernel's file name: what its path is when a loader
// needs one (a Multiboot command line starts with it).
const FileName = "testkernel.elf"

// RealMode is the kernel's real-mode part (e2e/testkernel/realmode.S): raw
// 16-bit code entered by a far call at offset 0, which asks int 15h E820
// for the memory map and leaves it at RealModeResults for the 32-bit
// kernel. `kvmboot mkelf --realmode` puts it into the kernel's note, with
// RealModeLocate as the word that learns where the part was placed.
//
//go:embed realmode.bin
var RealMode []byte

// The real-mode part's layout (e2e/testkernel/realmode.h).
const (
	RealModeResults = 0x100
	RealModeSize    = RealModeResults + 8 + 32*20
	// RealModeLocateSymbol is the kernel's u32 that a loader sets to the
	// part's physical address.
	RealModeLocateSymbol = "kt_realmode_addr"
)

const (
	// LinkBase is the address the kernel is linked at (physical = virtual).
	LinkBase = 0x1000000

	// Version is the report version in the hello line that ParseReport accepts.
	Version = "1"

	// ExitPass and ExitFail are the statuses the kernel writes to port 0xf4
	// when no kt.exit= is given.
	ExitPass = 0
	ExitFail = 1

	// PanicMessage is the line kt.panic prints (Linux's wording, so that
	// panic detection made for Linux sees it too).
	PanicMessage = "Kernel panic - not syncing: kvmboot test kernel asked to panic"
)
