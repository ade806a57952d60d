package main

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// series is one measured quantity: samples in seconds (or any unit).
type series struct {
	v []float64
}

func (s *series) add(x float64)        { s.v = append(s.v, x) }
func (s *series) addD(d time.Duration) { s.add(float64(d.Nanoseconds()) / 1e6) }

func (s *series) sorted() []float64 {
	c := append([]float64(nil), s.v...)
	sort.Float64s(c)
	return c
}

func (s *series) median() float64 {
	c := s.sorted()
	if len(c) == 0 {
		return 0
	}
	if len(c)%2 == 1 {
		return c[len(c)/2]
	}
	return (c[len(c)/2-1] + c[len(c)/2]) / 2
}

func (s *series) min() float64 {
	if len(s.v) == 0 {
		return 0
	}
	return s.sorted()[0]
}

func (s *series) max() float64 {
	if len(s.v) == 0 {
		return 0
	}
	c := s.sorted()
	return c[len(c)-1]
}

func (s *series) n() int { return len(s.v) }

// cell renders "median (min–max)" with the unit's precision.
func (s *series) cell(prec int) string {
	if s == nil || s.n() == 0 {
		return "—"
	}
	f := "%." + fmt.Sprint(prec) + "f"
	return fmt.Sprintf(f+" ("+f+"–"+f+")", s.median(), s.min(), s.max())
}

func ratio(peer, ref *series) string {
	if peer == nil || ref == nil || peer.n() == 0 || ref.n() == 0 || ref.median() == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", peer.median()/ref.median())
}

// table is a markdown table built row by row.
type table struct {
	head []string
	rows [][]string
}

func (t *table) row(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) String() string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(t.head, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat("---|", len(t.head)) + "\n")
	for _, r := range t.rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	return b.String()
}
