package smoke

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Shard is the K-th of N parts of a matrix (1-based); the zero Shard is
// the whole matrix.
type Shard struct {
	K, N int
}

// ParseShard reads "K/N" with 1 <= K <= N; "" is the whole matrix.
func ParseShard(s string) (Shard, error) {
	if s == "" {
		return Shard{}, nil
	}
	ks, ns, ok := strings.Cut(s, "/")
	k, kerr := strconv.Atoi(ks)
	n, nerr := strconv.Atoi(ns)
	if !ok || kerr != nil || nerr != nil || strings.ContainsAny(s, "+- ") {
		return Shard{}, fmt.Errorf("--shard %q: want K/N, e.g. 1/3 (shard K of N, counted from 1)", s)
	}
	if n < 1 {
		return Shard{}, fmt.Errorf("--shard %q: N must be at least 1", s)
	}
	if k < 1 || k > n {
		return Shard{}, fmt.Errorf("--shard %q: K must be 1..%d (shards are counted from 1)", s, n)
	}
	return Shard{K: k, N: n}, nil
}

func (s Shard) String() string {
	if s.N == 0 {
		return ""
	}
	return fmt.Sprintf("%d/%d", s.K, s.N)
}

// Select returns the shard's cases: those at index K-1, K-1+N, K-1+2N, ...
// of cases (which must be in the matrix's sorted order). Shards 1..N
// together hold each case exactly once, and their sizes differ by at most
// one.
func (s Shard) Select(cases []*Case) []*Case {
	if s.N <= 1 {
		return cases
	}
	var out []*Case
	for i := s.K - 1; i < len(cases); i += s.N {
		out = append(out, cases[i])
	}
	return out
}

// Filter returns the cases whose name matches re (nil: all).
func Filter(cases []*Case, re *regexp.Regexp) []*Case {
	if re == nil {
		return cases
	}
	var out []*Case
	for _, c := range cases {
		if re.MatchString(c.Name) {
			out = append(out, c)
		}
	}
	return out
}
