package memtest

import (
	"bytes"
	"encoding/binary"
	"math/rand"
	"testing"

	"kvmboot/machine/devices"
)

func failPayload(addr, exp, got uint32, test byte, pages uint32) []byte {
	p := make([]byte, FailLen)
	binary.LittleEndian.PutUint32(p, addr)
	binary.LittleEndian.PutUint32(p[4:], exp)
	binary.LittleEndian.PutUint32(p[8:], got)
	p[12] = test
	binary.LittleEndian.PutUint32(p[13:], pages)
	return p
}

func helloPayload(mode byte, ranges uint16, pages, seed uint32) []byte {
	p := make([]byte, HelloLen)
	p[0], p[1] = ProtocolVersion, mode
	binary.LittleEndian.PutUint16(p[2:], ranges)
	binary.LittleEndian.PutUint32(p[4:], pages)
	binary.LittleEndian.PutUint32(p[8:], seed)
	return p
}

func donePayload(tested, failed, wide uint32) []byte {
	p := make([]byte, DoneLen)
	binary.LittleEndian.PutUint32(p, tested)
	binary.LittleEndian.PutUint32(p[4:], failed)
	binary.LittleEndian.PutUint32(p[8:], wide)
	return p
}

func decode(stream []byte) ([]Frame, DecoderStats) {
	var got []Frame
	d := &Decoder{OnFrame: func(f Frame) { got = append(got, f) }}
	d.Write(stream)
	d.Close()
	return got, d.Stats()
}

func TestDecoderGoodFrames(t *testing.T) {
	var stream []byte
	stream = append(stream, Encode(TypeHello, 0, helloPayload(0, 1, 256, 5))...)
	stream = append(stream, Encode(TypeFail, 1, failPayload(0x1400000, 0x7fffffff, 0x7fffffff&^(1<<31), 2, 256))...)
	stream = append(stream, Encode(TypeDone, 2, donePayload(256, 256, 0))...)
	stream = append(stream, Encode('Z', 3, nil)...) // unknown types decode; the session ignores them
	// Byte at a time, as the UART delivers it.
	var got []Frame
	d := &Decoder{OnFrame: func(f Frame) { got = append(got, f) }}
	for _, c := range stream {
		d.Write([]byte{c})
	}
	if len(got) != 4 || got[0].Type != TypeHello || got[1].Type != TypeFail || got[2].Type != TypeDone || got[3].Type != 'Z' {
		t.Fatalf("frames %+v", got)
	}
	f, ok := ParseFail(got[1].Payload)
	if !ok || f.Addr != 0x1400000 || f.Test != 2 || f.Pages != 256 {
		t.Errorf("fail %+v %v", f, ok)
	}
	if st := d.Stats(); st != (DecoderStats{Frames: 4}) {
		t.Errorf("stats %+v", st)
	}
	// A payload full of SOF bytes is still one frame.
	sofs := bytes.Repeat([]byte{SOF}, MaxPayload)
	if fs, st := decode(Encode(7, 0, sofs)); len(fs) != 1 || !bytes.Equal(fs[0].Payload, sofs) || st.Skipped != 0 {
		t.Errorf("SOF payload: %+v %+v", fs, st)
	}
}

func TestDecoderCorrupt(t *testing.T) {
	good := Encode(TypeDone, 5, donePayload(1, 2, 3))
	bad := Encode(TypeFail, 4, failPayload(1, 2, 3, 4, 5))
	bad[10] ^= 0x40 // payload byte: check fails
	fs, st := decode(append(bad, good...))
	if len(fs) != 1 || fs[0].Type != TypeDone || st.BadChecksum != 1 {
		t.Errorf("corrupt then good: %d frames, %+v", len(fs), st)
	}
	// The corrupt frame's payload hides a whole good frame: resync finds it.
	inner := Encode(TypeDone, 1, donePayload(7, 0, 0))
	outer := append([]byte{SOF, TypeFail, 0, byte(len(inner) + 2)}, inner...)
	outer = append(outer, 0, 0, 0x99, 0x99, 0x99, 0x99) // two payload bytes, a garbage check
	fs, st = decode(outer)
	if len(fs) != 1 || fs[0].Seq != 1 || st.BadChecksum != 1 {
		t.Errorf("frame inside a corrupt frame: %+v %+v", fs, st)
	}
	// Sequence gaps are counted.
	s := append(Encode(TypeHello, 0, helloPayload(0, 1, 1, 0)), Encode(TypeDone, 3, donePayload(1, 0, 0))...)
	if _, st := decode(s); st.SeqGaps != 2 {
		t.Errorf("seq 0 then 3: %d gaps", st.SeqGaps)
	}
}

func TestDecoderTruncatedAndGarbage(t *testing.T) {
	good := Encode(TypeDone, 0, donePayload(1, 0, 0))
	fs, st := decode(good[:len(good)-3])
	if len(fs) != 0 || st.Truncated != 1 {
		t.Errorf("truncated: %+v %+v", fs, st)
	}
	garbage := []byte("hello, this is COM2 noise \x00\xff\x13")
	fs, st = decode(append(append(garbage, good...), garbage...))
	if len(fs) != 1 || st.Skipped != uint64(2*len(garbage)) {
		t.Errorf("garbage around a frame: %d frames, %+v", len(fs), st)
	}
}

// TestDecoderEndless: a header claiming a payload longer than the bound is
// dropped at once, and a megabyte of it neither grows nor hangs the decoder.
func TestDecoderEndless(t *testing.T) {
	endless := bytes.Repeat([]byte{SOF, TypeFail, 0, 0xFF}, 1<<18)
	good := Encode(TypeDone, 1, donePayload(1, 0, 0))
	fs, st := decode(append(endless, good...))
	if len(fs) != 1 || st.BadLength != 1<<18 {
		t.Errorf("endless: %d frames, %+v", len(fs), st)
	}
	// A stream of SOFs only: each header has length 0xA5 > MaxPayload.
	fs, st = decode(bytes.Repeat([]byte{SOF}, 100000))
	if len(fs) != 0 || st.BadLength == 0 {
		t.Errorf("SOF flood: %+v %+v", fs, st)
	}
}

// TestDecoderRandom: good frames inside garbage full of SOFs are all
// found, and garbage never decodes as a frame. With an 8-bit sum, 2 of
// 986 good frames were lost to garbage headers that passed the check and
// swallowed them.
func TestDecoderRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	lost, good := 0, 0
	for i := 0; i < 20000; i++ {
		b := make([]byte, rng.Intn(300))
		rng.Read(b)
		// Sprinkle SOFs and real frames so that resync paths run.
		for j := 0; j < len(b)/20; j++ {
			b[rng.Intn(len(b))] = SOF
		}
		var want []byte
		if rng.Intn(2) == 0 {
			at := rng.Intn(len(b) + 1)
			want = donePayload(uint32(i), 0xfeed, uint32(rng.Int31()))
			fr := Encode(TypeDone, 9, want)
			b = append(b[:at], append(fr, b[at:]...)...)
			good++
		}
		found := false
		for _, f := range decodeAll(t, b) {
			if want == nil || f.Type != TypeDone || f.Seq != 9 || !bytes.Equal(f.Payload, want) {
				t.Errorf("stream %d: garbage decoded as a frame: %+v", i, f)
				continue
			}
			found = true
		}
		if want != nil && !found {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d good frames lost in garbage", lost, good)
	}
}

// decodeAll decodes a stream as one write and byte by byte, which must
// agree.
func decodeAll(t *testing.T, b []byte) []Frame {
	t.Helper()
	whole, st := decode(b)
	var bytewise []Frame
	d := &Decoder{OnFrame: func(f Frame) { bytewise = append(bytewise, f) }}
	for _, c := range b {
		d.WriteByte(c)
	}
	d.Close()
	if len(whole) != len(bytewise) || st != d.Stats() {
		t.Fatalf("one write: %d frames %+v; byte by byte: %d frames %+v", len(whole), st, len(bytewise), d.Stats())
	}
	return whole
}

// TestDecoderGarbageHeader: a header whose claimed frame runs past the end
// of the stream over a good frame does not take it down with it.
func TestDecoderGarbageHeader(t *testing.T) {
	good := Encode(TypeDone, 1, donePayload(7, 0, 0))
	stream := append([]byte{SOF, TypeFail, 0, MaxPayload}, good...)
	fs, st := decode(stream)
	if len(fs) != 1 || fs[0].Seq != 1 || st.Truncated != 1 || st.Skipped != 4 {
		t.Errorf("good frame inside a truncated one: %+v %+v", fs, st)
	}
}

func FuzzFrameDecoder(f *testing.F) {
	f.Add(Encode(TypeHello, 0, helloPayload(0, 1, 2, 3)))
	f.Add(append(Encode(TypeFail, 1, failPayload(0x1400000, 1, 0, 2, 3)), Encode(TypeDone, 2, donePayload(3, 1, 0))...))
	f.Add([]byte{SOF, TypeFail, 0, 0xFF, SOF, SOF})
	f.Add(bytes.Repeat([]byte{SOF}, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		var frames []Frame
		d := &Decoder{OnFrame: func(fr Frame) { frames = append(frames, fr) }}
		// Split the input in two writes to exercise the streaming.
		half := len(b) / 2
		d.Write(b[:half])
		d.Write(b[half:])
		d.Close()
		st := d.Stats()
		if st.Frames != uint64(len(frames)) {
			t.Fatalf("%d frames counted, %d delivered", st.Frames, len(frames))
		}
		var inFrames uint64
		for _, fr := range frames {
			if len(fr.Payload) > MaxPayload {
				t.Fatalf("payload of %d bytes", len(fr.Payload))
			}
			inFrames += uint64(len(fr.Payload)) + headerLen + checkLen
		}
		// Every byte is accounted for exactly once: in a good frame or skipped.
		if inFrames+st.Skipped != uint64(len(b)) {
			t.Fatalf("%d bytes in frames + %d skipped != %d input bytes (%+v)", inFrames, st.Skipped, len(b), st)
		}
		// Re-encoding a decoded frame gives a frame that decodes the same.
		for _, fr := range frames {
			again, _ := decode(Encode(fr.Type, fr.Seq, fr.Payload))
			if len(again) != 1 || !bytes.Equal(again[0].Payload, fr.Payload) {
				t.Fatalf("frame %+v does not round-trip", fr)
			}
		}
		s := NewSession(nil)
		for _, fr := range frames {
			s.Frame(fr)
		}
	})
}

// TestCOM2Device drives the COM2 device the way memtest.S does: scratch
// probe, line setup, then LSR polls and THR writes.
func TestCOM2Device(t *testing.T) {
	var got []Frame
	dec := &Decoder{OnFrame: func(f Frame) { got = append(got, f) }}
	var bus devices.Bus
	bus.Register(devices.PortCOM2, 8, COM2(dec))
	bus.Out(devices.PortCOM2+7, 1, 0x5a)
	if bus.In(devices.PortCOM2+7, 1) != 0x5a {
		t.Fatal("scratch register does not hold its value")
	}
	for _, w := range [][2]uint32{{1, 0}, {3, 0x80}, {0, 1}, {1, 0}, {3, 3}, {2, 7}, {4, 3}} {
		bus.Out(devices.PortCOM2+uint16(w[0]), 1, w[1])
	}
	for _, c := range Encode(TypeDone, 0, donePayload(1, 0, 0)) {
		if bus.In(devices.PortCOM2+5, 1)&0x20 == 0 {
			t.Fatal("THR never empty")
		}
		bus.Out(devices.PortCOM2, 1, uint32(c))
	}
	if len(got) != 1 || got[0].Type != TypeDone {
		t.Fatalf("frames %+v", got)
	}
}
