package leader

import (
	"math"
	"math/bits"
	"time"
)

// subBuckets is the number of buckets per power of two: values are kept
// within 1/16 (6.25 %) of their size.
const subBucketBits = 4

// Histogram records durations in log-linear buckets: constant memory,
// ~6 % precision. The zero value is ready. Not safe for concurrent use.
type Histogram struct {
	counts [64 << subBucketBits]int64
	n      int64
	max    time.Duration
	sum    time.Duration
}

func bucketOf(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < 1<<subBucketBits {
		return int(v)
	}
	exp := bits.Len64(v) - 1 - subBucketBits // ≥ 0
	mant := v >> exp                         // in [16, 32)
	return (exp+1)<<subBucketBits + int(mant-1<<subBucketBits)
}

// bucketValue is the middle of bucket b.
func bucketValue(b int) time.Duration {
	if b < 1<<subBucketBits {
		return time.Duration(b)
	}
	exp := b>>subBucketBits - 1
	mant := uint64(b&(1<<subBucketBits-1)) + 1<<subBucketBits
	lo := mant << exp
	return time.Duration(lo + (uint64(1)<<exp)/2)
}

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	h.counts[bucketOf(d)]++
	h.n++
	h.sum += d
	h.max = max(h.max, d)
}

// Merge adds every duration of o.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// Count is the number of durations recorded.
func (h *Histogram) Count() int64 { return h.n }

// Max is the largest duration recorded, exactly.
func (h *Histogram) Max() time.Duration { return h.max }

// Mean is the mean of the durations recorded.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return h.sum / time.Duration(h.n)
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1), within the bucket
// precision, never above Max.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	// The rank, less a hair: q*n computed as 7.000000000000001 for
	// 0.07*100 is rank 7, not 8.
	rank := int64(math.Ceil(q*float64(h.n) - 1e-9))
	rank = min(max(rank, 1), h.n)
	if rank == h.n {
		return h.max
	}
	var seen int64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(bucketValue(b), h.max)
		}
	}
	return h.max
}
