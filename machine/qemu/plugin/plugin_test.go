package plugin

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"regexp"
	"strconv"
	"testing"
)

// TestProtocolMatchesC: every constant protocol.h defines has the same
// value here.
func TestProtocolMatchesC(t *testing.T) {
	src, err := os.ReadFile("csrc/protocol.h")
	if err != nil {
		t.Fatal(err)
	}
	goValues := map[string]int{
		"KB_VERSION": Version, "KB_MSG_CONFIG": MsgConfig, "KB_MSG_HELLO": MsgHello, "KB_MSG_START": MsgStart,
		"KB_MSG_FAULT": MsgFault, "KB_MSG_DONE": MsgDone, "KB_MSG_WRITTEN": MsgWritten, "KB_MSG_BLOCK": MsgBlock,
		"KB_MSG_EXEC": MsgExec, "KB_CONFIG_BLOCKS": ConfigBlocks, "KB_CONFIG_TRACE": ConfigTrace,
		"KB_CLASS_BAD": ClassBad, "KB_CLASS_FAULTY": ClassFaulty, "KB_CLASS_FLIP": ClassFlip,
		"KB_TRACE_BLOCK": TraceBlock, "KB_TRACE_DONE": TraceDone, "KB_WINDOW": Window,
	}
	defs := regexp.MustCompile(`(?m)^#define (KB_\w+) (\d+)`).FindAllStringSubmatch(string(src), -1)
	if len(defs) != len(goValues) {
		t.Errorf("protocol.h defines %d constants, Go has %d", len(defs), len(goValues))
	}
	for _, d := range defs {
		v, _ := strconv.Atoi(d[2])
		if g, ok := goValues[d[1]]; !ok || g != v {
			t.Errorf("%s = %d in protocol.h, %d (known %v) in Go", d[1], v, g, ok)
		}
	}
}

// TestSharedObject: the embedded plugin is an x86-64 shared object that
// exports what QEMU looks for.
func TestSharedObject(t *testing.T) {
	f, err := elf.NewFile(bytes.NewReader(SharedObject))
	if err != nil {
		t.Fatal(err)
	}
	if f.Type != elf.ET_DYN || f.Machine != elf.EM_X86_64 {
		t.Errorf("type %v machine %v", f.Type, f.Machine)
	}
	syms, err := f.DynamicSymbols()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"qemu_plugin_version": false, "qemu_plugin_install": false}
	for _, s := range syms {
		if _, ok := want[s.Name]; ok && s.Section != elf.SHN_UNDEF {
			want[s.Name] = true
		}
	}
	for name, found := range want {
		if !found {
			t.Errorf("%s not exported", name)
		}
	}
}

func le32(vs ...uint32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return b
}

func le64(vs ...uint64) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return b
}

func TestConfigEncode(t *testing.T) {
	c := Config{Flags: ConfigBlocks, RAMSize: 64 << 20, RAMMajor: 0, RAMMinor: 0x1a, RAMInode: 2367,
		Ranges: []Range{{Start: 0x1000000, End: 0x2000000, Class: ClassBad}}}
	b := c.Encode()
	want := bytes.Join([][]byte{le32(MsgConfig, 64, Version, ConfigBlocks), le64(64 << 20), le32(0, 0x1a), le64(2367), le32(1, 0),
		le64(0x1000000, 0x2000000), le32(ClassBad, 0)}, nil)
	if !bytes.Equal(b, want) {
		t.Errorf("config\n% x\nwant\n% x", b, want)
	}
}

func TestParseMessages(t *testing.T) {
	fault := bytes.Join([][]byte{le64(0x1800000), le32(1, 5), le64(7, 0x2001000), le32(3, 0)}, nil)
	msg := append(le32(MsgFault, uint32(len(fault))), fault...)
	m, err := ReadMessage(bytes.NewReader(msg))
	if err != nil || m.Type != MsgFault {
		t.Fatalf("%+v %v", m, err)
	}
	f, err := ParseFault(m.Payload)
	if err != nil || f != (Fault{Phys: 0x1800000, Write: true, Insns: 5, Serial: 7, Vaddr: 0x2001000, CPU: 3}) {
		t.Fatalf("%+v %v", f, err)
	}
	block := bytes.Join([][]byte{le64(0x2001000), le32(2, 3), {1, 2}, {0x90, 0x89, 0x08}}, nil)
	id, b, err := ParseTraceBlock(append(le32(9, uint32(len(block))), block...))
	if err != nil || id != 9 || b.Vaddr != 0x2001000 || len(b.Insns) != 2 || !bytes.Equal(b.Insns[1], []byte{0x89, 0x08}) || b.Addr(1) != 0x2001001 {
		t.Errorf("trace block %d %+v %v", id, b, err)
	}
	w, err := ParseWritten(bytes.Join([][]byte{le64(0x2800004, 0x2800000), le32(8, 0), make([]byte, 8)}, nil))
	if err != nil || w.Phys != 0x2800004 || len(w.Before) != 8 {
		t.Errorf("written %+v %v", w, err)
	}
	if id, i, err := ParseExec(le32(3, 4)); err != nil || id != 3 || i != 4 {
		t.Errorf("exec %d %d %v", id, i, err)
	}
	if err := ParseHello(le32(Version, 0)); err != nil {
		t.Error(err)
	}
}

// TestParseRefuses: malformed messages are errors, never panics or huge
// allocations.
func TestParseRefuses(t *testing.T) {
	if _, err := ReadMessage(bytes.NewReader(le32(MsgFault, MaxMessage+1))); err == nil {
		t.Error("oversized message accepted")
	}
	for _, p := range [][]byte{
		nil,
		le64(1),
		bytes.Join([][]byte{le64(1), le32(0, MaxInsns+1), le64(0, 0), le32(0, 0)}, nil), // more instructions than a block holds
		bytes.Join([][]byte{le64(1), le32(0, 1), le64(0, 0), le32(MaxCPUs, 0)}, nil),    // a vCPU no machine has
		bytes.Join([][]byte{le64(1), le32(0, 1), le64(0, 0), le32(0, 0), {0}}, nil),     // a byte too many
		bytes.Join([][]byte{le64(1), le32(0, 1), le64(0, 0)}, nil),                      // version 1's FAULT
	} {
		if f, err := ParseFault(p); err == nil {
			t.Errorf("fault % x accepted: %+v", p, f)
		}
	}
	for _, b := range [][]byte{
		bytes.Join([][]byte{le32(1, 19), le64(0), le32(1, 1), {5}, {0}}, nil), // length beyond code
		bytes.Join([][]byte{le32(1, 18), le64(0), le32(1, 1), {0}, {0}}, nil), // zero length
		bytes.Join([][]byte{le32(1, 20), le64(0), le32(1, 3), {1}, {0}}, nil), // claims more than it has
	} {
		if _, blk, err := ParseTraceBlock(b); err == nil {
			t.Errorf("block % x accepted: %+v", b, blk)
		}
	}
	for _, p := range [][]byte{
		nil,
		bytes.Join([][]byte{le64(0x100, 0x100), le32(200, 0), make([]byte, 200)}, nil), // window too large
		bytes.Join([][]byte{le64(0x140, 0x100), le32(8, 0), make([]byte, 8)}, nil),     // access outside its window
		bytes.Join([][]byte{le64(0x100, 0x100), le32(9, 0), make([]byte, 8)}, nil),     // length mismatch
	} {
		if w, err := ParseWritten(p); err == nil {
			t.Errorf("written % x accepted: %+v", p, w)
		}
	}
	if err := ParseHello(le32(Version+1, 0)); err == nil {
		t.Error("other version accepted")
	}
}

// FuzzMessages: whatever the plugin sends, kvmboot's readers return an
// error or a message within bounds, never a panic or a huge allocation.
func FuzzMessages(f *testing.F) {
	f.Add(append(le32(MsgFault, 40), bytes.Join([][]byte{le64(0x1800000), le32(1, 5), le64(7, 0x2001000), le32(1, 0)}, nil)...))
	f.Add(append(le32(MsgBlock, 29), bytes.Join([][]byte{le32(9, 21), le64(0x2001000), le32(2, 3), {1, 2}, {0x90, 0x89, 0x08}}, nil)...))
	f.Add(append(le32(MsgWritten, 32), bytes.Join([][]byte{le64(0x2800004, 0x2800000), le32(8, 0), make([]byte, 8)}, nil)...))
	f.Add(append(le32(MsgExec, 8), le32(3, 4)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ReadMessage(bytes.NewReader(b))
		if err != nil {
			return
		}
		if len(m.Payload) > MaxMessage {
			t.Fatalf("payload of %d bytes", len(m.Payload))
		}
		if f, err := ParseFault(m.Payload); err == nil && (f.Insns > MaxInsns || f.CPU >= MaxCPUs) {
			t.Fatalf("fault %+v", f)
		}
		if w, err := ParseWritten(m.Payload); err == nil && (len(w.Before) > Window || w.Phys < w.Window || w.Phys >= w.Window+uint64(len(w.Before))) {
			t.Fatalf("write %+v", w)
		}
		if _, blk, err := ParseTraceBlock(m.Payload); err == nil {
			n := 0
			for _, in := range blk.Insns {
				n += len(in)
			}
			if n > len(m.Payload) {
				t.Fatalf("block %+v", blk)
			}
		}
		ParseExec(m.Payload)
		ParseDone(m.Payload)
		ParseHello(m.Payload)
	})
}
