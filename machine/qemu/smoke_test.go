package qemu

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"kvmboot/boot/testkernel"
	"kvmboot/loader"
	"kvmboot/machine"
)

func TestSmoke(t *testing.T) {
	for _, c := range []string{"", "kt.triple", "kt.reset", "kt.hang", "kt.panic", "kt.exit=7", "kt.poke=0x1800000"} {
		plan, err := loader.Build(loader.Config{Path: "tk", Kernel: testkernel.ELF, MemSize: 256 << 20, Cmdline: c, Verify: true, BadRAM: nil})
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		con := machine.NewConsole(&out, nil)
		start := time.Now()
		res, err := Backend{Accel: os.Getenv("ACCEL"), Log: func(s string) { t.Log("log:", s) }}.Run(context.Background(), plan, machine.Options{Timeout: 2 * time.Second, Console: con, BadRAM: plan.Map.Ranges(loader.KindBad)})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%q: %s %d %s %+v setup %v boot %v total %v lines %d", c, res.Outcome, res.Status, res.Reason, res.BadRAMAccesses, res.Setup, res.Boot, time.Since(start), len(con.Tail()))
	}
}
