package loader

import (
	"encoding/binary"
	"slices"
	"testing"

	"kvmboot/boot/testkernel"
	"kvmboot/loader/memmap"
)

// TestReference: the plan for QEMU's -kernel says which loader QEMU uses
// and what it gets, places nothing, and reads nothing of the image QEMU
// reads itself: a bzImage whose payload kvmboot could not even find goes
// through.
func TestReference(t *testing.T) {
	broken := makeBzImage(t)
	binary.LittleEndian.PutUint32(broken[0x24c:], 0xfffffff0) // payload_length past the file: ParseBzImage refuses it
	if _, err := ParseBzImage(broken); err == nil {
		t.Fatal("the broken bzImage parses")
	}
	initrd := &Module{Path: "/boot/initrd.img"}
	mods := []Module{{Path: "m1", Args: "m1 x=1"}, {Path: "m2"}}
	for _, tc := range []struct {
		name    string
		cfg     Config
		kernel  KernelInfo
		modules []string
		initrd  string
	}{
		{"bzImage", Config{Path: "vmlinuz", Kernel: broken, Initrd: initrd, Modules: mods},
			KernelInfo{Path: "vmlinuz", Format: "bzimage", Protocol: ProtocolLinux16}, nil, "/boot/initrd.img"},
		{"Multiboot ELF", Config{Path: "tk.elf", Kernel: testkernel.ELF, Initrd: initrd, Modules: mods},
			KernelInfo{Path: "tk.elf", Format: "elf32", Protocol: ProtocolMultiboot}, []string{"/boot/initrd.img", "m1 x=1", "m2"}, ""},
		{"Multiboot a.out", Config{Path: "k", Kernel: mbFile(0x400, 0x20, mbHeader(MBAddressFields, 0, 0x300020, 0x300000, 0, 0, 0x300040))},
			KernelInfo{Path: "k", Format: "multiboot-aout", Protocol: ProtocolMultiboot}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.MemSize, tc.cfg.Cmdline, tc.cfg.BadRAM = 64*btMiB, "a b", []memmap.Range{{Start: 16 * btMiB, End: 17 * btMiB}}
			p, err := Reference(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if p.Kernel != tc.kernel || p.Cmdline != "a b" || p.MemSize != 64*btMiB || len(p.Placements) != 0 {
				t.Errorf("plan %+v", p)
			}
			if !slices.Equal(p.ModuleArgs, tc.modules) || p.Initrd != tc.initrd {
				t.Errorf("modules %q initrd %q, want %q %q", p.ModuleArgs, p.Initrd, tc.modules, tc.initrd)
			}
			if !slices.Equal(p.Map.Ranges(memmap.KindBad), tc.cfg.BadRAM) || !p.Map.IsAll(EBDARange, memmap.KindReserved) {
				t.Errorf("map %v", p.Map.Regions())
			}
		})
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"empty", Config{}, "kernel: empty file"},
		{"compressed", Config{Kernel: gzipBytes(t, testkernel.ELF, 1)}, "--vmm=qemu-kernel: QEMU's -kernel loads a bzImage or an uncompressed Multiboot kernel, not a gzip-compressed one (decompress it first)"},
		{"no header", Config{Kernel: twoLoads().bytes()}, "--vmm=qemu-kernel: no Multiboot header in the first 8 KiB and not a Linux bzImage"},
		{"bad Multiboot header", Config{Kernel: mbFile(0x100, 0, mbHeader(0, 1))}, "Multiboot header: at offset 0x0 has a bad checksum"},
		{"bzImage as linux32", Config{Kernel: broken, Protocol: ProtocolLinux32}, "QEMU boots a bzImage through its own setup code (linux16), not --protocol linux32"},
		{"Multiboot as linux16", Config{Kernel: testkernel.ELF, Protocol: ProtocolLinux16}, "--protocol linux16 needs a Linux bzImage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.MemSize = 64 * btMiB
			_, err := Reference(tc.cfg)
			wantFormatError(t, err, tc.want)
		})
	}
}
