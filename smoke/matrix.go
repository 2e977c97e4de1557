package smoke

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"kvmboot/boot"
	"kvmboot/loader"
	"kvmboot/loader/memmap"
	"kvmboot/machine"
)

// MatrixError is a problem with a matrix file: which file, which line
// (1-based), what. Error gives one line, "FILE:LINE: problem".
type MatrixError struct {
	File string
	Line int
	Msg  string
	Err  error // the error behind Msg, if any (reading the file); Msg already says it
}

// Unwrap returns Err, so that errors.Is(err, fs.ErrNotExist) works.
func (e *MatrixError) Unwrap() error { return e.Err }

func (e *MatrixError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// DefaultTimeout is a case's timeout when the matrix gives none.
const DefaultTimeout = 60 * time.Second

// The YAML shapes, decoded strictly (unknown fields are errors).
type matrixYAML struct {
	Name      string         `yaml:"name"`
	Defaults  defaultsYAML   `yaml:"defaults"`
	Kernels   []kernelYAML   `yaml:"kernels"`
	Scenarios []scenarioYAML `yaml:"scenarios"`
	VMMs      []vmmYAML      `yaml:"vmms"`
	Exclude   []filterYAML   `yaml:"exclude"`
	Include   []filterYAML   `yaml:"include"`
	Overrides []overrideYAML `yaml:"overrides"`
}

type defaultsYAML struct {
	Timeout     string       `yaml:"timeout"`
	Mem         string       `yaml:"mem"`
	Smp         *int         `yaml:"smp"`
	VMM         string       `yaml:"vmm"`
	Accel       string       `yaml:"accel"`
	Placement   string       `yaml:"placement"`
	Expectation *expectation `yaml:"expectation"`
}

type kernelYAML struct {
	Name        string       `yaml:"name"`
	Path        string       `yaml:"path"`
	Protocol    string       `yaml:"protocol"`
	Cmdline     string       `yaml:"cmdline"`
	Initrd      string       `yaml:"initrd"`
	Modules     []string     `yaml:"modules"`
	NoVerify    bool         `yaml:"no_verify"`
	Mem         string       `yaml:"mem"`
	Smp         *int         `yaml:"smp"`
	VMM         string       `yaml:"vmm"`
	Accel       string       `yaml:"accel"`
	Timeout     string       `yaml:"timeout"`
	Expectation *expectation `yaml:"expectation"`
}

type scenarioYAML struct {
	Name         string       `yaml:"name"`
	BadRAM       []string     `yaml:"bad_ram"`
	Mem          string       `yaml:"mem"`
	Smp          *int         `yaml:"smp"`
	Placement    string       `yaml:"placement"`
	LoadAddress  string       `yaml:"load_address"`
	Region       string       `yaml:"region"`
	Cmdline      string       `yaml:"cmdline"`
	BadRAMPolicy string       `yaml:"bad_ram_policy"`
	VMM          string       `yaml:"vmm"`
	Accel        string       `yaml:"accel"`
	Timeout      string       `yaml:"timeout"`
	Expectation  *expectation `yaml:"expectation"`
}

// expectation is one level's expectation; nil fields are not set there.
type expectation struct {
	Status             *int    `yaml:"status"`
	Outcome            *string `yaml:"outcome"`
	Expect             *string `yaml:"expect"`
	MustNotTouchBadRAM *bool   `yaml:"must_not_touch_bad_ram"`
}

type filterYAML struct {
	Kernel   string `yaml:"kernel"`
	Scenario string `yaml:"scenario"`
	VMM      string `yaml:"vmm"`
}

type overrideYAML struct {
	Kernel      string       `yaml:"kernel"`
	Scenario    string       `yaml:"scenario"`
	VMM         string       `yaml:"vmm"`
	Timeout     string       `yaml:"timeout"`
	Expectation *expectation `yaml:"expectation"`
}

// vmmYAML is a vmms axis entry: "kvm" or {name: x, vmm: qemu, accel: tcg}.
type vmmYAML struct {
	// The tags name the fields for knownFields; UnmarshalYAML decodes.
	Name  string `yaml:"name"`
	VMM   string `yaml:"vmm"`
	Accel string `yaml:"accel"`
}

func (v *vmmYAML) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		v.VMM = n.Value
		return nil
	case yaml.MappingNode:
		// Decoded by hand: a custom unmarshaler's Node.Decode would not be strict.
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if val.Kind != yaml.ScalarNode {
				return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: vmms entry field %s: want a string", val.Line, k.Value)}}
			}
			switch k.Value {
			case "name":
				v.Name = val.Value
			case "vmm":
				v.VMM = val.Value
			case "accel":
				v.Accel = val.Value
			default:
				return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: field %s not found in type smoke.vmmYAML", k.Line, k.Value)}}
			}
		}
		return nil
	}
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: vmms entry: want a backend name or {vmm, accel, name}", n.Line)}}
}

// Matrix is a parsed and checked matrix file.
type Matrix struct {
	Name string
	File string // as given
	// Cases is the expansion: every kernel x scenario (x vmm) that is not
	// excluded or was included again, sorted by name.
	Cases []*Case
	// Backends lists the vmm labels of the cases, in axis order.
	Backends []string
	// Axis says the matrix has a vmms axis (case names then have three parts).
	Axis bool
}

// Expectation is a case's resolved expectation.
type Expectation struct {
	Status             *int            // nil: not checked
	Outcome            machine.Outcome // "": not checked
	Expect             string          // the --expect pattern, "" for none
	MustNotTouchBadRAM bool
}

// String says what is expected, e.g. "pass (0)", "status 3", "timeout".
func (e Expectation) String() string {
	switch {
	case e.Status != nil && e.Outcome != "":
		return fmt.Sprintf("%s (%d)", e.Outcome, *e.Status)
	case e.Status != nil:
		return fmt.Sprintf("status %d", *e.Status)
	case e.Outcome != "":
		return string(e.Outcome)
	}
	return "anything"
}

// Case is one boot of the matrix.
type Case struct {
	Name     string // kernel/scenario or kernel/scenario/vmm
	Kernel   string
	Scenario string
	VMM      string // the vmm label: an axis entry's name, or the vmm asked for
	Config   boot.Config
	Want     Expectation
	Timeout  time.Duration
}

// namePattern is what kernel, scenario and vmm names may contain: they
// become parts of case names, JUnit attributes and console file paths.
// The regexps here are compiled on first use, not at start-up: every
// kvmboot command links this package, only smoke parses matrices.
var namePattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`) })

// Load reads and checks a matrix file.
func Load(file string) (*Matrix, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, &MatrixError{File: file, Msg: errMsg(err), Err: err}
	}
	return Parse(data, file)
}

func errMsg(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// Parse checks a matrix read from file (relative paths in it resolve
// against file's folder).
func Parse(data []byte, file string) (*Matrix, error) {
	p := &parser{file: file, dir: filepath.Dir(file)}
	m, err := p.parse(data)
	if err != nil {
		var me *MatrixError
		if errors.As(err, &me) {
			return nil, me
		}
		return nil, &MatrixError{File: file, Line: 1, Msg: err.Error()}
	}
	return m, nil
}

type parser struct {
	file string
	dir  string
	root *yaml.Node // the document's top mapping
	y    matrixYAML
	// expects holds the compiled expect patterns: many cases share one.
	expects map[string]*regexp.Regexp

	// The levels, as build reads them.
	def       level
	kernels   []*kernel
	scenarios []*scenario
	axis      []*vmmChoice
	overrides []level // by index in y.Overrides
}

func (p *parser) errf(line int, format string, args ...any) error {
	if line <= 0 {
		line = 1
	}
	return &MatrixError{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)}
}

// line finds the line of the node at path (string keys, int indexes); a
// missing step gives the line of the deepest node found.
func (p *parser) line(steps ...any) int {
	n := p.root
	if n == nil {
		return 1
	}
	line := n.Line
	for _, s := range steps {
		var next *yaml.Node
		switch s := s.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == s {
						next = n.Content[i+1]
						break
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && s >= 0 && s < len(n.Content) {
				next = n.Content[s]
			}
		}
		if next == nil {
			break
		}
		n, line = next, next.Line
	}
	return line
}

var (
	yamlLineRE  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`) })
	notFoundRE  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^field (\S+) not found in type smoke\.(\w+)$`) })
	unmarshalRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile("^cannot unmarshal !!(\\w+) `(.*)` into (.*)$") })
)

// yamlTypes maps the YAML shapes to what the user calls them.
var yamlTypes = map[string]any{
	"matrixYAML":   matrixYAML{},
	"defaultsYAML": defaultsYAML{},
	"kernelYAML":   kernelYAML{},
	"scenarioYAML": scenarioYAML{},
	"expectation":  expectation{},
	"filterYAML":   filterYAML{},
	"overrideYAML": overrideYAML{},
	"vmmYAML":      vmmYAML{},
}

var yamlTypeNames = map[string]string{
	"matrixYAML": "the matrix", "defaultsYAML": "defaults", "kernelYAML": "a kernel",
	"scenarioYAML": "a scenario", "expectation": "an expectation", "filterYAML": "an include/exclude entry",
	"overrideYAML": "an override", "vmmYAML": "a vmms entry",
}

func knownFields(typ string) string {
	v, ok := yamlTypes[typ]
	if !ok {
		return ""
	}
	var names []string
	t := reflect.TypeOf(v)
	for i := 0; i < t.NumField(); i++ {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); tag != "" {
			names = append(names, tag)
		}
	}
	return strings.Join(names, ", ")
}

// yamlError turns a yaml.v3 error into one line with the file and line.
func (p *parser) yamlError(err error) error {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	m := yamlLineRE().FindStringSubmatch(msg)
	if m == nil {
		return p.errf(1, "%s", strings.ReplaceAll(msg, "\n", " "))
	}
	line := 0
	fmt.Sscan(m[1], &line)
	text := m[2]
	if f := notFoundRE().FindStringSubmatch(text); f != nil {
		where := yamlTypeNames[f[2]]
		if where == "" {
			where = f[2]
		}
		text = fmt.Sprintf("unknown field %q in %s (known: %s)", f[1], where, knownFields(f[2]))
	} else if u := unmarshalRE().FindStringSubmatch(text); u != nil {
		want := u[3]
		switch {
		case want == "int" || want == "*int":
			want = "a whole number"
		case want == "string" || want == "*string":
			want = "a string"
		case want == "bool" || want == "*bool":
			want = "true or false"
		case strings.HasPrefix(want, "[]"):
			want = "a list"
		case strings.HasPrefix(want, "smoke.") || strings.HasPrefix(want, "*smoke."):
			want = "a mapping"
		}
		text = fmt.Sprintf("want %s, got %s %q", want, kindWord(u[1]), u[2])
	}
	return p.errf(line, "%s", text)
}

func kindWord(tag string) string {
	switch tag {
	case "seq":
		return "a list"
	case "map":
		return "a mapping"
	case "str":
		return "the string"
	case "int":
		return "the number"
	case "bool":
		return "the boolean"
	}
	return tag
}

func (p *parser) parse(data []byte) (*Matrix, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		err = p.yamlError(err)
		var me *MatrixError
		if errors.As(err, &me) {
			lines := strings.Split(string(data), "\n")
			if me.Line >= 1 && me.Line <= len(lines) && strings.Contains(lines[me.Line-1], "\t") {
				me.Msg += " (YAML indents with spaces, not tabs)"
			}
		}
		return nil, err
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, p.errf(1, "empty matrix: want kernels and scenarios")
	}
	p.root = doc.Content[0]
	if p.root.Kind != yaml.MappingNode {
		return nil, p.errf(p.root.Line, "want a mapping with kernels and scenarios at the top")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&p.y); err != nil {
		return nil, p.yamlError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		if err != nil {
			return nil, p.yamlError(err)
		}
		return nil, p.errf(extra.Line, "a second YAML document: a matrix file holds one")
	}
	return p.build()
}

// level is what one level (defaults, a kernel, a scenario, an override)
// sets for the cases under it; zero values are not set there.
type level struct {
	mem     uint64
	cpus    int
	vmm     *vmmChoice
	timeout time.Duration
	policy  loader.Policy
	expect  *expectation
}

type vmmChoice struct {
	label string
	vmm   boot.VMM
	accel string
}

type kernel struct {
	kernelYAML
	level
	index    int
	path     string
	initrd   string
	modules  []boot.ModuleSpec
	protocol loader.Protocol
}

type scenario struct {
	scenarioYAML
	level
	index       int
	loadAddress *uint64
	region      *memmap.Range
	badPolicy   machine.BadRAMPolicy
}

// checkVMM checks a vmm and accel pair read at line.
func (p *parser) checkVMM(vmm, accel string, vline, aline int) (*vmmChoice, error) {
	if vmm == "" && accel == "" {
		return nil, nil
	}
	if vmm == "" {
		return nil, p.errf(aline, "accel %q without vmm: name the backend too (vmm: qemu)", accel)
	}
	if err := boot.CheckBackend(boot.VMM(vmm), ""); err != nil {
		return nil, p.errf(vline, "%v", err)
	}
	if err := boot.CheckBackend(boot.VMM(vmm), accel); err != nil {
		return nil, p.errf(aline, "%v", err)
	}
	c := &vmmChoice{vmm: boot.VMM(vmm), accel: accel, label: vmm}
	if accel != "" && accel != boot.AccelAuto {
		c.label += "-" + accel
	}
	return c, nil
}

func (p *parser) size(s string, line int, what string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := memmap.ParseSize(s)
	if err != nil {
		return 0, p.errf(line, "%s %q: %v", what, s, err)
	}
	if err := machine.CheckMemSize(n); err != nil {
		return 0, p.errf(line, "%s: %v", what, err)
	}
	return n, nil
}

func (p *parser) duration(s string, line int) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, p.errf(line, "timeout %q: want a positive duration such as 30s or 2m", s)
	}
	return d, nil
}

func (p *parser) expectation(e *expectation, steps ...any) error {
	if e == nil {
		return nil
	}
	at := func(field string) int { return p.line(append(append([]any{}, steps...), "expectation", field)...) }
	if e.Status != nil && (*e.Status < 0 || *e.Status > 255) {
		return p.errf(at("status"), "status %d: want an exit status 0..255", *e.Status)
	}
	if e.Outcome != nil {
		switch machine.Outcome(*e.Outcome) {
		case machine.Pass, machine.Fail, machine.Timeout, machine.Crash, machine.Error:
		default:
			return p.errf(at("outcome"), "outcome %q: want pass, fail, timeout, crash or error", *e.Outcome)
		}
	}
	if e.Expect != nil && *e.Expect != "" {
		re, err := regexp.Compile(*e.Expect)
		if err != nil {
			return p.errf(at("expect"), "expect %q: %v", *e.Expect, err)
		}
		if p.expects == nil {
			p.expects = map[string]*regexp.Regexp{}
		}
		p.expects[*e.Expect] = re
	}
	return nil
}

// expandPath expands $VAR and ${VAR} from the environment and resolves a
// relative path against the matrix file's folder.
func (p *parser) expandPath(s string, line int, what string) (string, error) {
	if s == "" {
		return "", nil
	}
	var missing []string
	out := os.Expand(s, func(v string) string {
		if v == "$" {
			return "$"
		}
		val, ok := os.LookupEnv(v)
		if !ok {
			missing = append(missing, v)
		}
		return val
	})
	if len(missing) > 0 {
		return "", p.errf(line, "%s %q: environment variable %s is not set", what, s, missing[0])
	}
	if out == "" {
		return "", p.errf(line, "%s %q: empty after expanding the environment", what, s)
	}
	if !filepath.IsAbs(out) {
		out = filepath.Join(p.dir, out)
	}
	return out, nil
}

// build turns the decoded document into the matrix, level by level:
// defaults, kernels, scenarios, the vmms axis, filters and overrides; then
// the cross product, what exclude and include keep, and each kept case
// resolved from its levels.
func (p *parser) build() (*Matrix, error) {
	m := &Matrix{Name: p.y.Name, File: p.file}
	if m.Name == "" {
		m.Name = strings.TrimSuffix(filepath.Base(p.file), filepath.Ext(p.file))
	}
	var err error
	if p.def, err = p.readDefaults(); err != nil {
		return nil, err
	}
	if p.kernels, err = p.readKernels(); err != nil {
		return nil, err
	}
	if p.scenarios, err = p.readScenarios(); err != nil {
		return nil, err
	}
	if p.axis, err = p.readAxis(); err != nil {
		return nil, err
	}
	m.Axis = len(p.axis) > 0
	if p.overrides, err = p.readFilters(); err != nil {
		return nil, err
	}
	all := p.crossProduct()
	keep, err := p.selectCases(all)
	if err != nil {
		return nil, err
	}
	used := make([]bool, len(p.overrides))
	for j, cand := range all {
		if !keep[j] {
			continue
		}
		c, err := p.resolve(cand, used)
		if err != nil {
			return nil, err
		}
		m.Cases = append(m.Cases, c)
	}
	for i, u := range used {
		if !u {
			return nil, p.errf(p.line("overrides", i), "override matches no case")
		}
	}
	if len(m.Cases) == 0 {
		return nil, p.errf(p.line("exclude"), "every case is excluded")
	}
	sort.Slice(m.Cases, func(i, j int) bool { return m.Cases[i].Name < m.Cases[j].Name })
	m.Backends = p.backends(m.Cases)
	return m, nil
}

// readLevel reads what defaults, kernels and scenarios may all set; steps
// is the level's path in the document, for the lines of errors.
func (p *parser) readLevel(mem string, smp *int, vmm, accel, timeout string, e *expectation, steps ...any) (level, error) {
	at := func(field string) int { return p.line(append(slices.Clone(steps), field)...) }
	var l level
	var err error
	if l.timeout, err = p.duration(timeout, at("timeout")); err != nil {
		return l, err
	}
	if l.mem, err = p.size(mem, at("mem"), "mem"); err != nil {
		return l, err
	}
	if smp != nil {
		if err := machine.CheckCPUs(*smp); err != nil {
			return l, p.errf(at("smp"), "smp: %v", err)
		}
		l.cpus = *smp
	}
	if l.vmm, err = p.checkVMM(vmm, accel, at("vmm"), at("accel")); err != nil {
		return l, err
	}
	if err := p.expectation(e, steps...); err != nil {
		return l, err
	}
	l.expect = e
	return l, nil
}

func (p *parser) readDefaults() (level, error) {
	d := p.y.Defaults
	l, err := p.readLevel(d.Mem, d.Smp, d.VMM, d.Accel, d.Timeout, d.Expectation, "defaults")
	if err != nil {
		return l, err
	}
	if l.policy, err = loader.ParsePolicy(d.Placement); err != nil {
		return l, p.errf(p.line("defaults", "placement"), "placement: %v", err)
	}
	return l, nil
}

func (p *parser) readKernels() ([]*kernel, error) {
	if len(p.y.Kernels) == 0 {
		return nil, p.errf(p.line("kernels"), "no kernels: the matrix needs at least one (path \"\" is the built-in test kernel)")
	}
	out := make([]*kernel, len(p.y.Kernels))
	seen := map[string]int{}
	for i, ky := range p.y.Kernels {
		k, err := p.readKernel(i, ky, seen)
		if err != nil {
			return nil, err
		}
		out[i] = k
	}
	return out, nil
}

func (p *parser) readKernel(i int, ky kernelYAML, seen map[string]int) (*kernel, error) {
	k := &kernel{kernelYAML: ky, index: i}
	at := func(field string) int { return p.line("kernels", i, field) }
	if err := p.name(ky.Name, "kernel", at("name"), seen); err != nil {
		return nil, err
	}
	var err error
	if k.path, err = p.expandPath(ky.Path, at("path"), "path"); err != nil {
		return nil, err
	}
	if k.initrd, err = p.expandPath(ky.Initrd, at("initrd"), "initrd"); err != nil {
		return nil, err
	}
	for j, mod := range ky.Modules {
		line := p.line("kernels", i, "modules", j)
		spec, err := boot.ParseModule(mod)
		if err != nil {
			return nil, p.errf(line, "%v", err)
		}
		if spec.Path, err = p.expandPath(spec.Path, line, "module"); err != nil {
			return nil, err
		}
		k.modules = append(k.modules, spec)
	}
	if k.protocol, err = loader.ParseProtocol(ky.Protocol); err != nil {
		return nil, p.errf(at("protocol"), "protocol %q: want auto, multiboot, linux32 or linux16", ky.Protocol)
	}
	if k.level, err = p.readLevel(ky.Mem, ky.Smp, ky.VMM, ky.Accel, ky.Timeout, ky.Expectation, "kernels", i); err != nil {
		return nil, err
	}
	return k, nil
}

func (p *parser) readScenarios() ([]*scenario, error) {
	if len(p.y.Scenarios) == 0 {
		return nil, p.errf(p.line("scenarios"), "no scenarios: the matrix needs at least one (a scenario with only a name boots with no bad RAM)")
	}
	out := make([]*scenario, len(p.y.Scenarios))
	seen := map[string]int{}
	for i, sy := range p.y.Scenarios {
		s, err := p.readScenario(i, sy, seen)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

func (p *parser) readScenario(i int, sy scenarioYAML, seen map[string]int) (*scenario, error) {
	s := &scenario{scenarioYAML: sy, index: i}
	at := func(field string) int { return p.line("scenarios", i, field) }
	if err := p.name(sy.Name, "scenario", at("name"), seen); err != nil {
		return nil, err
	}
	for j, spec := range sy.BadRAM {
		// The full check needs the case's memory size (resolve); a syntax
		// error shows here already.
		if _, err := memmap.ParseBadRAM(spec, 4<<30); err != nil {
			return nil, p.errf(p.line("scenarios", i, "bad_ram", j), "bad_ram %q: %v", spec, err)
		}
	}
	var err error
	if s.level, err = p.readLevel(sy.Mem, sy.Smp, sy.VMM, sy.Accel, sy.Timeout, sy.Expectation, "scenarios", i); err != nil {
		return nil, err
	}
	if sy.Placement != "" {
		if s.policy, err = loader.ParsePolicy(sy.Placement); err != nil {
			return nil, p.errf(at("placement"), "placement: %v", err)
		}
	}
	if sy.LoadAddress != "" {
		a, err := memmap.ParseSize(sy.LoadAddress)
		if err != nil {
			return nil, p.errf(at("load_address"), "load_address %q: %v", sy.LoadAddress, err)
		}
		s.loadAddress = &a
	}
	if sy.Region != "" {
		r, err := memmap.ParseRange(sy.Region)
		if err != nil {
			return nil, p.errf(at("region"), "region: %v", err)
		}
		s.region = &r
	}
	if s.badPolicy, err = machine.ParseBadRAMPolicy(sy.BadRAMPolicy); err != nil {
		return nil, p.errf(at("bad_ram_policy"), "bad_ram_policy: %v", err)
	}
	return s, nil
}

// readAxis reads the vmms axis, which defaults.vmm would contradict.
func (p *parser) readAxis() ([]*vmmChoice, error) {
	var axis []*vmmChoice
	seen := map[string]int{}
	for i, v := range p.y.VMMs {
		line := p.line("vmms", i)
		c, err := p.checkVMM(v.VMM, v.Accel, line, line)
		if err != nil {
			return nil, err
		}
		if c == nil {
			return nil, p.errf(line, "vmms entry without vmm")
		}
		if v.Name != "" {
			c.label = v.Name
		}
		if err := p.name(c.label, "vmms entry", line, seen); err != nil {
			return nil, err
		}
		axis = append(axis, c)
	}
	if len(axis) > 0 && p.def.vmm != nil {
		return nil, p.errf(p.line("defaults", "vmm"), "defaults.vmm and a vmms axis: give one (the axis runs every case on each of its backends)")
	}
	return axis, nil
}

// names are the kernel, scenario or vmm names a filter can match.
func (p *parser) names(kind string) []string {
	var out []string
	switch kind {
	case "kernel":
		for _, k := range p.kernels {
			out = append(out, k.Name)
		}
	case "scenario":
		for _, s := range p.scenarios {
			out = append(out, s.Name)
		}
	case "vmm":
		for _, a := range p.axis {
			out = append(out, a.label)
		}
		for _, l := range p.levels() {
			if l.vmm != nil {
				out = append(out, l.vmm.label)
			}
		}
		for _, v := range boot.VMMs {
			out = append(out, v.String())
		}
	}
	return out
}

// levels are the kernels', the scenarios' and the defaults' settings.
func (p *parser) levels() []*level {
	var out []*level
	for _, k := range p.kernels {
		out = append(out, &k.level)
	}
	for _, s := range p.scenarios {
		out = append(out, &s.level)
	}
	return append(out, &p.def)
}

// checkGlob checks that a filter's pattern matches a name of its kind.
func (p *parser) checkGlob(pattern, kind string, line int) error {
	if pattern == "" {
		return nil
	}
	for _, n := range p.names(kind) {
		ok, err := path.Match(pattern, n)
		if err != nil {
			return p.errf(line, "%s %q: bad pattern: %v", kind, pattern, err)
		}
		if ok {
			return nil
		}
	}
	return p.errf(line, "%s %q matches no %s (have: %s)", kind, pattern, kind, strings.Join(uniq(p.names(kind)), ", "))
}

func (p *parser) checkFilter(list string, i int, f filterYAML) error {
	line := p.line(list, i)
	if f.Kernel == "" && f.Scenario == "" && f.VMM == "" {
		return p.errf(line, "%s entry names no kernel, scenario or vmm", list)
	}
	if err := p.checkGlob(f.Kernel, "kernel", p.line(list, i, "kernel")); err != nil {
		return err
	}
	if err := p.checkGlob(f.Scenario, "scenario", p.line(list, i, "scenario")); err != nil {
		return err
	}
	return p.checkGlob(f.VMM, "vmm", p.line(list, i, "vmm"))
}

// readFilters checks exclude and include against the names, and reads
// the overrides' settings.
func (p *parser) readFilters() ([]level, error) {
	for i, f := range p.y.Exclude {
		if err := p.checkFilter("exclude", i, f); err != nil {
			return nil, err
		}
	}
	for i, f := range p.y.Include {
		if err := p.checkFilter("include", i, f); err != nil {
			return nil, err
		}
	}
	overrides := make([]level, len(p.y.Overrides))
	for i, o := range p.y.Overrides {
		if err := p.checkFilter("overrides", i, o.filter()); err != nil {
			return nil, err
		}
		if o.Timeout == "" && o.Expectation == nil {
			return nil, p.errf(p.line("overrides", i), "override changes nothing: give timeout or expectation")
		}
		var err error
		if overrides[i].timeout, err = p.duration(o.Timeout, p.line("overrides", i, "timeout")); err != nil {
			return nil, err
		}
		if err := p.expectation(o.Expectation, "overrides", i); err != nil {
			return nil, err
		}
		overrides[i].expect = o.Expectation
	}
	return overrides, nil
}

func (o overrideYAML) filter() filterYAML { return filterYAML{o.Kernel, o.Scenario, o.VMM} }

// candidate is a kernel x scenario x vmm of the cross product.
type candidate struct {
	k    *kernel
	s    *scenario
	v    *vmmChoice
	name string
}

func (f filterYAML) matches(c candidate) bool {
	return globMatch(f.Kernel, c.k.Name) && globMatch(f.Scenario, c.s.Name) && globMatch(f.VMM, c.v.label)
}

// crossProduct is every kernel x scenario, on the backends each pair runs
// on: the one a scenario or kernel pins, else each of the axis, else the
// default's, else auto.
func (p *parser) crossProduct() []candidate {
	var all []candidate
	for _, k := range p.kernels {
		for _, s := range p.scenarios {
			for _, v := range p.backendsOf(k, s) {
				name := k.Name + "/" + s.Name
				if len(p.axis) > 0 {
					name += "/" + v.label
				}
				all = append(all, candidate{k, s, v, name})
			}
		}
	}
	return all
}

func (p *parser) backendsOf(k *kernel, s *scenario) []*vmmChoice {
	pinned := cmp.Or(s.vmm, k.vmm)
	switch {
	case pinned != nil:
		// A pinned case takes the label of the axis entry with the same backend.
		v := *pinned
		for _, a := range p.axis {
			if a.vmm == v.vmm && normAccel(a.accel) == normAccel(v.accel) {
				v.label = a.label
			}
		}
		return []*vmmChoice{&v}
	case len(p.axis) > 0:
		return p.axis
	case p.def.vmm != nil:
		return []*vmmChoice{p.def.vmm}
	}
	return []*vmmChoice{{label: boot.VMMAuto.String(), vmm: boot.VMMAuto}}
}

// selectCases applies exclude, then include, to the cross product; each
// entry must matter.
func (p *parser) selectCases(all []candidate) ([]bool, error) {
	keep := make([]bool, len(all))
	for j := range keep {
		keep[j] = true
	}
	for i, f := range p.y.Exclude {
		n := 0
		for j, c := range all {
			if f.matches(c) {
				keep[j] = false
				n++
			}
		}
		if n == 0 {
			return nil, p.errf(p.line("exclude", i), "exclude entry matches no case")
		}
	}
	for i, f := range p.y.Include {
		added, matched := 0, 0
		for j, c := range all {
			if f.matches(c) {
				matched++
				if !keep[j] {
					keep[j] = true
					added++
				}
			}
		}
		switch {
		case matched == 0:
			return nil, p.errf(p.line("include", i), "include entry matches no case")
		case added == 0:
			return nil, p.errf(p.line("include", i), "include entry adds nothing: every case it matches already runs (include adds back cases that exclude dropped; to run only some cases, exclude the others)")
		}
	}
	return keep, nil
}

// resolve is the one place a case's settings are decided: each from the
// most specific level that gives it (scenario, kernel, defaults), then the
// overrides that match the case, in order (used records which did).
func (p *parser) resolve(c candidate, used []bool) (*Case, error) {
	k, s, v := c.k, c.s, c.v
	if k.vmm != nil && s.vmm != nil && (k.vmm.vmm != s.vmm.vmm || normAccel(k.vmm.accel) != normAccel(s.vmm.accel)) {
		return nil, p.errf(p.line("scenarios", s.index, "vmm"), "kernel %s (line %d) runs on %s and scenario %s on %s: exclude the pair or drop one vmm", k.Name, p.line("kernels", k.index, "vmm"), k.vmm.label, s.Name, s.vmm.label)
	}
	out := &Case{Name: c.name, Kernel: k.Name, Scenario: s.Name, VMM: v.label}
	mem := cmp.Or(s.mem, k.mem, p.def.mem, boot.DefaultMemSize)
	cfg := boot.Config{
		Kernel: k.path, MemSize: mem, CPUs: cmp.Or(s.cpus, k.cpus, p.def.cpus), Initrd: k.initrd, Modules: k.modules,
		Protocol: k.protocol, NoVerify: k.NoVerify,
		LoadAddress: s.loadAddress, Region: s.region, BadRAMPolicy: s.badPolicy,
		VMM: v.vmm, Accel: v.accel,
		Cmdline: strings.TrimSpace(strings.TrimSpace(k.Cmdline) + " " + strings.TrimSpace(s.Cmdline)),
		Policy:  cmp.Or(s.policy, p.def.policy),
	}
	for i, spec := range s.BadRAM {
		rs, err := memmap.ParseBadRAM(spec, mem)
		if err != nil {
			return nil, p.errf(p.line("scenarios", s.index, "bad_ram", i), "bad_ram %q with %s of RAM (case %s): %v", spec, memmap.FormatSize(mem), c.name, err)
		}
		cfg.BadRAM = append(cfg.BadRAM, rs...)
	}
	out.Timeout = cmp.Or(s.timeout, k.timeout, p.def.timeout)
	exps := []*expectation{p.def.expect, k.expect, s.expect}
	for i, o := range p.y.Overrides {
		if o.filter().matches(c) {
			used[i] = true
			out.Timeout = cmp.Or(p.overrides[i].timeout, out.Timeout)
			exps = append(exps, p.overrides[i].expect)
		}
	}
	out.Timeout = cmp.Or(out.Timeout, DefaultTimeout)
	cfg.Timeout = out.Timeout
	out.Want = mergeExpectations(exps)
	cfg.Expect = p.expects[out.Want.Expect] // compiled by p.expectation; nil for ""
	out.Config = cfg
	return out, nil
}

// backends are the vmm labels of the cases, the axis's first, in order.
func (p *parser) backends(cases []*Case) []string {
	var out []string
	labels := map[string]bool{}
	add := func(label string) {
		if !labels[label] {
			labels[label] = true
			out = append(out, label)
		}
	}
	for _, a := range p.axis {
		add(a.label)
	}
	for _, c := range cases {
		add(c.VMM)
	}
	return out
}

// name checks a kernel, scenario or vmm name and that it is new.
func (p *parser) name(n, what string, line int, seen map[string]int) error {
	if n == "" {
		return p.errf(line, "%s without a name", what)
	}
	if !namePattern().MatchString(n) {
		return p.errf(line, "%s name %q: use letters, digits and . _ + - (it becomes part of case names and file names)", what, n)
	}
	if prev, ok := seen[n]; ok {
		return p.errf(line, "%s %q is already defined at line %d", what, n, prev)
	}
	seen[n] = line
	return nil
}

func normAccel(a string) string {
	if a == boot.AccelAuto {
		return ""
	}
	return a
}

func globMatch(pattern, name string) bool {
	if pattern == "" {
		return true
	}
	ok, _ := path.Match(pattern, name)
	return ok
}

func uniq(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// mergeExpectations merges expectation levels, later ones winning;
// status and outcome go together.
func mergeExpectations(levels []*expectation) Expectation {
	e := Expectation{MustNotTouchBadRAM: true}
	set := false
	for _, l := range levels {
		if l == nil {
			continue
		}
		if l.Status != nil || l.Outcome != nil {
			set = true
			e.Status, e.Outcome = nil, ""
			if l.Status != nil {
				v := *l.Status
				e.Status = &v
			}
			if l.Outcome != nil {
				e.Outcome = machine.Outcome(*l.Outcome)
			}
		}
		if l.Expect != nil {
			e.Expect = *l.Expect
		}
		if l.MustNotTouchBadRAM != nil {
			e.MustNotTouchBadRAM = *l.MustNotTouchBadRAM
		}
	}
	if !set {
		zero := 0
		e.Status, e.Outcome = &zero, machine.Pass
	}
	return e
}
