package main

import (
	"fmt"
	"math"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// writeChart draws a grouped bar chart of median RPCs/s, one group per case
// and one bar per transport, and writes it to path as SVG. A failed
// transport's bar is missing (zero).
func writeChart(path string, cfg config, results []caseResult) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("gRPC echo: RPCs/s, median of %d round(s) of %v (higher is better)", cfg.rounds, cfg.duration)
	p.Y.Label.Text = "RPCs/s"
	p.Y.Min = 0
	p.Legend.Top = true
	p.Legend.Left = false

	grid := plotter.NewGrid()
	grid.Vertical.Color = nil // the X axis is nominal
	p.Add(grid)

	barWidth := vg.Points(10)
	n := len(cfg.transports)
	top := 0.0
	for t, name := range cfg.transports {
		values := make(plotter.Values, len(results))
		for i, cr := range results {
			if o := cr.outcomes[t]; o.rounds > 0 {
				values[i] = o.med.rps
				top = max(top, o.med.rps)
			}
		}
		bars, err := plotter.NewBarChart(values, barWidth)
		if err != nil {
			return err
		}
		bars.Color = plotutil.Color(t)
		bars.LineStyle.Width = 0
		bars.Offset = barWidth * vg.Length(float64(t)-float64(n-1)/2)
		p.Add(bars)
		p.Legend.Add(name, bars)
	}
	p.Y.Max = 1.15 * top // room for the legend
	labels := make([]string, len(results))
	for i, cr := range results {
		labels[i] = cr.c.String()
	}
	p.NominalX(labels...)
	p.X.Tick.Label.Rotation = math.Pi / 5
	p.X.Tick.Label.XAlign = draw.XRight
	p.X.Tick.Label.YAlign = draw.YCenter

	width := max(16*vg.Centimeter, vg.Length(len(results))*(barWidth*vg.Length(n)+vg.Points(14)))
	wt, err := p.WriterTo(width, 12*vg.Centimeter, "svg")
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := wt.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
