package main

import (
	"fmt"
	"html"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// Plots are hand-written SVG: a latency histogram on a logarithmic time
// axis and throughput over time. No plotting dependency is needed for two
// kinds of chart.

const (
	plotW, plotH           = 760, 380
	marginL, marginR       = 80, 24
	marginT, marginB       = 44, 56
	innerW                 = plotW - marginL - marginR
	innerH                 = plotH - marginT - marginB
	binsPerDecade          = 20
	plotFont               = `font-family="sans-serif" font-size="12"`
	seriesColors           = "#1f77b4,#d62728,#2ca02c,#9467bd"
	histBarColor           = "#4c78a8"
	percentileMarkerColors = "#2ca02c,#ff7f0e,#d62728"
)

// plotName is the file name stem of a run's plots.
func plotName(r *result) string {
	name := r.Scenario
	if r.Settings.Mode == "open" {
		name += fmt.Sprintf("-rate%g", r.Settings.Rate)
	}
	return name
}

func writePlots(dir string, r *result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	stem := filepath.Join(dir, plotName(r))
	if r.hist != nil && r.hist.n > 0 {
		if err := os.WriteFile(stem+"-latency.svg", []byte(histogramSVG(r.hist, r.Scenario+": "+r.histTitle)), 0o644); err != nil {
			return err
		}
	}
	if len(r.series) > 0 {
		svg := timeSeriesSVG(r.series, r.seriesDt.Seconds(), r.window, r.Scenario+": throughput over time")
		if err := os.WriteFile(stem+"-throughput.svg", []byte(svg), 0o644); err != nil {
			return err
		}
	}
	return nil
}

type svgBuf struct{ strings.Builder }

func (b *svgBuf) f(format string, args ...any) { fmt.Fprintf(&b.Builder, format, args...) }

func (b *svgBuf) open(title string) {
	b.f(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">`+"\n", plotW, plotH, plotW, plotH)
	b.f(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	b.f(`<text x="%d" y="24" font-family="sans-serif" font-size="15" font-weight="bold">%s</text>`+"\n", marginL, html.EscapeString(title))
}

func (b *svgBuf) axes(xLabel, yLabel string) {
	b.f(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", marginL, marginT+innerH, marginL+innerW, marginT+innerH)
	b.f(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", marginL, marginT, marginL, marginT+innerH)
	b.f(`<text x="%d" y="%d" %s text-anchor="middle">%s</text>`+"\n", marginL+innerW/2, plotH-12, plotFont, html.EscapeString(xLabel))
	b.f(`<text x="16" y="%d" %s text-anchor="middle" transform="rotate(-90 16 %d)">%s</text>`+"\n",
		marginT+innerH/2, plotFont, marginT+innerH/2, html.EscapeString(yLabel))
}

// yTicks draws horizontal grid lines and labels for 0..top.
func (b *svgBuf) yTicks(top float64) {
	for i := 0; i <= 4; i++ {
		v := top * float64(i) / 4
		y := float64(marginT+innerH) - float64(innerH)*float64(i)/4
		b.f(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", marginL, y, marginL+innerW, y)
		b.f(`<text x="%d" y="%.1f" %s text-anchor="end">%s</text>`+"\n", marginL-6, y+4, plotFont, shortNum(v))
	}
}

// niceTop rounds v up to 1, 2 or 5 times a power of ten.
func niceTop(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func shortNum(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", math.Round(v/1e5)/10)
	case v >= 1e4:
		return fmt.Sprintf("%gk", math.Round(v/1e2)/10)
	case v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.2g", v)
	}
}

// histogramSVG draws h (microseconds) as bars over a log10 axis in ms,
// with the p50, p99 and p99.9 marked.
func histogramSVG(h *hist, title string) string {
	lo := math.Floor(math.Log10(max(float64(max(h.min, 1)), 1)))
	hi := math.Ceil(math.Log10(float64(max(h.max, 1)) + 1))
	if hi <= lo {
		hi = lo + 1
	}
	nb := int((hi - lo) * binsPerDecade)
	bins := make([]uint64, nb)
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		l, u := bucketRange(i)
		mid := math.Max(float64(l+u)/2, 1)
		j := int((math.Log10(mid) - lo) * binsPerDecade)
		bins[min(max(j, 0), nb-1)] += c
	}
	var top uint64
	for _, c := range bins {
		top = max(top, c)
	}
	yTop := niceTop(float64(top))
	x := func(logv float64) float64 { return float64(marginL) + (logv-lo)/(hi-lo)*float64(innerW) }

	var b svgBuf
	b.open(title)
	b.yTicks(yTop)
	bw := float64(innerW) / float64(nb)
	for j, c := range bins {
		if c == 0 {
			continue
		}
		bh := float64(c) / yTop * float64(innerH)
		b.f(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n",
			float64(marginL)+float64(j)*bw, float64(marginT+innerH)-bh, math.Max(bw-1, 1), bh, histBarColor)
	}
	for d := lo; d <= hi; d++ { // decade ticks, labelled in ms
		px := x(d)
		b.f(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black"/>`+"\n", px, marginT+innerH, px, marginT+innerH+5)
		b.f(`<text x="%.1f" y="%d" %s text-anchor="middle">%s</text>`+"\n", px, marginT+innerH+18, plotFont,
			shortNum(math.Pow(10, d)/1000))
	}
	colors := strings.Split(percentileMarkerColors, ",")
	for i, q := range []struct {
		name string
		q    float64
	}{{"p50", 0.5}, {"p99", 0.99}, {"p99.9", 0.999}} {
		v := float64(max(h.quantile(q.q), 1))
		px := x(math.Log10(v))
		b.f(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-dasharray="4 3"/>`+"\n",
			px, marginT, px, marginT+innerH, colors[i])
		tx, anchor := px+3, "start"
		if px > float64(marginL+innerW-110) { // keep the label inside the plot
			tx, anchor = px-3, "end"
		}
		b.f(`<text x="%.1f" y="%d" %s fill="%s" text-anchor="%s">%s %.3g ms</text>`+"\n",
			tx, marginT+12+14*i, plotFont, colors[i], anchor, q.name, v/1000)
	}
	b.axes("milliseconds (log scale)", fmt.Sprintf("count (n=%d)", h.n))
	b.f("</svg>\n")
	return b.String()
}

// timeSeriesSVG draws rates (events/s per slot of dt seconds) as lines,
// shading the measured window [from, to] (seconds) when there is one.
func timeSeriesSVG(ss []series, dt float64, window [2]float64, title string) string {
	n, top := 0, 0.0
	for _, s := range ss {
		n = max(n, len(s.rates))
		for _, v := range s.rates {
			top = math.Max(top, v)
		}
	}
	n = max(n, 2)
	yTop := niceTop(top)
	span := float64(n) * dt
	x := func(t float64) float64 { return float64(marginL) + t/span*float64(innerW) }
	y := func(v float64) float64 { return float64(marginT+innerH) - v/yTop*float64(innerH) }

	var b svgBuf
	b.open(title)
	if window[1] > window[0] {
		b.f(`<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#f3f3f3"/>`+"\n",
			x(window[0]), marginT, x(window[1])-x(window[0]), innerH)
		b.f(`<text x="%.1f" y="%d" %s fill="#777">measured</text>`+"\n", x(window[0])+4, marginT+innerH-6, plotFont)
	}
	b.yTicks(yTop)
	step := niceTop(span / 8)
	for t := 0.0; t <= span+1e-9; t += step {
		px := x(t)
		b.f(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black"/>`+"\n", px, marginT+innerH, px, marginT+innerH+5)
		b.f(`<text x="%.1f" y="%d" %s text-anchor="middle">%s</text>`+"\n", px, marginT+innerH+18, plotFont, shortNum(t))
	}
	colors := strings.Split(seriesColors, ",")
	for i, s := range ss {
		if len(s.rates) == 0 {
			continue
		}
		var pts []string
		for j, v := range s.rates {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x((float64(j)+0.5)*dt), y(v)))
		}
		c := colors[i%len(colors)]
		b.f(`<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", c, strings.Join(pts, " "))
		b.f(`<rect x="%d" y="%d" width="12" height="3" fill="%s"/>`+"\n", marginL+innerW-170, marginT+8+16*i, c)
		b.f(`<text x="%d" y="%d" %s>%s</text>`+"\n", marginL+innerW-152, marginT+13+16*i, plotFont, html.EscapeString(s.name))
	}
	b.axes(fmt.Sprintf("seconds (slots of %gs)", dt), "per second")
	b.f("</svg>\n")
	return b.String()
}
