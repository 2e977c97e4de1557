package realmode

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// decodeAll disassembles code[start:end] in mode (16 or 32) and returns how
// many instructions it holds; anything x86asm cannot decode fails the test,
// so a .code16/.code32 mix-up shows up here, not as a guest crash.
func decodeAll(t *testing.T, what string, code []byte, start, end, mode int) int {
	t.Helper()
	n := 0
	for pc := start; pc < end; {
		inst, err := x86asm.Decode(code[pc:end], mode)
		if err != nil {
			t.Fatalf("%s: cannot decode at %#x (% x): %v", what, pc, code[pc:min(pc+8, end)], err)
		}
		pc += inst.Len
		n++
	}
	return n
}

// checkSourceConstants fails unless the assembler source file sets (.set)
// every name to the value the Go side uses. It returns the source.
func checkSourceConstants(t *testing.T, file string, want map[string]int) string {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	sets := map[string]int{}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(strings.ReplaceAll(line, ",", " "))
		if len(f) >= 3 && f[0] == ".set" {
			var v int
			if _, err := fmt.Sscan(f[2], &v); err == nil {
				sets[f[1]] = v
			}
		}
	}
	for name, w := range want {
		if got, ok := sets[name]; !ok || got != w {
			t.Errorf("%s %s = %#x (found %v), the Go side says %#x", file, name, got, ok, w)
		}
	}
	return string(raw)
}
