package lab

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"kvmboot/e2e/initramfs"
	"kvmboot/machine/qemu"
)

//go:embed init.sh
var initScript []byte

// Outer is the outer VM's make-up.
type Outer struct {
	QEMU   string // qemu-system-x86_64
	CPU    string // -cpu: a model with SVM and nested paging
	Memory string // -m
	CPUs   int    // -smp; 0 means one
	Kernel string // Debian's amd64 vmlinuz
	// Append is added to the outer kernel's command line.
	Append string
}

// DefaultCPU is the outer CPU: QEMU's generic 64-bit model with AMD SVM
// and nested paging, which TCG emulates.
const DefaultCPU = "qemu64,+svm,+npt"

// args is the outer VM's QEMU command line. The three sockets are ours:
// QEMU connects to each as it starts.
func (o Outer) args(initrd, console, results, monitor string) []string {
	cmdline := "console=ttyS0 quiet panic=-1 rdinit=/init"
	if o.Append != "" {
		cmdline += " " + o.Append
	}
	return []string{
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-accel", "tcg", "-cpu", o.CPU, "-m", o.Memory, "-smp", strconv.Itoa(max(o.CPUs, 1)),
		"-kernel", o.Kernel, "-initrd", initrd, "-append", cmdline,
		"-chardev", "socket,id=console,path=" + console, "-serial", "chardev:console",
		"-chardev", "socket,id=results,path=" + results, "-serial", "chardev:results",
		"-chardev", "socket,id=monitor,path=" + monitor, "-mon", "chardev=monitor,mode=control",
	}
}

// BaseArchive is the outer VM's initramfs before the job: /init, busybox,
// the KVM modules in cacheDir (scripts/fetch-lab.sh) and extra (binaries,
// fixtures), uncompressed: the outer kernel unpacks it without
// decompressing under TCG.
func BaseArchive(cacheDir string, extra []initramfs.File) ([]byte, error) {
	busybox, err := os.ReadFile(filepath.Join(cacheDir, "busybox"))
	if err != nil {
		return nil, fmt.Errorf("lab: %w (scripts/fetch-lab.sh fetches it)", err)
	}
	modDir := filepath.Join(cacheDir, "kernel", "modules")
	order, err := os.ReadFile(filepath.Join(modDir, "order"))
	if err != nil {
		return nil, fmt.Errorf("lab: %w (scripts/fetch-lab.sh fetches the modules)", err)
	}
	files := []initramfs.File{
		{Name: "init", Perm: 0o755, Data: initScript},
		{Name: "bin/busybox", Perm: 0o755, Data: busybox},
		{Name: "lab/modules/order", Perm: 0o644, Data: order},
	}
	for _, m := range strings.Fields(string(order)) {
		ko, err := os.ReadFile(filepath.Join(modDir, m))
		if err != nil {
			return nil, fmt.Errorf("lab: %w", err)
		}
		files = append(files, initramfs.File{Name: "lab/modules/" + m, Perm: 0o644, Data: ko})
	}
	recs, err := initramfs.Records(initramfs.Base(), append(files, extra...))
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := initramfs.Write(&buf, recs); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Lab boots outer VMs to run jobs.
type Lab struct {
	Outer Outer
	Base  []byte // BaseArchive
	Dir   string // each attempt's sockets and console log go in a folder here
	// Notes receives the lab's own lines: boots, freezes, retries.
	Notes func(string)
	// MaxFreezes ends a run after this many outer VMs froze or stalled.
	MaxFreezes int
	// Timeout bounds one attempt.
	Timeout time.Duration
}

// The heartbeat's limits: silence after which the monitor is asked
// whether the outer CPU froze, and after which the attempt is given up
// whatever the CPU shows; the outer kernel's boot to its first heartbeat.
const (
	checkAfter = 4 * time.Second
	stallAfter = 90 * time.Second
	bootLimit  = 180 * time.Second
)

// Freeze is an attempt the outer VM ended without finishing its job.
type Freeze struct {
	Kind string // "frozen": halted with a deliverable interrupt; "stalled": no heartbeat; "ended": QEMU exited early
	// Step and Test were running (Test for test steps, when known).
	Step     int
	Detail   string
	LastBeat string // the last heartbeat line
	After    time.Duration
	Log      string // the attempt's console log
}

func (f Freeze) String() string {
	return fmt.Sprintf("outer VM %s after %.0f s (step %d): %s; last heartbeat %q; console log %s", f.Kind, f.After.Seconds(), f.Step, f.Detail, f.LastBeat, f.Log)
}

// Report is how a run went.
type Report struct {
	Attempts int
	Freezes  []Freeze
	// Thawed counts freezes that a byte on the outer VM's serial port
	// ended (thaw): the run went on in the same outer VM.
	Thawed int
}

// Run runs job to its end: an attempt that the outer VM ends early goes
// on in a fresh one, from the step (and test) that was running.
func (l *Lab) Run(ctx context.Context, job Job, col *Collector) (*Report, error) {
	rep := &Report{}
	for {
		from, skip := col.Remaining()
		if from == len(job.Steps) {
			return rep, nil
		}
		rep.Attempts++
		fr, err := l.attempt(ctx, job, col, from, skip, rep)
		if err != nil {
			return rep, err
		}
		if fr == nil {
			continue
		}
		col.Abort()
		rep.Freezes = append(rep.Freezes, *fr)
		l.Notes(fmt.Sprintf("attempt %d: %s", rep.Attempts, fr))
		if len(rep.Freezes) >= l.MaxFreezes {
			return rep, fmt.Errorf("lab: the outer VM failed %d times; giving up", len(rep.Freezes))
		}
		l.Notes("retrying in a fresh outer VM")
	}
}

// attempt boots one outer VM for the job's steps from index from on. It
// returns nil when the job script ran to its end, a Freeze when the outer
// VM froze, stalled or ended early, or an error when it could not start.
func (l *Lab) attempt(ctx context.Context, job Job, col *Collector, from int, skip []string, rep *Report) (*Freeze, error) {
	n := rep.Attempts
	dir, err := os.MkdirTemp(l.Dir, fmt.Sprintf("attempt%d-", n))
	if err != nil {
		return nil, err
	}
	defer func() { // keep the console log, drop the rest
		for _, f := range []string{"initrd", "console.sock", "results.sock", "monitor.sock"} {
			os.Remove(filepath.Join(dir, f))
		}
	}()
	var jobArchive bytes.Buffer
	recs, err := initramfs.Records(nil, job.archiveFiles(from, skip))
	if err == nil {
		err = initramfs.Write(&jobArchive, recs)
	}
	if err != nil {
		return nil, err
	}
	initrd := filepath.Join(dir, "initrd")
	if err := os.WriteFile(initrd, append(l.Base[:len(l.Base):len(l.Base)], jobArchive.Bytes()...), 0o600); err != nil {
		return nil, err
	}
	socks := map[string]*net.UnixListener{}
	for _, name := range []string{"console", "results", "monitor"} {
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, name+".sock"), Net: "unix"})
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		socks[name] = ln
	}
	cmd := exec.Command(l.Outer.QEMU, l.Outer.args(initrd, socks["console"].Addr().String(), socks["results"].Addr().String(), socks["monitor"].Addr().String())...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if f, err := os.Create(filepath.Join(dir, "qemu.log")); err == nil { // kept: QEMU's own last words
		defer f.Close()
		cmd.Stderr = io.MultiWriter(&stderr, f)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("lab: starting %s: %w", l.Outer.QEMU, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	start := time.Now()
	l.Notes(fmt.Sprintf("attempt %d: outer VM started (pid %d), steps %d-%d", n, cmd.Process.Pid, from, len(job.Steps)-1))

	conns := map[string]net.Conn{}
	for name, ln := range socks {
		ln.SetDeadline(time.Now().Add(30 * time.Second))
		c, err := ln.Accept()
		if err != nil {
			return nil, fmt.Errorf("lab: QEMU did not connect its %s socket: %v: %s", name, err, strings.TrimSpace(stderr.String()))
		}
		defer c.Close()
		conns[name] = c
	}
	mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	mon, err := qemu.NewMonitor(mctx, conns["monitor"])
	cancel()
	if err != nil {
		return nil, fmt.Errorf("lab: outer VM's monitor: %w", err)
	}
	defer mon.Close()

	logPath := filepath.Join(dir, "console.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	var beat struct {
		sync.Mutex
		at   time.Time
		line string
	}
	beat.at = start
	go scanLines(conns["console"], func(s string) {
		fmt.Fprintln(logFile, s)
		if i := strings.Index(s, heartbeat); i >= 0 {
			beat.Lock()
			beat.at, beat.line = time.Now(), s[i:]
			beat.Unlock()
		}
	})
	results := make(chan string, 256)
	go func() {
		scanLines(conns["results"], func(s string) { results <- s })
		close(results)
	}()

	freeze := func(kind, detail string) *Freeze {
		beat.Lock()
		defer beat.Unlock()
		return &Freeze{Kind: kind, Step: col.step, Detail: detail, LastBeat: beat.line, After: time.Since(start), Log: logPath}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	deadline := time.After(l.Timeout)
	frozenChecks, done, beaten := 0, false, false
	thawing := "" // a frozen CPU's state, while a byte sent to wake it is on its way
	for {
		select {
		case s, ok := <-results:
			if !ok {
				results = nil
				continue
			}
			if strings.Contains(s, markerPrefix+markerDone) {
				done = true
			}
			col.Line(s)
		case <-exited:
			for results != nil { // what QEMU wrote before it ended
				s, ok := <-results
				if !ok {
					break
				}
				col.Line(s)
				done = done || strings.Contains(s, markerPrefix+markerDone)
			}
			if done {
				return nil, nil
			}
			return freeze("ended", fmt.Sprintf("QEMU exited (%v) before the job's end: %s", cmd.ProcessState, lastLines(stderr.String(), 3))), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline:
			return nil, fmt.Errorf("lab: attempt %d ran out of its %v", n, l.Timeout)
		case <-tick.C:
			beat.Lock()
			silent := time.Since(beat.at)
			beaten = beaten || beat.line != ""
			beat.Unlock()
			if silent < checkAfter {
				if thawing != "" {
					rep.Thawed++
					l.Notes(fmt.Sprintf("attempt %d: outer VM frozen (%s), woken by a byte on its serial port", n, thawing))
					thawing = ""
				}
				frozenChecks = 0
				continue
			}
			cpu, detail := l.outerCPU(ctx, mon)
			if cpu != nil && cpu.Frozen() {
				frozenChecks++
			} else {
				frozenChecks = 0
			}
			switch {
			case frozenChecks >= 2 && thawing == "":
				// The CPU waits for an interrupt it has: another one
				// (the serial port's, through the I/O APIC) may make
				// QEMU look at its local APIC again.
				thawing, frozenChecks = detail, 0
				conns["console"].Write([]byte("\n"))
			case frozenChecks >= 2:
				return freeze("frozen", detail+"; a byte on its serial port did not wake it"), nil
			case !beaten && silent > bootLimit, beaten && silent > stallAfter:
				return freeze("stalled", fmt.Sprintf("no heartbeat for %.0f s; %s", silent.Seconds(), detail)), nil
			}
		}
	}
}

// outerCPU asks the monitor for the outer CPU; detail describes it (or
// why it could not be read).
func (l *Lab) outerCPU(ctx context.Context, mon *qemu.Monitor) (*OuterCPU, string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	regs, err := mon.HMP(ctx, "info registers")
	if err != nil {
		return nil, "monitor: " + err.Error()
	}
	lapic, err := mon.HMP(ctx, "info lapic")
	if err != nil {
		return nil, "monitor: " + err.Error()
	}
	cpu, ok := ParseOuterCPU(regs, lapic)
	if !ok {
		return nil, "monitor output not understood: " + lastLines(regs+lapic, 4)
	}
	return &cpu, cpu.String()
}

// scanLines calls line for every line r gives, without its newline (and
// a carriage return before it), until r ends.
func scanLines(r io.Reader, line func(string)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line(strings.TrimSuffix(sc.Text(), "\r"))
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// ErrNoLab reports a host that cannot run the lab.
var ErrNoLab = errors.New("lab: cannot run here")

// Find returns qemu-system-x86_64's path.
func Find() (string, error) {
	p, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return "", fmt.Errorf("%w: qemu-system-x86_64 not found (apt-get install qemu-system-x86)", ErrNoLab)
	}
	return p, nil
}
