package main

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// hist is a log-linear histogram of durations in microseconds, in the
// manner of HdrHistogram: values below 2^subBits are exact, above that
// each power of two is split into 2^(subBits-1) equal buckets, so any
// recorded value is known to within 1/64 (1.6%) of itself. It needs no
// range set in advance and merges by adding counts. Not safe for
// concurrent use: keep one per goroutine and merge them.
type hist struct {
	counts   []uint64
	n        uint64
	min, max int64
	sum      float64
}

const (
	subBits  = 7
	subCount = 1 << subBits // 128
	subHalf  = subCount / 2 // 64
)

func newHist() *hist { return &hist{min: math.MaxInt64} }

func bucketOf(v int64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - subBits // >= 1
	return subCount + (shift-1)*subHalf + int(v>>shift) - subHalf
}

// bucketRange is the smallest and largest value that land in bucket i.
func bucketRange(i int) (lo, hi int64) {
	if i < subCount {
		return int64(i), int64(i)
	}
	shift := (i-subCount)/subHalf + 1
	mant := int64((i-subCount)%subHalf + subHalf)
	lo = mant << shift
	return lo, lo + (1 << shift) - 1
}

// record adds one duration (negative ones count as zero).
func (h *hist) record(d time.Duration) {
	v := d.Microseconds()
	if v < 0 {
		v = 0
	}
	b := bucketOf(v)
	if b >= len(h.counts) {
		grown := make([]uint64, b+1+subHalf)
		copy(grown, h.counts)
		h.counts = grown
	}
	h.counts[b]++
	h.n++
	h.sum += float64(v)
	h.min = min(h.min, v)
	h.max = max(h.max, v)
}

func (h *hist) merge(o *hist) {
	if o == nil || o.n == 0 {
		return
	}
	if len(o.counts) > len(h.counts) {
		grown := make([]uint64, len(o.counts))
		copy(grown, h.counts)
		h.counts = grown
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// quantile returns the value at quantile q (0..1) in microseconds: the
// highest value equivalent to the bucket holding the ceil(q*n)-th smallest
// recording (HdrHistogram's convention), never above the largest recorded.
func (h *hist) quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			_, hi := bucketRange(i)
			return min(hi, h.max)
		}
	}
	return h.max
}

func (h *hist) mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// ms converts microseconds to milliseconds for reports.
func ms(us int64) float64 { return float64(us) / 1000 }

// timeline counts events in fixed-width time slots since a start, from
// many goroutines at once, for throughput-over-time plots.
type timeline struct {
	start time.Time
	width time.Duration
	slots []atomic.Int64
}

func newTimeline(start time.Time, width, span time.Duration) *timeline {
	n := int(span/width) + 1
	return &timeline{start: start, width: width, slots: make([]atomic.Int64, n)}
}

func (t *timeline) add(at time.Time, n int64) {
	i := int(at.Sub(t.start) / t.width)
	if i < 0 {
		i = 0
	}
	if i >= len(t.slots) {
		i = len(t.slots) - 1
	}
	t.slots[i].Add(n)
}

// rates returns events per second for each slot up to (not including) the
// slot holding end.
func (t *timeline) rates(end time.Time) []float64 {
	n := min(int(end.Sub(t.start)/t.width)+1, len(t.slots))
	out := make([]float64, n)
	for i := range out {
		out[i] = float64(t.slots[i].Load()) / t.width.Seconds()
	}
	return out
}
