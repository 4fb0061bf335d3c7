package main

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Results are the figures of a run: for each benchmark ("pkg:Name/sub",
// without the -GOMAXPROCS suffix) and unit, the value of each count.
type Results struct {
	Quick bool
	m     map[string]map[string][]float64
	order []string // benchmarks in the order they ran
}

var procSuffix = regexp.MustCompile(`-\d+$`)

func parseRun(r *Run) (*Results, error) {
	res := &Results{Quick: r.Quick, m: make(map[string]map[string][]float64)}
	for _, s := range r.Steps {
		pkg := path.Base(s.Package)
		if s.Module == "bench" {
			pkg = "bench"
		}
		for line := range strings.Lines(s.Output) {
			f := strings.Fields(line)
			if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
				continue
			}
			if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
				continue // not a result line
			}
			key := pkg + ":" + procSuffix.ReplaceAllString(f[0], "")
			units := res.m[key]
			if units == nil {
				units = make(map[string][]float64)
				res.m[key] = units
				res.order = append(res.order, key)
			}
			for i := 2; i+1 < len(f); i += 2 {
				v, err := strconv.ParseFloat(f[i], 64)
				if err != nil {
					return nil, fmt.Errorf("%s: bad value %q in %q", key, f[i], strings.TrimSpace(line))
				}
				units[f[i+1]] = append(units[f[i+1]], v)
			}
		}
	}
	if len(res.m) == 0 {
		return nil, fmt.Errorf("no benchmark results in the run")
	}
	return res, nil
}

// med returns the median of a figure over the run's counts.
func (r *Results) med(key, unit string) (float64, bool) {
	vs := r.m[key][unit]
	if len(vs) == 0 {
		return 0, false
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2], true
	}
	return (s[n/2-1] + s[n/2]) / 2, true
}

// all returns every value of a figure, in run order.
func (r *Results) all(key, unit string) []float64 { return r.m[key][unit] }

// has reports whether the run measured key.
func (r *Results) has(key string) bool { return r.m[key] != nil }
