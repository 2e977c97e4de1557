package smoke

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse: a matrix file never panics the parser, and every error is one
// line naming the file.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("../e2e/testdata/smoke/*.yaml")
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("kernels:\n  - name: a\nscenarios:\n  - name: b\n    bad_ram: [16M-32M]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := Parse(data, "fuzz.yaml")
		// One line starting with the file's name is the message's contract.
		if err != nil && (strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "fuzz.yaml")) {
			t.Fatalf("error %q: want one line starting with the file name", err)
		}
	})
}
