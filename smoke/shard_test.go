package smoke

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

func TestParseShard(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Shard
	}{{"", Shard{}}, {"1/1", Shard{1, 1}}, {"1/3", Shard{1, 3}}, {"3/3", Shard{3, 3}}, {"17/40", Shard{17, 40}}} {
		got, err := ParseShard(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseShard(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if got.String() != tc.in {
			t.Errorf("String %q, want %q", got.String(), tc.in)
		}
	}
	// Naming the flag is the message's contract.
	for _, bad := range []string{"0/3", "4/3", "1/0", "-1/3", "+1/3", "1", "1/", "/3", "a/b", "1/3/5", " 1/3", "1 /3", "1.0/3", "0/0", "99999999999999999999/3"} {
		if s, err := ParseShard(bad); err == nil {
			t.Errorf("ParseShard(%q) = %v, want an error", bad, s)
		} else if !strings.Contains(err.Error(), "--shard") {
			t.Errorf("ParseShard(%q): %v does not name the flag", bad, err)
		}
	}
}

// TestShardsCoverEachCaseOnce: for many matrix sizes and shard counts,
// shards 1..N hold every case exactly once, and sizes differ by at most one.
func TestShardsCoverEachCaseOnce(t *testing.T) {
	for size := 0; size <= 40; size++ {
		cases := make([]*Case, size)
		for i := range cases {
			cases[i] = &Case{Name: fmt.Sprintf("k/s%03d", i)}
		}
		for n := 1; n <= 7; n++ {
			seen := map[string]int{}
			lo, hi := size, 0
			for k := 1; k <= n; k++ {
				part := Shard{K: k, N: n}.Select(cases)
				lo, hi = min(lo, len(part)), max(hi, len(part))
				for _, c := range part {
					seen[c.Name]++
				}
			}
			for _, c := range cases {
				if seen[c.Name] != 1 {
					t.Fatalf("size %d, %d shards: %s runs %d times", size, n, c.Name, seen[c.Name])
				}
			}
			if len(seen) != size {
				t.Fatalf("size %d, %d shards: %d distinct cases", size, n, len(seen))
			}
			if size > 0 && hi-lo > 1 {
				t.Errorf("size %d, %d shards: sizes from %d to %d", size, n, lo, hi)
			}
		}
	}
}

// TestShardsOfAMatrix: 1/3, 2/3, 3/3 of a parsed matrix, as the command
// selects them (after --run), are deterministic and cover it once.
func TestShardsOfAMatrix(t *testing.T) {
	text := "kernels: [{name: a}, {name: b}, {name: c}]\nscenarios: [{name: s1}, {name: s2}, {name: s3}, {name: s4}]\nvmms: [kvm, qemu]\n"
	for _, run := range []string{"", "s[12]", "^b/"} {
		m, err := Parse([]byte(text), "m.yaml")
		if err != nil {
			t.Fatal(err)
		}
		var re *regexp.Regexp
		if run != "" {
			re = regexp.MustCompile(run)
		}
		all := Filter(m.Cases, re)
		seen := map[string]int{}
		for k := 1; k <= 3; k++ {
			first := Shard{K: k, N: 3}.Select(Filter(m.Cases, re))
			again, _ := Parse([]byte(text), "m.yaml")
			second := Shard{K: k, N: 3}.Select(Filter(again.Cases, re))
			if len(first) != len(second) {
				t.Fatalf("shard %d/3 not deterministic", k)
			}
			for i := range first {
				if first[i].Name != second[i].Name {
					t.Fatalf("shard %d/3 not deterministic: %s vs %s", k, first[i].Name, second[i].Name)
				}
				seen[first[i].Name]++
			}
		}
		if len(seen) != len(all) {
			t.Errorf("--run %q: shards ran %d distinct cases of %d", run, len(seen), len(all))
		}
		for name, n := range seen {
			if n != 1 {
				t.Errorf("--run %q: %s ran %d times", run, name, n)
			}
		}
	}
}
