package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// plotFile is a plot written beside the report, with what the report
// says about it.
type plotFile struct {
	file, title, caption string
	table                []string // Markdown lines of its figures
}

// The benchmark parameters the plots read (see bench/curves_test.go).
var (
	windows   = []int{1, 4, 16, 64, 256, 1000, 4096}
	batches   = []int{1, 4, 16, 64, 256, 1024}
	quantiles = []float64{
		.001, .01, .05, .1, .15, .2, .25, .3, .35, .4, .45, .5, .55, .6, .65, .7,
		.75, .8, .85, .9, .95, .975, .99, .995, .999,
	}
)

var (
	blue   = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	orange = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
	grey   = color.RGBA{R: 0x70, G: 0x70, B: 0x70, A: 0xff}
)

func drawPlots(r *Results, dir string) ([]plotFile, error) {
	var out []plotFile
	for _, draw := range []func(*Results, string) (*plotFile, error){windowPlot, latencyPlot, walBatchPlot} {
		pf, err := draw(r, dir)
		if err != nil {
			return nil, err
		}
		if pf != nil {
			out = append(out, *pf)
		}
	}
	return out, nil
}

func windowPlot(r *Results, dir string) (*plotFile, error) {
	var f, e, d plotter.XYs
	table := []string{"| Window | followerd entries/s | bare stream entries/s | durable echo entries/s | followerd / bare | durable echo / bare |", "|---|---|---|---|---|---|"}
	top := 0.0
	for _, w := range windows {
		key := fmt.Sprintf("bench:BenchmarkStreamWindow/window=%d", w)
		fr, ok1 := r.med(key, "followerd-entries/s")
		er, ok2 := r.med(key, "echo-entries/s")
		dr, ok3 := r.med(key, "durable-entries/s")
		ratio, _ := r.med(key, "followerd-vs-echo")
		dratio, _ := r.med(key, "durable-vs-echo")
		if !ok1 || !ok2 || !ok3 {
			continue
		}
		f = append(f, plotter.XY{X: float64(w), Y: fr / 1e3})
		e = append(e, plotter.XY{X: float64(w), Y: er / 1e3})
		d = append(d, plotter.XY{X: float64(w), Y: dr / 1e3})
		top = math.Max(top, math.Max(fr, math.Max(er, dr))/1e3)
		table = append(table, fmt.Sprintf("| %d | %s | %s | %s | %s | %s |", w, rate(fr), rate(er), rate(dr), fx(ratio), fx(dratio)))
	}
	if len(f) == 0 {
		return nil, nil
	}
	p := newPlot("Replication throughput against the window", "window (entries sent, not yet acknowledged)", "thousand entries per second")
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = ticks(intsAsFloats(windows), func(v float64) string { return strconv.Itoa(int(v)) })
	p.Y.Min, p.Y.Max = 0, top*1.2 // room for the legend
	p.Y.Tick.Marker = linearTicks(p.Y.Max)
	if err := addLine(p, e, "bare gRPC stream (echo: acks on receipt, stores nothing)", grey, false); err != nil {
		return nil, err
	}
	if err := addLine(p, d, "durable echo (the echo plus one write + fdatasync per round)", grey, true); err != nil {
		return nil, err
	}
	if err := addLine(p, f, "followerd (WAL + fsync + apply), cumulative acks", blue, false); err != nil {
		return nil, err
	}
	p.Legend.Top, p.Legend.Left = true, true
	file := "bench-replication-window.png"
	if err := save(p, filepath.Join(dir, file)); err != nil {
		return nil, err
	}
	return &plotFile{
		file: file, title: "Replication throughput against the window",
		caption: "`BenchmarkStreamWindow`: 100-byte key-value entries from the leader driver over loopback gRPC, in process, " +
			"to followerd, to the bare stream and to the durable echo, cumulative acks, the three alternating in chunks of streams; median entries/s " +
			"per window. With a small window each entry waits for an fsync; a larger one lets one fsync cover many entries. " +
			"The durable echo does nothing but make what it received durable before acking it: what any durable follower pays at least.",
		table: table,
	}, nil
}

func latencyPlot(r *Results, dir string) (*plotFile, error) {
	p := newPlot("Ack latency distribution: per-entry vs cumulative acks", "ack latency (ms, log scale)", "fraction of entries acknowledged within")
	p.X.Scale = plot.LogScale{}
	p.Y.Min, p.Y.Max = 0, 1
	var yt []float64
	for i := 0; i <= 10; i++ {
		yt = append(yt, float64(i)/10)
	}
	p.Y.Tick.Marker = ticks(yt, func(v float64) string { return fmt.Sprintf("%.0f %%", v*100) })
	table := []string{"| Window | Acks | p10 | p50 | p90 | p99 | p99.9 |", "|---|---|---|---|---|---|---|"}
	lo, hi := math.Inf(1), 0.0
	n := 0
	for _, w := range []int{64, 1000} {
		for _, mode := range []string{"per-entry", "cumulative"} {
			key := fmt.Sprintf("bench:BenchmarkAckLatency/window=%d/%s", w, mode)
			if !r.has(key) {
				continue
			}
			var xys plotter.XYs
			at := map[float64]float64{}
			for _, q := range quantiles {
				v, ok := r.med(key, "q"+strconv.FormatFloat(q*1000, 'f', -1, 64)+"-µs")
				if !ok || v <= 0 {
					continue
				}
				ms := v / 1e3
				xys = append(xys, plotter.XY{X: ms, Y: q})
				at[q] = v
				lo, hi = math.Min(lo, ms), math.Max(hi, ms)
			}
			if len(xys) == 0 {
				continue
			}
			c := blue
			if mode == "cumulative" {
				c = orange
			}
			if err := addLine(p, xys, fmt.Sprintf("window %d, %s acks", w, mode), c, w == 1000); err != nil {
				return nil, err
			}
			table = append(table, fmt.Sprintf("| %d | %s | %s | %s | %s | %s | %s |", w, mode, us(at[.1]), us(at[.5]), us(at[.9]), us(at[.99]), us(at[.999])))
			n++
		}
	}
	if n == 0 {
		return nil, nil
	}
	var tv []float64
	for _, t := range []float64{.01, .02, .05, .1, .2, .5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000} {
		if t >= lo/1.5 && t <= hi*1.5 {
			tv = append(tv, t)
		}
	}
	p.X.Tick.Marker = ticks(tv, func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) })
	p.X.Min, p.X.Max = lo/1.2, hi*1.2
	p.Legend.Top, p.Legend.Left = false, false // bottom right: no curve there
	p.Legend.YOffs = vg.Points(8)
	file := "bench-ack-latency-cdf.png"
	if err := save(p, filepath.Join(dir, file)); err != nil {
		return nil, err
	}
	return &plotFile{
		file: file, title: "Ack latency distribution (CDF), per-entry vs cumulative acks",
		caption: "`BenchmarkAckLatency`: followerd in process under a steady stream of 100-byte entries over loopback gRPC, " +
			"at windows of 64 (solid) and 1000 (dashed) entries. An entry's latency runs from just before its Append is sent " +
			"to the ack that covers it; medians over the runs of each quantile.",
		table: table,
	}, nil
}

func walBatchPlot(r *Results, dir string) (*plotFile, error) {
	var w, raw plotter.XYs
	table := []string{"| Batch | WAL entries/s | raw pwrite + fdatasync entries/s | WAL / raw |", "|---|---|---|---|"}
	for _, n := range batches {
		key := fmt.Sprintf("bench:BenchmarkWALBatch/batch=%d", n)
		wv, ok1 := r.med(key, "wal-entries/s")
		rv, ok2 := r.med(key, "raw-entries/s")
		ratio, _ := r.med(key, "wal-vs-raw")
		if !ok1 || !ok2 {
			continue
		}
		w = append(w, plotter.XY{X: float64(n), Y: wv})
		raw = append(raw, plotter.XY{X: float64(n), Y: rv})
		table = append(table, fmt.Sprintf("| %d | %s | %s | %.2f |", n, rate(wv), rate(rv), ratio))
	}
	if len(w) == 0 {
		return nil, nil
	}
	p := newPlot("WAL throughput against the batch size", "entries per durable batch (log scale)", "entries per second (log scale)")
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker = ticks(intsAsFloats(batches), func(v float64) string { return strconv.Itoa(int(v)) })
	lo, hi := math.Inf(1), 0.0
	for _, xy := range append(append(plotter.XYs(nil), w...), raw...) {
		lo, hi = math.Min(lo, xy.Y), math.Max(hi, xy.Y)
	}
	var tv []float64
	for e := 1.0; e <= 1e8; e *= 10 {
		for _, m := range []float64{1, 2, 5} {
			if v := e * m; v >= lo/2 && v <= hi*2 {
				tv = append(tv, v)
			}
		}
	}
	p.Y.Tick.Marker = ticks(tv, func(v float64) string { return strings.ReplaceAll(rate(v), " ", "") })
	if err := addLine(p, raw, "raw ceiling: the same bytes, one pwrite + fdatasync per batch", grey, true); err != nil {
		return nil, err
	}
	if err := addLine(p, w, "tablefsm WAL: AppendAsync × batch, then Sync", blue, false); err != nil {
		return nil, err
	}
	p.Legend.Top, p.Legend.Left = true, true
	file := "bench-wal-batch.png"
	if err := save(p, filepath.Join(dir, file)); err != nil {
		return nil, err
	}
	return &plotFile{
		file: file, title: "WAL throughput against the batch size",
		caption: "`BenchmarkWALBatch`: durable batches of 100-byte entries through the WAL, alternating batch by batch with " +
			"the raw ceiling of the same disk: the same number of bytes (128 per entry) written with one pwrite into a " +
			"file prepared as the WAL prepares a segment (never rewritten, as the WAL never rewrites) and made durable with one fdatasync.",
		table: table,
	}, nil
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(15)
	p.Title.Padding = vg.Points(10)
	p.X.Label.Text, p.Y.Label.Text = x, y
	p.X.Label.TextStyle.Font.Size = vg.Points(12)
	p.Y.Label.TextStyle.Font.Size = vg.Points(12)
	p.X.Tick.Label.Font.Size = vg.Points(11)
	p.Y.Tick.Label.Font.Size = vg.Points(11)
	p.Legend.TextStyle.Font.Size = vg.Points(11)
	p.Legend.Padding = vg.Points(3)
	grid := plotter.NewGrid()
	grid.Vertical.Color = color.Gray{Y: 0xdd}
	grid.Horizontal.Color = color.Gray{Y: 0xdd}
	p.Add(grid)
	return p
}

func addLine(p *plot.Plot, xys plotter.XYs, name string, c color.Color, dashed bool) error {
	l, s, err := plotter.NewLinePoints(xys)
	if err != nil {
		return err
	}
	l.Color, l.Width = c, vg.Points(2)
	if dashed {
		l.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
	}
	s.Color, s.Shape, s.Radius = c, draw.CircleGlyph{}, vg.Points(2.5)
	p.Add(l, s)
	p.Legend.Add(name, l, s)
	return nil
}

// linearTicks are ticks from 0 to max at a round step (1, 2 or 5 times a
// power of ten), at most eleven of them.
func linearTicks(max float64) plot.Ticker {
	if max <= 0 {
		return plot.DefaultTicks{}
	}
	step := math.Pow(10, math.Floor(math.Log10(max)))
	for _, m := range []float64{0.1, 0.2, 0.5, 1} {
		if max/(step*m) <= 10 {
			step *= m
			break
		}
	}
	var vs []float64
	for i := 0; float64(i)*step <= max; i++ {
		vs = append(vs, float64(i)*step)
	}
	return ticks(vs, func(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) })
}

// ticks labels exactly the values given.
func ticks(values []float64, label func(float64) string) plot.Ticker {
	t := make(plot.ConstantTicks, len(values))
	for i, v := range values {
		t[i] = plot.Tick{Value: v, Label: label(v)}
	}
	return t
}

func intsAsFloats(v []int) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func save(p *plot.Plot, file string) error {
	c := vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(9*vg.Inch, 5.5*vg.Inch), vgimg.UseDPI(110))}
	p.Draw(draw.New(c))
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
