// Package initramfs builds the initramfs that kvmboot's e2e tests boot Linux
// into: a gzip-compressed newc cpio archive with a static /init (normally
// e2e/guestinit, cross-compiled at test time by GuestInit), written with
// u-root's cpio records, no cpio binary. It also parses the report that
// guestinit prints on the console (ParseGuestReport).
package initramfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/u-root/u-root/pkg/cpio"
)

// Build returns a gzip-compressed newc cpio archive holding /init (initBinary,
// mode 0755), the directories /dev, /proc and /sys, the node /dev/console
// (character device 5:1, mode 0600: the kernel opens it as init's stdin,
// stdout and stderr before it runs /init) and every extra file (mode 0644)
// under its path, with the directories it needs (mode 0755). The archive is
// reproducible: the same input gives the same bytes.
func Build(initBinary []byte, extra map[string][]byte) ([]byte, error) {
	if len(initBinary) == 0 {
		return nil, errors.New("initramfs: empty init binary")
	}
	files := []File{{Name: "init", Perm: 0o755, Data: initBinary}}
	names := make([]string, 0, len(extra))
	for name := range extra {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		files = append(files, File{Name: name, Perm: 0o644, Data: extra[name]})
	}
	recs, err := Records(Base(), files)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if err := Write(zw, recs); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// File is a regular file for Records: its path inside the archive, its
// permission bits and its bytes.
type File struct {
	Name string
	Perm uint64
	Data []byte
}

// Base is what an initramfs needs before any file: /dev with the node
// /dev/console, /proc and /sys.
func Base() []cpio.Record {
	return []cpio.Record{
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.Directory("proc", 0o755),
		cpio.Directory("sys", 0o755),
	}
}

// Records returns base followed by every file, each after the directories
// (mode 0755) it needs that are not in base or made already. A name may be
// given once, and only inside the archive.
func Records(base []cpio.Record, files []File) ([]cpio.Record, error) {
	recs := slices.Clone(base)
	seen := map[string]bool{}
	for _, r := range base {
		seen[cpio.Normalize(r.Name)] = true
	}
	for _, f := range files {
		clean := cpio.Normalize(f.Name)
		if clean == "." || clean == ".." || strings.HasPrefix(clean, "../") {
			return nil, fmt.Errorf("initramfs: file %q is not a path inside the archive", f.Name)
		}
		if seen[clean] {
			return nil, fmt.Errorf("initramfs: file %q is already in the archive", f.Name)
		}
		var dirs []string
		for d := path.Dir(clean); d != "."; d = path.Dir(d) {
			dirs = append(dirs, d)
		}
		for i := len(dirs) - 1; i >= 0; i-- {
			if !seen[dirs[i]] {
				recs = append(recs, cpio.Directory(dirs[i], 0o755))
				seen[dirs[i]] = true
			}
		}
		recs = append(recs, cpio.StaticRecord(f.Data, cpio.Info{Name: clean, Mode: cpio.S_IFREG | f.Perm&0o7777}))
		seen[clean] = true
	}
	return recs, nil
}

// Write writes recs to w as a newc cpio archive with its trailer,
// reproducibly (no times, owners or host inode numbers). Archives written
// by Write can be concatenated: the kernel unpacks one after the other.
func Write(w io.Writer, recs []cpio.Record) error {
	cw := cpio.Newc.Writer(w)
	for i, r := range recs {
		r = cpio.MakeReproducible(r)
		// Distinct inode numbers and one link each: the kernel's unpacker
		// treats records that share (ino, dev) with nlink >= 2 as hard links.
		r.Ino = uint64(i + 1)
		r.NLink = 1
		if r.Mode&cpio.S_IFMT == cpio.S_IFDIR {
			r.NLink = 2
		}
		if err := cw.WriteRecord(r); err != nil {
			return fmt.Errorf("initramfs: writing %s: %w", r.Name, err)
		}
	}
	if err := cpio.WriteTrailer(cw); err != nil {
		return fmt.Errorf("initramfs: writing trailer: %w", err)
	}
	return nil
}

// GuestInit cross-compiles e2e/guestinit for the guest (GOOS=linux
// GOARCH=386 CGO_ENABLED=0, -trimpath -ldflags=-s: a static binary of
// about 1.7 MB) into dir and returns the binary's path. It runs `go build`
// in this package's source folder, so it works from any test in the module
// whatever the working directory; it needs the go command on PATH (go test
// puts its own first).
func GuestInit(dir string) (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("initramfs: building guestinit needs the go command: %w", err)
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("initramfs: cannot find this package's source folder")
	}
	src := filepath.Join(filepath.Dir(file), "..", "guestinit")
	out, err := filepath.Abs(filepath.Join(dir, "guestinit"))
	if err != nil {
		return "", err
	}
	cmd := exec.Command(goTool, "build", "-trimpath", "-ldflags=-s", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=386", "CGO_ENABLED=0", "GO386=sse2")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("initramfs: go build guestinit (GOARCH=386): %v: %s", err, strings.TrimSpace(string(msg)))
	}
	return out, nil
}

// WriteGuestInitramfs builds the guest init (GuestInit) and writes an
// initramfs holding it as /init to dir/initramfs.cpio.gz.
func WriteGuestInitramfs(dir string) (string, error) {
	bin, err := GuestInit(dir)
	if err != nil {
		return "", err
	}
	init, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	img, err := Build(init, nil)
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "initramfs.cpio.gz")
	return out, os.WriteFile(out, img, 0o644)
}
