// Command mkinitramfs writes the e2e guest initramfs (our guest init as
// /init) to a file, for benchmarks and manual boots:
//
//	go run ./e2e/cmd/mkinitramfs initramfs.cpio.gz
package main

import (
	"fmt"
	"os"

	"kvmboot/e2e/initramfs"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: mkinitramfs OUTPUT")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "mkinitramfs:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	dir, err := os.MkdirTemp("", "mkinitramfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	img, err := initramfs.WriteGuestInitramfs(dir)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(img)
	if err != nil {
		return err
	}
	return os.WriteFile(out, b, 0o644)
}
