//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	exitPort  = 0xf4
	chunkSize = 1 << 20
	maxErrors = 8
)

// console is where the report goes: the kernel's fd 1 (/dev/console from
// the initramfs) when it is open, else /dev/console or /dev/ttyS0 from
// devtmpfs.
var (
	consoleMu sync.Mutex
	console   *os.File
)

func say(format string, args ...any) {
	line := Prefix + fmt.Sprintf(format, args...) + "\n"
	consoleMu.Lock()
	defer consoleMu.Unlock()
	if console == nil {
		console = openConsole()
	}
	console.WriteString(line) // one write per line: lines do not interleave
}

func openConsole() *os.File {
	var st unix.Stat_t
	if unix.Fstat(1, &st) == nil {
		return os.Stdout
	}
	for _, p := range []string{"/dev/console", "/dev/ttyS0"} {
		if f, err := os.OpenFile(p, os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
			return f
		}
	}
	return os.Stdout
}

// drain waits until the console's output has left the UART, so the last
// lines are not lost when the VM ends.
func drain() {
	consoleMu.Lock()
	defer consoleMu.Unlock()
	if console != nil {
		unix.IoctlSetInt(int(console.Fd()), unix.TCSBRK, 1) // tcdrain
	}
}

var exitOnce sync.Once

// exit ends the VM with status: one byte to port 0xf4 through /dev/port;
// if the VM is still there (no debug-exit device), say why ("gi: poweroff
// ...") and power off; if that fails too, init exits and the kernel panics,
// which also ends the run. It never returns.
func exit(status int) {
	exitOnce.Do(func() {
		say("exit %d", status)
		drain()
		err := writePort(exitPort, byte(status))
		if err == nil {
			err = errors.New("the write returned: no debug-exit device at 0xf4")
		}
		say("poweroff exit port: %v", err)
		drain()
		unix.Sync()
		err = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		say("error power off: %v; exiting init (the kernel will panic)", err)
		drain()
		os.Exit(status)
	})
	select {} // another goroutine is exiting
}

func writePort(port int64, v byte) error {
	f, err := os.OpenFile("/dev/port", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(port, 0); err != nil {
		return err
	}
	_, err = f.Write([]byte{v})
	return err
}

func fail(format string, args ...any) {
	say("error "+format, args...)
	exit(StatusError)
}

func main() {
	say("hello")
	defer func() {
		if r := recover(); r != nil {
			fail("panic: %v: %s", r, strings.ReplaceAll(string(debug.Stack()), "\n", " | "))
		}
	}()
	// Until the options are read, a default watchdog.
	watchdog := time.AfterFunc(DefaultOptions().Timeout, func() { fail("watchdog: no result after %v", DefaultOptions().Timeout) })

	if err := mountAll(); err != nil {
		fail("%v", err)
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		fail("%v", err)
	}
	text := strings.TrimRight(string(cmdline), "\n")
	say("cmdline %s", text)
	opts, err := ParseOptions(text)
	if err != nil {
		fail("%v", err)
	}
	watchdog.Stop()
	time.AfterFunc(opts.Timeout, func() { fail("watchdog: no result after %v (gi.timeout)", opts.Timeout) })

	iomem, err := os.ReadFile("/proc/iomem")
	if err != nil {
		fail("%v", err)
	}
	entries, err := ParseIomem(string(iomem))
	if err != nil {
		fail("%v", err)
	}
	for _, l := range IomemLines(entries) {
		say("%s", l)
	}
	reportACPI()
	online, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		fail("%v", err)
	}
	say("cpus online %s", strings.TrimSpace(string(online)))
	tainted, err := os.ReadFile("/proc/sys/kernel/tainted")
	if err != nil {
		fail("%v", err)
	}
	say("tainted %s", strings.TrimSpace(string(tainted)))

	if opts.Peek != 0 {
		v, err := peek(opts.Peek)
		if err != nil {
			fail("peek %#x: %v", opts.Peek, err)
		}
		say("peek %#x=%#x", opts.Peek, v)
	}

	mi, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		fail("%v", err)
	}
	meminfo, err := ParseMeminfo(string(mi))
	if err != nil {
		fail("%v", err)
	}
	say("memtotal %d", meminfo["MemTotal"])
	avail, ok := meminfo["MemAvailable"]
	if !ok {
		avail = meminfo["MemFree"]
	}
	say("memavailable %d", avail)

	pass := true
	if opts.MemtestPercent == 0 {
		say("memtest skipped")
	} else {
		n := MemtestBytes(avail, opts.MemtestPercent, chunkSize)
		start := time.Now()
		tested, errs, err := memtest(n)
		if err != nil {
			fail("memtest: %v", err)
		}
		say("memtest bytes=%d errors=%d ms=%d", tested, errs, time.Since(start).Milliseconds())
		if errs > 0 || tested == 0 {
			pass = false
		}
	}
	if pass {
		say("result pass")
	} else {
		say("result fail")
	}
	if opts.Panic {
		say("exit init (gi.panic=1)")
		drain()
		os.Exit(1)
	}
	exit(ExitStatus(opts, pass))
}

// reportACPI prints the ACPI tables the kernel found and the kernel log's
// complaints about them.
func reportACPI() {
	names := []string{"none"}
	if entries, err := os.ReadDir("/sys/firmware/acpi/tables"); err == nil && len(entries) > 0 {
		names = ACPITableNames(entries)
	}
	say("acpi tables %s", strings.Join(names, " "))
	n, err := unix.Klogctl(unix.SYSLOG_ACTION_SIZE_BUFFER, nil)
	if err != nil {
		fail("kernel log size: %v", err)
	}
	buf := make([]byte, n)
	if n, err = unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, buf); err != nil {
		fail("kernel log: %v", err)
	}
	problems := ACPIProblems(string(buf[:n]))
	for _, p := range problems[:min(len(problems), MaxACPIProblemLines)] {
		say("acpi problem %s", p)
	}
	say("acpi problems %d", len(problems))
}

func mountAll() error {
	for _, m := range []struct{ fs, dir string }{
		{"proc", "/proc"},
		{"sysfs", "/sys"},
		{"devtmpfs", "/dev"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return err
		}
		err := unix.Mount(m.fs, m.dir, m.fs, unix.MS_NOSUID|unix.MS_NOEXEC, "")
		if err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s on %s: %v", m.fs, m.dir, err)
		}
	}
	return nil
}

// memtest maps up to n bytes in 1 MiB chunks outside the Go heap, writes
// Pattern over all of them, then reads them all back. It stops mapping early
// when the kernel refuses more memory and reports what it tested.
func memtest(n uint64) (tested, errs uint64, err error) {
	var chunks [][]byte
	defer func() {
		for _, c := range chunks {
			unix.Munmap(c)
		}
	}()
	for uint64(len(chunks))*chunkSize < n {
		c, err := unix.Mmap(-1, 0, chunkSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
		if err != nil {
			if len(chunks) == 0 {
				return 0, 0, fmt.Errorf("mmap: %v", err)
			}
			say("memtest mapped %d of %d bytes: %v", uint64(len(chunks))*chunkSize, n, err)
			break
		}
		chunks = append(chunks, c)
	}
	for _, c := range chunks {
		w := words(c)
		base := uint32(uintptr(unsafe.Pointer(&w[0])))
		for i := range w {
			w[i] = Pattern(base + uint32(i)*4)
		}
	}
	for _, c := range chunks {
		w := words(c)
		base := uint32(uintptr(unsafe.Pointer(&w[0])))
		for i := range w {
			a := base + uint32(i)*4
			if got, want := w[i], Pattern(a); got != want {
				if errs < maxErrors {
					say("memtest error addr=%#x got=%#x want=%#x", a, got, want)
				}
				errs++
			}
		}
	}
	return uint64(len(chunks)) * chunkSize, errs, nil
}

func words(b []byte) []uint32 {
	return unsafe.Slice((*uint32)(unsafe.Pointer(&b[0])), len(b)/4)
}

// peek reads the 32-bit word at a physical address through /dev/mem.
func peek(addr uint64) (uint32, error) {
	f, err := os.Open("/dev/mem")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var b [4]byte
	if _, err := f.ReadAt(b[:], int64(addr)); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b[:]), nil
}
