package svg

import (
	"encoding/xml"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	"kvmboot/boot/testkernel"
	"kvmboot/e2e/hosttest"
	"kvmboot/loader"
	"kvmboot/loader/memmap"
)

// node is any SVG element, parsed generically.
type node struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Nodes   []node     `xml:",any"`
	Text    string     `xml:",chardata"`
}

func (n *node) attr(name string) string {
	for _, a := range n.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// text is the text of every <text> child, joined.
func (n *node) text() string {
	var parts []string
	for _, c := range n.Nodes {
		if c.XMLName.Local == "text" {
			parts = append(parts, c.Text)
		}
	}
	return strings.Join(parts, " ")
}

func (n *node) child(name string) *node {
	for i := range n.Nodes {
		if n.Nodes[i].XMLName.Local == name {
			return &n.Nodes[i]
		}
	}
	return nil
}

// shape is a labelled rect as the picture describes it.
type shape struct {
	class, kind, what string
	start, end        uint64
	y, h              float64
	label, title      string
}

// parse reads an SVG document back: every <g> with a class and a rect.
func parse(t *testing.T, doc []byte) (root node, shapes []shape) {
	t.Helper()
	if err := xml.Unmarshal(doc, &root); err != nil {
		t.Fatalf("not well-formed XML: %v", err)
	}
	if root.XMLName.Local != "svg" || root.XMLName.Space != "http://www.w3.org/2000/svg" {
		t.Fatalf("root element %v", root.XMLName)
	}
	num := func(s string) uint64 {
		v, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			t.Fatalf("attribute %q: %v", s, err)
		}
		return v
	}
	flt := func(s string) float64 {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("attribute %q: %v", s, err)
		}
		return v
	}
	for _, g := range root.Nodes {
		if g.XMLName.Local != "g" {
			continue
		}
		switch class := g.attr("class"); class {
		case "region", "placement", "found":
			r := g.child("rect")
			if r == nil {
				t.Fatalf("%s group without a rect", class)
			}
			title := ""
			if tt := g.child("title"); tt != nil {
				title = tt.Text
			}
			shapes = append(shapes, shape{class: class, kind: g.attr("data-kind"), what: g.attr("data-what"),
				start: num(r.attr("data-start")), end: num(r.attr("data-end")), y: flt(r.attr("y")), h: flt(r.attr("height")),
				label: g.text(), title: title})
		}
	}
	return root, shapes
}

// checkPicture checks that every region, placement and fault of the plan
// has exactly one labelled rect with the plan's addresses, and that the
// picture is ordered: higher addresses above, nothing of one column
// overlapping.
func checkPicture(t *testing.T, p *loader.Plan, found []memmap.Range, doc []byte) {
	t.Helper()
	_, shapes := parse(t, doc)
	take := func(class string, start, end uint64) *shape {
		var hit *shape
		for i := range shapes {
			s := &shapes[i]
			if s.class == class && s.start == start && s.end == end {
				if hit != nil {
					t.Errorf("two %s shapes for %#x-%#x", class, start, end)
				}
				hit = s
			}
		}
		if hit == nil {
			t.Errorf("no %s shape with data-start=%#x data-end=%#x", class, start, end)
		}
		return hit
	}
	rng := func(a, b uint64) string { return fmt.Sprintf("%#08x-%#08x", a, b) }
	regions := p.Map.Regions()
	for _, r := range regions {
		s := take("region", r.Start, r.End)
		if s == nil {
			continue
		}
		if s.kind != r.Kind.String() || !strings.Contains(s.title, rng(r.Start, r.End)) {
			t.Errorf("region %v: kind %q title %q", r, s.kind, s.title)
		}
		if s.label == "" || !strings.Contains(s.label+s.title, map[memmap.Kind]string{memmap.KindRAM: "RAM", memmap.KindReserved: "reserved", memmap.KindBad: "bad RAM"}[r.Kind]) {
			t.Errorf("region %v labelled %q", r, s.label)
		}
	}
	for _, pl := range p.Placements {
		s := take("placement", pl.Start, pl.End())
		if s == nil {
			continue
		}
		if s.what != pl.What || !strings.Contains(s.label, pl.What) || !strings.Contains(s.label, rng(pl.Start, pl.End())) || (pl.Name != "" && !strings.Contains(s.label, pl.Name)) {
			t.Errorf("placement %s %s labelled %q (data-what %q)", pl.What, pl.Name, s.label, s.what)
		}
	}
	for _, f := range found {
		s := take("found", f.Start, f.End)
		if s != nil && (!strings.Contains(s.label, "memtest fault") || !strings.Contains(s.label, rng(f.Start, f.End))) {
			t.Errorf("fault %v labelled %q", f, s.label)
		}
	}
	if n := len(regions) + len(p.Placements) + len(found); len(shapes) != n {
		t.Errorf("%d labelled shapes, want %d", len(shapes), n)
	}
	// Geometry: within a column, higher addresses above and no overlap;
	// every non-empty piece visible.
	for _, class := range []string{"region", "placement"} {
		var col []shape
		for _, s := range shapes {
			if s.class == class {
				col = append(col, s)
			}
		}
		sort.Slice(col, func(i, j int) bool { return col[i].start < col[j].start })
		for i, s := range col {
			if s.end > s.start && s.h < minH-0.01 {
				t.Errorf("%s %#x-%#x is %.1f high, below the minimum %v", class, s.start, s.end, s.h, minH)
			}
			if i > 0 && s.y+s.h > col[i-1].y+0.01 {
				t.Errorf("%s %#x-%#x (y %.1f+%.1f) reaches into the one below it at y %.1f", class, s.start, s.end, s.y, s.h, col[i-1].y)
			}
		}
	}
}

func testKernelPlan(t *testing.T, bad ...string) *loader.Plan {
	t.Helper()
	var rs []memmap.Range
	for _, b := range bad {
		r, err := memmap.ParseBadRAM(b, 256<<20)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r...)
	}
	p, err := loader.Build(loader.Config{Path: "testkernel.elf", Kernel: testkernel.ELF, MemSize: 256 << 20, BadRAM: rs, Cmdline: "kt.exit=0",
		Modules: []loader.Module{{Path: "mod<1>.bin", Args: "mod<1>.bin a&b", Data: make([]byte, 300<<10)}}, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSVGTestKernel(t *testing.T) {
	p := testKernelPlan(t, "16M-20M", "memmap=8M$36M")
	found := []memmap.Range{{Start: 0x5000000, End: 0x5010000}}
	doc := Render(p, Options{Found: found, Caption: "hand-made <fault>"})
	checkPicture(t, p, found, doc)
	root, _ := parse(t, doc)
	breaks := 0
	for _, g := range root.Nodes {
		if g.attr("class") == "break" {
			breaks++
		}
	}
	if breaks == 0 {
		t.Error("no break mark, though 256M of mostly empty RAM cannot be to scale")
	}
	if !strings.Contains(string(doc), "hand-made &lt;fault&gt;") {
		t.Error("caption not escaped")
	}
}

func TestSVGNoBadRAM(t *testing.T) {
	p := testKernelPlan(t)
	checkPicture(t, p, nil, Render(p, Options{}))
}

func TestSVGSyntheticPlan(t *testing.T) {
	// Odd cases: an empty placement, a fault beyond memory (clipped),
	// a fault straddling a region boundary, a region kind with no name.
	m := memmap.New(32<<20, loader.FirmwareHigh)
	m.Set(memmap.Range{Start: 8 << 20, End: 9 << 20}, memmap.KindBad)
	m.Set(memmap.Range{Start: 12 << 20, End: 13 << 20}, memmap.Kind(3))
	p := &loader.Plan{Kernel: loader.KernelInfo{Path: "k", Format: "elf32", Protocol: loader.ProtocolELF}, MemSize: 32 << 20, Map: m, Why: "because",
		Placements: []loader.Placement{
			{What: "kernel", Start: 2 << 20, Size: 1 << 20},
			{What: "initrd", Name: "empty.img", Start: 20 << 20, Size: 0},
			{What: "cmdline", Start: 0x8000, Size: 5, Data: []byte("abcd\x00")},
		}}
	found := []memmap.Range{{Start: 8<<20 + 4096, End: 10 << 20}, {Start: 30 << 20, End: 40 << 20}}
	doc := Render(p, Options{Found: found})
	checkPicture(t, p, []memmap.Range{found[0], {Start: 30 << 20, End: 32 << 20}}, doc)
}

// TestSVGDebian draws Debian's kernel around two bad ranges, with an
// initrd, when the kernel is here.
func TestSVGDebian(t *testing.T) {
	vmlinuz, err := os.ReadFile(hosttest.DebianKernel(t))
	if err != nil {
		t.Fatal(err)
	}
	p, err := loader.Build(loader.Config{Path: "vmlinuz", Kernel: vmlinuz, MemSize: 256 << 20, BadRAM: []memmap.Range{{Start: 16 << 20, End: 20 << 20}, {Start: 36 << 20, End: 44 << 20}},
		Cmdline: "console=ttyS0", Initrd: &loader.Module{Path: "initrd.img", Data: make([]byte, 5<<20)}, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	found := []memmap.Range{{Start: 0x5000000, End: 0x5010000}}
	checkPicture(t, p, found, Render(p, Options{Found: found}))
}
