package fsm

import (
	"maps"
	"slices"
	"strings"
)

// didYouMean returns ` (did you mean "X"?)` when one name of names is
// close enough to name to be what was meant: the same but for case, or
// within a few edits (one for names of up to 5 characters, two for
// longer ones); the closest, then the first in sorted order. Otherwise
// "".
func didYouMean(name string, names map[string]int) string {
	limit := 1
	if len(name) > 5 {
		limit = 2
	}
	if len(name) < 3 {
		limit = 0
	}
	best, bestDist := "", limit+1
	for _, candidate := range slices.Sorted(maps.Keys(names)) {
		d := editDistance(name, candidate)
		if strings.EqualFold(name, candidate) {
			d = 0
		}
		if d < bestDist {
			best, bestDist = candidate, d
		}
	}
	if best == "" {
		return ""
	}
	return ` (did you mean "` + best + `"?)`
}

// editDistance is the Levenshtein distance between a and b, in bytes
// (names are Go identifiers, compared as written).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
