package e2e

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"kvmboot/boot/testkernel"
)

// patched returns a copy of the test kernel with edit applied.
func patched(edit func(b []byte)) []byte {
	b := bytes.Clone(testkernel.ELF)
	edit(b)
	return b
}

// phdrField returns the offset of a 32-bit field of program header i.
func phdrField(b []byte, i, field int) int {
	phoff := int(binary.LittleEndian.Uint32(b[28:]))
	phentsize := int(binary.LittleEndian.Uint16(b[42:]))
	return phoff + i*phentsize + field
}

// nonRelocatable strips the test kernel's relocation sections.
func nonRelocatable(t *testing.T, dir string) string {
	t.Helper()
	src := filepath.Join(dir, "tk.elf")
	dst := filepath.Join(dir, "tk-norel.elf")
	os.WriteFile(src, testkernel.ELF, 0o644)
	if out, err := exec.Command("objcopy", "--remove-relocations=*", src, dst).CombinedOutput(); err != nil {
		t.Skipf("objcopy cannot strip relocations here: %v %s", err, out)
	}
	return dst
}

// TestCLIBadInput: every bad input ends with status 126 and one line on
// stderr naming the problem, never a panic.
func TestCLIBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mbOff := 0x1000 // the test kernel's Multiboot header (file offset)
	norel := nonRelocatable(t, dir)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"not-elf", []string{write("text", []byte("this is not a kernel at all"))}, "not an ELF file"},
		{"empty", []string{write("empty", nil)}, "empty file"},
		{"elf64", []string{"/bin/true"}, "ELF64"},
		{"no-multiboot", []string{write("nomb", patched(func(b []byte) { binary.LittleEndian.PutUint32(b[mbOff:], 0) }))}, "no Multiboot header"},
		{"bad-checksum", []string{write("badsum", patched(func(b []byte) { b[mbOff+8]++ }))}, "bad checksum"},
		{"truncated", []string{write("trunc", testkernel.ELF[:0x1800])}, "truncated"},
		{"larger-than-ram", []string{write("huge", patched(func(b []byte) {
			binary.LittleEndian.PutUint32(b[phdrField(b, 1, 20):], 512<<20) // p_memsz
		}))}, "no room for kernel"},
		{"outside-ram", []string{"--mem", "8M", norel}, "cannot move"},
		{"link-address-bad", []string{"--bad-ram", "16M-32M", norel}, "overlaps bad RAM"},
		{"no-room", []string{"--mem", "4M", "--bad-ram", "1M-4M"}, "no room for kernel"},
		{"load-address-unaligned", []string{"--load-address", "0x2000100"}, "alignment"},
		{"load-address-bad", []string{"--bad-ram", "16M-32M", "--load-address", "0x1800000"}, "bad RAM"},
		{"load-address-beyond", []string{"--load-address", "0x20000000"}, "refused"},
		{"bad-ram-syntax", []string{"--bad-ram", "16M-8M"}, "--bad-ram"},
		{"bad-size", []string{"--mem", "lots"}, "--mem"},
		{"mem-beyond-every-backend", []string{"--mem", "100G"}, "guest memory 100G"},
		{"smp-too-many", []string{"--smp", "65"}, "--smp: 65 processors: want 1 to 64"},
		{"smp-none", []string{"--smp", "0"}, "--smp: 0 processors"},
		{"module-without-file", []string{"--module", "  "}, "no file name"},
		{"missing-file", []string{filepath.Join(dir, "nope")}, "no such file"},
		{"control-characters-in-name", []string{filepath.Join(dir, "new\nline\x1b[2J")}, `new\x0aline\x1b[2J: no such file`},
		{"directory", []string{dir}, "not a regular file"},
		{"module-missing", []string{"--module", filepath.Join(dir, "nope") + " args"}, "no such file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, status := runCLI(t, append([]string{"plan"}, tc.args...)...)
			if status != 126 {
				t.Fatalf("status %d, want 126\nstdout: %s\nstderr: %s", status, stdout, stderr)
			}
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "kvmboot: ") || !strings.Contains(lines[0], tc.want) {
				t.Fatalf("stderr %q, want one line containing %q", stderr, tc.want)
			}
		})
	}
}

// TestCLIRunBadInput: `run` gives the same status and line as `plan`, and
// under --json an object with outcome "error".
func TestCLIRunBadInput(t *testing.T) {
	_, stderr, status := runCLI(t, "run", "/bin/true")
	if status != 126 || !strings.Contains(stderr, "ELF64") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("status %d stderr %q", status, stderr)
	}
	stdout, _, status := runCLI(t, "run", "--json", "/bin/true")
	if status != 126 || !strings.Contains(stdout, `"outcome": "error"`) || !strings.Contains(stdout, `"exit_code": 126`) {
		t.Fatalf("status %d stdout %s", status, stdout)
	}
	// The whole configuration is checked before anything boots, by the
	// same code for run, plan, inspect and the Go API.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--mem", "100G"}, "guest memory 100G"},
		{[]string{"inspect", "--mem", "100G", "/bin/true"}, "guest memory 100G"},
		{[]string{"run", "--vmm", "bochs"}, `vmm "bochs": unknown backend`},
		{[]string{"run", "--vmm", "kvm", "--accel", "tcg"}, "QEMU's accelerator"},
		{[]string{"run", "--smp", "2", "--machine", "minimal"}, "--smp 2 needs --machine pc"},
		{[]string{"run", "--accel", "hvf"}, `accel "hvf"`},
		{[]string{"run", "--bad-ram-policy", "ignore"}, `bad-RAM policy "ignore"`},
		{[]string{"run", "--timeout", "-1s"}, "timeout -1s"},
		{[]string{"run", "--trace", "real", "--trace-limit", "-5"}, "trace limit -5"},
		{[]string{"run", "--vmm", "qemu-kernel", "--faulty-ram", "20M-21M"}, "--vmm=qemu --accel=tcg"},
		{[]string{"run", "--vmm", "qemu", "--accel", "kvm", "--faulty-ram", "20M-21M"}, "--accel=kvm cannot inject faults"},
		// Control characters in what an error quotes are escaped, in
		// every command.
		{[]string{"run", "new\nline"}, `new\x0aline`},
		{[]string{"inspect", "new\nline"}, `new\x0aline`},
		{[]string{"smoke", "new\nline.yaml"}, `new\x0aline.yaml`},
		{[]string{"mkelf", "new\nline", "-o", os.DevNull}, `new\x0aline`},
	} {
		_, stderr, status := runCLI(t, tc.args...)
		if status != 126 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: status %d stderr %q, want one line containing %q", tc.args, status, stderr, tc.want)
		}
	}
}

func TestCLIPlanAndInspect(t *testing.T) {
	stdout, stderr, status := runCLI(t, "plan", "--bad-ram", "16M-32M")
	if status != 0 || !strings.Contains(stdout, "load address 0x2000000") || !strings.Contains(stdout, "bad") {
		t.Fatalf("plan: status %d\n%s%s", status, stdout, stderr)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "tk.elf")
	os.WriteFile(p, testkernel.ELF, 0o644)
	stdout, stderr, status = runCLI(t, "inspect", p)
	if status != 0 || !strings.Contains(stdout, "R_386_32") || !strings.Contains(stdout, "skipped (absolute symbols)") || !strings.Contains(stdout, "multiboot") {
		t.Fatalf("inspect: status %d\n%s%s", status, stdout, stderr)
	}
	f, _ := elf.NewFile(bytes.NewReader(testkernel.ELF))
	if f.Entry == 0 || !strings.Contains(stdout, "entry") {
		t.Fatalf("inspect lacks the entry")
	}
}
