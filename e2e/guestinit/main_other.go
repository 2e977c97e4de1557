//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "guestinit runs as /init in a Linux guest (build with GOOS=linux GOARCH=386)")
	os.Exit(2)
}
