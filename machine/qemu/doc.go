// Package qemu runs kvmboot's plans under qemu-system-i386, started as a
// child process: the second machine backend beside machine/kvm, with the
// same outcomes, exit statuses and Result fields.
//
// # Our plan under QEMU (Backend)
//
// The guest runs exactly the bytes it runs under our KVM machine: the
// firmware image realmode.Firmware goes to QEMU as -bios (a 64 KiB image,
// mapped below 1 MiB and below 4 GiB, entered at the reset vector), and
// guest RAM is a file in /dev/shm (-object memory-backend-file,share=on)
// that kvmboot maps too: file offset = guest physical address, since
// QEMU's PCs keep up to 3.5 GiB below 4 GiB and kvmboot allows at most
// 3 GiB. kvmboot writes every placement of the plan into that file itself
// (pwrite: no copy through a loader file, no fault per page); QEMU loads
// nothing into RAM (the firmware is a ROM, and there is no -kernel), so
// the file can be written while QEMU starts.
//
// That is what Start (machine.Starter) does: the firmware and its ACPI
// tables depend only on the memory size and the bad RAM (machine.Shape),
// so QEMU starts, paused (-S), before the kernel is read, and its
// start-up (its shared libraries, machine init: about 60-120 ms of CPU
// here) overlaps the planning. A goroutine takes QEMU's QMP connection
// and waits for its answer (after machine init); Run writes the plan, then
// sends cont. The files live in a private folder (mode 0700) and the RAM
// file in /dev/shm; both are removed as soon as QEMU first answers (it has
// opened them all by then), so a kvmboot killed by SIGKILL from then on
// leaves nothing behind. QEMU's malloc asks for huge pages
// (GLIBC_TUNABLES=glibc.malloc.hugetlb=1), which saves a third of the
// page faults of its start-up.
//
// The machine is QEMU's PC (-machine pc,smbus=off,vmport=off, no
// TPR-patching ROM): i440FX, PIIX3, the PIIX4's ACPI PM block (which our
// firmware places at 0x600 and switches to ACPI mode), HPET, 8042, PIT,
// RTC, serial ports. The backend writes ACPI tables describing it
// (PCPlatform, machine.ForPlatform). With Minimal it is the ISA PC
// (isapc): no PCI, I/O APIC, HPET or PM block, no ACPI tables, and a few
// ms cheaper to start and stop (BenchmarkQEMUExitAtEntry); Linux boots
// there but prints "PCI: Fatal". Debian's qemu-system-i386 is a shell
// script that runs /usr/libexec/qemu-system-i386; kvmboot runs that
// binary directly.
//
// What the guest does becomes an outcome this way:
//
//   - isa-debug-exit at port 0xf4 makes QEMU exit with (v<<1)|1; the backend
//     maps the status back to v. Only the low 7 bits of v survive the exit
//     status (a guest writing 0x80 looks like 0), so guests should keep to
//     0..123 as DESIGN.md §3 says. The stub's failure value 125 arrives as
//     251; the stub's status and failed check are then read from the
//     parameter block in the shared RAM file.
//   - -no-reboot -no-shutdown turn a reset or power-off into a QMP SHUTDOWN
//     event with the guest paused, so that "info registers" (QMP
//     human-monitor-command) still shows the CPU where it stopped. QEMU 7.2
//     reports a triple fault and a reset request (keyboard controller 0xfe,
//     port 0x92, 0xcf9) alike, as reason "guest-reset". The log tells them
//     apart: under TCG, -d cpu_reset prints "Triple fault"; under KVM the
//     trace event kvm_run_exit shows reason 8 (KVM_EXIT_SHUTDOWN). The trace
//     events pckbd_kbd_write_command and port92_write name the reset port.
//   - A KVM emulation failure pauses QEMU (STOP event, status
//     internal-error): a crash, with registers.
//   - On a timeout kvmboot stops the guest through QMP and quits QEMU; when
//     the console sees a panic pattern or the --expect match, QEMU is
//     killed at once. The console arrives through a pipe, so QEMU's exit or
//     a reset may reach kvmboot before the line the guest printed first: a
//     console verdict found once the pipe is drained wins over them, as it
//     does on our KVM machine. QEMU runs with Pdeathsig SIGKILL (from a
//     thread kept alive until QEMU exits), so it dies with kvmboot.
//
// # Bad RAM, faulty RAM and tracing: kvmboot's TCG plugin
//
// Under TCG, our plan runs with kvmboot's plugin (package plugin, loaded
// from a memfd with -plugin) whenever something is watched or traced;
// with nothing to watch it is not loaded. The plugin protects (mprotect)
// the pages of QEMU's own mapping of the RAM file that hold watched bytes,
// so only accesses to them trap: SIGSEGV on the vCPU thread, before the
// access. It reports each over a socketpair and single-steps the host
// instruction with the page open, then reports again (tcg.go answers):
//
//   - A bad-RAM access stops the vCPU before it happens. kvmboot reads the
//     registers through QMP (QEMU keeps them current in its CPU state
//     before every guest memory access; only EIP lags), reads the code of
//     the block that runs (a block callback keeps its address), and names
//     the instruction whose memory operand is there, decoded in the
//     vCPU's mode. Under the stop policy the run ends there: the access
//     never happens. Under the record policy bad RAM behaves as on our KVM
//     machine: it keeps what it held (a write is undone), a read sees
//     every bit flipped.
//   - Faulty RAM (Options.Faulty) holds what reads return: machine/faults
//     materializes the models when the guest starts and applies them
//     after each write (Set.Wrote), while the vCPU waits; reads of flip
//     ranges are changed for the one access (Set.FlipRead).
//   - --trace: for each block QEMU translates, kvmboot reads the vCPU's
//     mode and CS through QMP (current at translation) and has the plugin
//     report each instruction as it runs, printed as our KVM machine
//     prints it (machine.TraceLine).
//
// Without the plugin (QEMU's KVM accelerator, the reference run, a QEMU
// that cannot load plugins, which the run notes once), each bad range
// (minus the placements the loader put there itself) is filled with a
// canary pattern in the shared RAM file before QEMU starts, and checked
// while the guest runs (every 25 ms, less often when the ranges are large)
// and once more at the end. A changed byte is a guest write to bad RAM: a
// machine.BadAccess with the first changed address, the span of changed
// bytes as its size, Write set and no instruction. Reads of bad RAM cannot
// be seen this way, and a write of the very value the canary held goes
// unnoticed. With the stop policy a write ends the run as a crash, also
// when the guest wrote its exit status before the final check found it.
// Faulty RAM and tracing need the plugin.
//
// # The reference run (Backend with Kernel set)
//
// --vmm=qemu-kernel boots the same kernel QEMU's own way: SeaBIOS, -kernel,
// -append, Multiboot modules as -initrd "a args,b args" (a Linux initrd as
// -initrd), bad RAM as memmap=SIZE$ADDR on a Linux command line. QEMU's
// Multiboot loader has no way to pass bad RAM to the kernel: the run notes
// so. The console, debug-exit, QMP and canary watch work as above.
//
// QEMU is a runtime dependency only: without qemu-system-i386 Run returns an
// error wrapping ErrNoQEMU.
package qemu
