// Package svg draws a boot plan as a picture of guest physical memory: the
// memory map (RAM, reserved, declared bad RAM, faults a memory test found)
// in one column, every placement beside it, each labelled with its name and
// address range. High addresses are at the top, as in the Linux boot
// protocol's memory layout diagrams.
//
// The vertical axis shows every stretch between two boundaries (of a
// region, a placement or a fault) with a height that grows with the
// logarithm of its size: 24 pixels for 4 KiB or less, 12 more for each
// doubling, so that a 20-byte command line and a 16 MiB kernel both get a
// readable label and the bigger thing is always the taller. Stretches of
// plain RAM (no placement, no fault) are squeezed further, to 56 pixels,
// and anything is capped at 240; a squeezed stretch carries a break mark (a
// zigzag across both columns).
//
// Every labelled shape is an SVG <g> holding a <rect> with data-start and
// data-end attributes (hex, END exclusive, the plan's own numbers), a <text>
// label and a <title> tooltip, so tests and tools can read the picture
// back. Only the standard library is used; the output is plain SVG 1.1
// without scripts or external references.
package svg

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"

	"kvmboot/loader"
	"kvmboot/loader/memmap"
)

// Options are what the picture shows besides the plan.
type Options struct {
	// Found are faults a memory test found (drawn over the map with their
	// own pattern and labelled "memtest fault").
	Found []memmap.Range
	// Title replaces the default title ("kvmboot plan: <kernel>").
	Title string
	// Caption is an extra line under the title, e.g. where Found came from.
	Caption string
}

// Geometry, in SVG user units (pixels).
const (
	bottomPad  = 24
	axisX      = 124 // address labels end here
	mapX       = 132
	mapW       = 170
	placeX     = 322
	placeW     = 110
	labelX     = placeX + placeW + 10
	minH       = 24.0  // any stretch: room for a label
	perDouble  = 12.0  // added for each doubling of the size above 4 KiB
	plainCapH  = 56.0  // plain RAM beyond this is squeezed
	anyCapH    = 240.0 // anything beyond this is squeezed
	fontSize   = 11
	lineHeight = 13
	charW      = 6.7 // width of a character at fontSize, for layout
)

// segment is a stretch of memory between two consecutive boundaries.
type segment struct {
	start, end uint64
	h          float64
	broken     bool
	yTop       float64 // y of end (higher address)
}

// mid is where a label goes: the middle, or for a broken stretch above
// the break mark.
func (sg *segment) mid() float64 {
	if sg.broken {
		return sg.yTop + sg.h*0.35
	}
	return sg.yTop + sg.h/2
}

// layout maps addresses to y coordinates.
type layout struct {
	segs []segment
	y    map[uint64]float64 // boundary address -> y
	maxY float64
}

// Render returns the SVG picture of p.
func Render(p *loader.Plan, opts Options) []byte {
	var b bytes.Buffer
	Write(&b, p, opts)
	return b.Bytes()
}

// Write writes the SVG picture of p to w.
func Write(w io.Writer, p *loader.Plan, opts Options) error {
	regions := p.Map.Regions()
	placements := p.Sorted()
	end := p.Map.Size()
	for _, pl := range placements {
		end = max(end, pl.End())
	}
	// Faults are in RAM: clip them at its end.
	var found []memmap.Range
	for _, f := range opts.Found {
		if f.End > f.Start && f.Start < p.MemSize {
			found = append(found, memmap.Range{Start: f.Start, End: min(f.End, p.MemSize)})
		}
	}
	// Header: title, the plan's reason split at its clauses, the caption,
	// the legend; the columns start below it.
	title := opts.Title
	if title == "" {
		title = fmt.Sprintf("kvmboot plan: %s (%s, %s)", p.Kernel.Path, p.Kernel.Format, p.Kernel.Protocol)
	}
	var lines []string
	for i, part := range strings.Split(p.Why, "; ") {
		if i == 0 {
			part = fmt.Sprintf("%s of RAM; kernel at %#x: %s", human(p.MemSize), p.LoadAddress, part)
		} else {
			part = "  " + part
		}
		lines = append(lines, part)
	}
	y := 40
	legendY := y + 16*len(lines) + 4
	if opts.Caption != "" {
		legendY += 16
	}
	top := legendY + 34
	l := plan(regions, placements, found, end, float64(top))

	w0 := max(820.0, legendWidth())
	for _, t := range append(lines, title, opts.Caption) {
		w0 = max(w0, 24+charW*float64(len([]rune(t))))
	}
	for _, pl := range placements {
		w0 = max(w0, labelX+12+charW*float64(len([]rune(placementLabel(pl)))))
	}
	width := int(math.Ceil(w0))

	var s svgWriter
	height := l.maxY + bottomPad
	s.printf(`<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="%d" height="%.0f" viewBox="0 0 %d %.0f" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="%d">`+"\n", width, height, width, height, fontSize)
	s.printf("<title>%s</title>\n", esc(title))
	s.defs()
	s.printf(`<rect class="background" x="0" y="0" width="%d" height="%.0f" fill="#ffffff"/>`+"\n", width, height)
	s.printf(`<text class="title" x="12" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", esc(title))
	for _, line := range lines {
		s.printf(`<text class="subtitle" x="12" y="%d" xml:space="preserve">%s</text>`+"\n", y, esc(line))
		y += 16
	}
	if opts.Caption != "" {
		s.printf(`<text class="caption" x="12" y="%d" font-style="italic">%s</text>`+"\n", y, esc(opts.Caption))
	}
	s.legend(legendY + 6)

	// Columns: headings, then regions, faults, placements, axis, breaks.
	s.printf(`<text x="%d" y="%d" text-anchor="middle" font-weight="bold">memory map</text>`+"\n", mapX+mapW/2, top-6)
	s.printf(`<text x="%d" y="%d" text-anchor="middle" font-weight="bold">placements</text>`+"\n", placeX+placeW/2, top-6)
	for _, r := range regions {
		s.region(l, r, found)
	}
	for _, f := range found {
		s.fault(l, f)
	}
	for _, pl := range placements {
		s.placement(l, pl)
	}
	s.axis(l)
	s.breaks(l)
	s.printf("</svg>\n")
	_, err := w.Write(s.b.Bytes())
	return err
}

// plan cuts memory at every boundary and gives each stretch its height.
func plan(regions []memmap.Region, placements []loader.Placement, found []memmap.Range, end uint64, top float64) *layout {
	bounds := []uint64{0, end}
	for _, r := range regions {
		bounds = append(bounds, r.Start, r.End)
	}
	for _, pl := range placements {
		bounds = append(bounds, pl.Start, pl.End())
	}
	for _, f := range found {
		bounds = append(bounds, f.Start, f.End)
	}
	slices.Sort(bounds)
	bounds = slices.Compact(bounds)

	plainRAM := func(a, b uint64) bool {
		for _, pl := range placements {
			if pl.Start < b && a < pl.End() {
				return false
			}
		}
		if covered(found, a, b) {
			return false
		}
		for _, r := range regions {
			if r.Start <= a && b <= r.End {
				return r.Kind == memmap.KindRAM
			}
		}
		return true // a hole in the map
	}
	l := &layout{y: map[uint64]float64{}}
	y := top
	for i := len(bounds) - 1; i > 0; i-- {
		a, b := bounds[i-1], bounds[i]
		h := minH + perDouble*max(0, math.Log2(float64(b-a)/4096))
		limit := anyCapH
		if plainRAM(a, b) {
			limit = plainCapH
		}
		sg := segment{start: a, end: b, h: min(h, limit), broken: h > limit, yTop: y}
		l.y[b] = y
		y += sg.h
		l.segs = append(l.segs, sg)
	}
	l.y[bounds[0]] = y
	l.maxY = y
	return l
}

// svgWriter accumulates the document.
type svgWriter struct{ b bytes.Buffer }

func (s *svgWriter) printf(format string, args ...any) { fmt.Fprintf(&s.b, format, args...) }

// esc escapes text for XML content and attributes.
func esc(t string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(t))
	return b.String()
}

// Fills and strokes.
var (
	kindFill = map[memmap.Kind]string{
		memmap.KindRAM:      "#dcf2dc",
		memmap.KindReserved: "#d9d9d9",
		memmap.KindBad:      "url(#bad)",
	}
	kindStroke = map[memmap.Kind]string{
		memmap.KindRAM:      "#6a9f6a",
		memmap.KindReserved: "#8c8c8c",
		memmap.KindBad:      "#c0392b",
	}
	placeFill = map[string]string{
		"kernel":      "#3b6fc4",
		"initrd":      "#8e5cc2",
		"module":      "#b160a8",
		"boot_params": "#2a9d8f",
		"boot_info":   "#2a9d8f",
		"cmdline":     "#d9a520",
		"stub":        "#7f8c8d",
		"params":      "#a3acad",
		"setup":       "#c2703b",
		"bios":        "#6c5b7b",
		"bios_tables": "#9b8ab0",
	}
)

func (s *svgWriter) defs() {
	s.printf(`<defs>
<pattern id="bad" patternUnits="userSpaceOnUse" width="8" height="8"><rect width="8" height="8" fill="#f7c9c4"/><path d="M-2,2 l4,-4 M0,8 l8,-8 M6,10 l4,-4" stroke="#c0392b" stroke-width="1.5"/></pattern>
<pattern id="found" patternUnits="userSpaceOnUse" width="8" height="8"><rect width="8" height="8" fill="#ffe0b0"/><path d="M0,0 l8,8 M8,0 l-8,8" stroke="#e67e00" stroke-width="1.5"/></pattern>
</defs>
`)
}

// legendItems are the legend's swatches.
var legendItems = []struct{ fill, stroke, name string }{
	{"#dcf2dc", "#6a9f6a", "RAM"},
	{"#d9d9d9", "#8c8c8c", "reserved"},
	{"url(#bad)", "#c0392b", "bad RAM (declared)"},
	{"url(#found)", "#e67e00", "memtest fault (found)"},
	{"#3b6fc4", "#1f3f75", "placement"},
}

const legendNote = "squeezed (heights grow with log2 of the size)"

// legendWidth is how far the legend reaches.
func legendWidth() float64 {
	x := 12.0
	for _, it := range legendItems {
		x += 19 + charW*float64(len(it.name)) + 18
	}
	return x + 26 + charW*float64(len(legendNote)) + 12
}

// legend draws a swatch and name for each kind of shape.
func (s *svgWriter) legend(y int) {
	x := 12.0
	s.printf(`<g class="legend">`)
	for _, it := range legendItems {
		s.printf(`<rect x="%.0f" y="%d" width="14" height="12" fill="%s" stroke="%s"/><text x="%.0f" y="%d">%s</text>`, x, y-10, it.fill, it.stroke, x+19, y, esc(it.name))
		x += 19 + charW*float64(len(it.name)) + 18
	}
	s.printf(`<path d="M%.0f,%d l5,-4 l5,4 l5,-4 l5,4" fill="none" stroke="#555555" stroke-width="1.2"/><text x="%.0f" y="%d" fill="#555555">%s</text>`, x, y-3, x+26, y, legendNote)
	s.printf("</g>\n")
}

// region draws one memory-map region with its label in its tallest
// stretch not covered by a fault.
func (s *svgWriter) region(l *layout, r memmap.Region, found []memmap.Range) {
	y0, y1 := r1(l.y[r.End]), r1(l.y[r.Start])
	fill, ok := kindFill[r.Kind]
	if !ok {
		fill = "#dde3f6"
	}
	stroke, ok := kindStroke[r.Kind]
	if !ok {
		stroke = "#6b7bb5"
	}
	name := map[memmap.Kind]string{memmap.KindRAM: "RAM", memmap.KindReserved: "reserved", memmap.KindACPI: "ACPI tables", memmap.KindBad: "bad RAM"}[r.Kind]
	if name == "" {
		name = r.Kind.String()
	}
	rng := fmt.Sprintf("%#08x-%#08x", r.Start, r.End)
	s.printf(`<g class="region" data-kind="%s">`, r.Kind)
	s.printf(`<title>%s %s (%s)</title>`, esc(name), rng, human(r.Size()))
	s.printf(`<rect data-start="%#x" data-end="%#x" x="%d" y="%.1f" width="%d" height="%.1f" fill="%s" stroke="%s"/>`, r.Start, r.End, mapX, y0, mapW, y1-y0, fill, stroke)
	// The label goes where there is most room and no fault.
	var best *segment
	for i := range l.segs {
		sg := &l.segs[i]
		if sg.start < r.Start || sg.end > r.End || covered(found, sg.start, sg.end) {
			continue
		}
		if best == nil || sg.h > best.h {
			best = sg
		}
	}
	if best != nil {
		s.label(mapX+mapW/2, best, name+" "+human(r.Size()), rng)
	}
	s.printf("</g>\n")
}

func covered(found []memmap.Range, a, b uint64) bool {
	for _, f := range found {
		if f.Start < b && a < f.End {
			return true
		}
	}
	return false
}

// label writes one or two centred lines in a stretch, on a white patch so
// that they read over a pattern.
func (s *svgWriter) label(x int, sg *segment, line1, line2 string) {
	mid := sg.mid()
	patch := func(y float64, text string, size float64) {
		w := size/fontSize*charW*float64(len([]rune(text))) + 6
		s.printf(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" rx="2" fill="#ffffff" fill-opacity="0.85"/>`, float64(x)-w/2, y-size+1, w, size+3)
		s.printf(`<text x="%d" y="%.1f" text-anchor="middle" font-size="%.0f">%s</text>`, x, y, size, esc(text))
	}
	if line2 != "" && (sg.h >= 2*lineHeight+6 && !sg.broken || sg.h >= 3*lineHeight+12) {
		patch(mid-2, line1, fontSize)
		patch(mid+lineHeight-1, line2, 10)
		return
	}
	patch(mid+4, line1, fontSize)
}

// fault draws a range a memory test found faulty over the map.
func (s *svgWriter) fault(l *layout, f memmap.Range) {
	y0, y1 := r1(l.y[f.End]), r1(l.y[f.Start])
	rng := fmt.Sprintf("%#08x-%#08x", f.Start, f.End)
	s.printf(`<g class="found">`)
	s.printf(`<title>memtest fault %s (%s)</title>`, rng, human(f.Size()))
	s.printf(`<rect data-start="%#x" data-end="%#x" x="%d" y="%.1f" width="%d" height="%.1f" fill="url(#found)" stroke="#e67e00"/>`, f.Start, f.End, mapX, y0, mapW, y1-y0)
	sg := l.tallest(f.Start, f.End)
	s.label(mapX+mapW/2, sg, "memtest fault "+human(f.Size()), rng)
	s.printf("</g>\n")
}

// tallest returns the tallest stretch inside [a, b).
func (l *layout) tallest(a, b uint64) *segment {
	var best *segment
	for i := range l.segs {
		sg := &l.segs[i]
		if sg.start >= a && sg.end <= b && (best == nil || sg.h > best.h) {
			best = sg
		}
	}
	return best
}

// placementName is "kernel" or "module (path args)".
func placementName(pl loader.Placement) string {
	if pl.Name != "" {
		return pl.What + " (" + pl.Name + ")"
	}
	return pl.What
}

// placementLabel is what stands beside a placement.
func placementLabel(pl loader.Placement) string {
	return fmt.Sprintf("%s %#08x-%#08x %s", placementName(pl), pl.Start, pl.End(), human(pl.Size))
}

// placement draws one placed piece and its label to the right.
func (s *svgWriter) placement(l *layout, pl loader.Placement) {
	name := placementName(pl)
	fill, ok := placeFill[pl.What]
	if !ok {
		fill = "#5d7fb9"
	}
	y0, y1 := r1(l.y[pl.End()]), r1(l.y[pl.Start])
	sg := l.tallest(pl.Start, pl.End())
	if pl.Size == 0 || sg == nil {
		// An empty piece: a thin mark at its address.
		y0, y1 = y1-2, y1+2
		sg = &segment{yTop: y0, h: 4}
	}
	rng := fmt.Sprintf("%#08x-%#08x", pl.Start, pl.End())
	s.printf(`<g class="placement" data-what="%s">`, esc(pl.What))
	s.printf(`<title>%s %s (%s)</title>`, esc(name), rng, human(pl.Size))
	s.printf(`<rect data-start="%#x" data-end="%#x" x="%d" y="%.1f" width="%d" height="%.1f" fill="%s" stroke="#1f3f75"/>`, pl.Start, pl.End(), placeX, y0, placeW, y1-y0, fill)
	// The label's leader line runs from the piece to its text.
	mid := sg.mid()
	s.printf(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#1f3f75" stroke-width="0.8"/>`, placeX+placeW, mid, labelX-3, mid)
	s.printf(`<text x="%d" y="%.1f">%s</text>`, labelX, mid+4, esc(placementLabel(pl)))
	s.printf("</g>\n")
}

// axis labels every boundary with its address.
func (s *svgWriter) axis(l *layout) {
	s.printf(`<g class="axis">`)
	for _, a := range slices.Sorted(maps.Keys(l.y)) {
		y := l.y[a]
		s.printf(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#444"/>`, axisX, y, mapX, y)
		s.printf(`<text x="%d" y="%.1f" text-anchor="end" font-size="10">%#08x</text>`, axisX-3, y+3.5, a)
	}
	s.printf("</g>\n")
}

// breaks marks every squeezed stretch with a zigzag across both columns.
func (s *svgWriter) breaks(l *layout) {
	for _, sg := range l.segs {
		if !sg.broken {
			continue
		}
		y := sg.yTop + sg.h*0.75
		var d strings.Builder
		fmt.Fprintf(&d, "M%d,%.1f", mapX-8, y)
		for x, up := mapX-8, true; x < placeX+placeW+8; up = !up {
			x += 6
			dy := 3.0
			if up {
				dy = -3
			}
			fmt.Fprintf(&d, " L%d,%.1f", x, y+dy)
		}
		s.printf(`<g class="break" data-start="%#x" data-end="%#x"><title>%s not to scale</title>`, sg.start, sg.end, human(sg.end-sg.start))
		s.printf(`<path d="%s" fill="none" stroke="#ffffff" stroke-width="5"/>`, d.String())
		s.printf(`<path d="%s" fill="none" stroke="#555555" stroke-width="1.2"/>`, d.String())
		s.printf("</g>\n")
	}
}

// r1 rounds a coordinate to the 0.1 the document is written with, so that
// rects computed from shared boundaries abut exactly.
func r1(x float64) float64 { return math.Round(x*10) / 10 }

// human is a size for people: "16M", "4K", "16.4M", "70 B".
func human(n uint64) string {
	units := []struct {
		shift uint
		name  string
	}{{30, "G"}, {20, "M"}, {10, "K"}}
	for _, u := range units {
		if n >= 1<<u.shift {
			v := float64(n) / float64(uint64(1)<<u.shift)
			if v == math.Trunc(v) {
				return fmt.Sprintf("%.0f%s", v, u.name)
			}
			return fmt.Sprintf("%.1f%s", v, u.name)
		}
	}
	return fmt.Sprintf("%d B", n)
}
