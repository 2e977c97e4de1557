package initramfs

import (
	"bytes"
	"debug/elf"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/u-root/u-root/pkg/cpio"
)

func readArchive(t *testing.T, img []byte) []cpio.Record {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(img))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	recs, err := cpio.ReadAllRecords(cpio.EOFReader{RecordReader: cpio.Newc.Reader(bytes.NewReader(raw))})
	if err != nil {
		t.Fatalf("reading cpio: %v", err)
	}
	if !bytes.Contains(raw[len(raw)-512:], []byte(cpio.Trailer)) {
		t.Errorf("no %s record at the end", cpio.Trailer)
	}
	return recs
}

func content(t *testing.T, r cpio.Record) []byte {
	t.Helper()
	b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
	if err != nil {
		t.Fatalf("%s: %v", r.Name, err)
	}
	return b
}

func TestBuild(t *testing.T) {
	initBin := []byte("\x7fELF pretend init")
	img, err := Build(initBin, map[string][]byte{
		"etc/motd":        []byte("hello\n"),
		"/etc/kvmboot/id": []byte("42"),
		"data.bin":        {0, 1, 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	recs := readArchive(t, img)

	type want struct {
		mode         uint64
		rmaj, rmin   uint64
		content      string
		checkContent bool
	}
	wants := map[string]want{
		"dev":            {mode: cpio.S_IFDIR | 0o755},
		"dev/console":    {mode: cpio.S_IFCHR | 0o600, rmaj: 5, rmin: 1},
		"proc":           {mode: cpio.S_IFDIR | 0o755},
		"sys":            {mode: cpio.S_IFDIR | 0o755},
		"init":           {mode: cpio.S_IFREG | 0o755, content: string(initBin), checkContent: true},
		"data.bin":       {mode: cpio.S_IFREG | 0o644, content: "\x00\x01\x02", checkContent: true},
		"etc":            {mode: cpio.S_IFDIR | 0o755},
		"etc/kvmboot":    {mode: cpio.S_IFDIR | 0o755},
		"etc/kvmboot/id": {mode: cpio.S_IFREG | 0o644, content: "42", checkContent: true},
		"etc/motd":       {mode: cpio.S_IFREG | 0o644, content: "hello\n", checkContent: true},
	}
	var names []string
	inos := map[uint64]string{}
	seen := map[string]int{}
	for i, r := range recs {
		names = append(names, r.Name)
		seen[r.Name] = i
		w, ok := wants[r.Name]
		if !ok {
			t.Errorf("unexpected record %q", r.Name)
			continue
		}
		if r.Mode != w.mode {
			t.Errorf("%s: mode %#o, want %#o", r.Name, r.Mode, w.mode)
		}
		if r.Rmajor != w.rmaj || r.Rminor != w.rmin {
			t.Errorf("%s: device %d:%d, want %d:%d", r.Name, r.Rmajor, r.Rminor, w.rmaj, w.rmin)
		}
		if w.checkContent {
			if got := string(content(t, r)); got != w.content {
				t.Errorf("%s: content %q, want %q", r.Name, got, w.content)
			}
		}
		if r.MTime != 0 || r.UID != 0 || r.GID != 0 {
			t.Errorf("%s: not reproducible: mtime %d uid %d gid %d", r.Name, r.MTime, r.UID, r.GID)
		}
		if other, dup := inos[r.Ino]; dup || r.Ino == 0 {
			t.Errorf("%s: inode %d (shared with %q)", r.Name, r.Ino, other)
		}
		inos[r.Ino] = r.Name
	}
	if len(recs) != len(wants) {
		t.Errorf("records %q, want the %d in %v", names, len(wants), wants)
	}
	// The kernel's unpacker does not create parent directories.
	for name := range wants {
		for d := name; strings.Contains(d, "/"); {
			d = d[:strings.LastIndex(d, "/")]
			if seen[d] >= seen[name] {
				t.Errorf("%s comes before its directory %s", name, d)
			}
		}
	}

	again, err := Build(initBin, map[string][]byte{
		"data.bin":        {0, 1, 2},
		"/etc/kvmboot/id": []byte("42"),
		"etc/motd":        []byte("hello\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(img, again) {
		t.Errorf("two builds of the same input differ")
	}
}

func TestBuildErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		init  []byte
		extra map[string][]byte
		want  string
	}{
		"empty init":  {nil, nil, "empty init"},
		"init again":  {[]byte("x"), map[string][]byte{"/init": []byte("y")}, "already"},
		"console":     {[]byte("x"), map[string][]byte{"dev/console": []byte("y")}, "already"},
		"outside":     {[]byte("x"), map[string][]byte{"../etc/passwd": []byte("y")}, "not a path inside"},
		"root itself": {[]byte("x"), map[string][]byte{"/": []byte("y")}, "not a path inside"},
	} {
		_, err := Build(tc.init, tc.extra)
		// The message names what is wrong with the archive: its contract.
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, tc.want)
		}
	}
}

func TestGuestInit(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles e2e/guestinit")
	}
	p, err := GuestInit(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS32 || f.Machine != elf.EM_386 || f.Type != elf.ET_EXEC {
		t.Errorf("guestinit is %v %v %v, want a 32-bit i386 executable", f.Class, f.Machine, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("guestinit is not static: it has %v", p.Type)
		}
	}
}
