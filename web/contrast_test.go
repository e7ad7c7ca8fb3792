package web_test

import (
	"math"
	"os"
	"regexp"
	"strconv"
	"testing"
)

// TestContrast checks the colour pairs the UI uses against WCAG 2.1 AA:
// 4.5:1 for text, 3:1 for chart marks and control borders. The colours are
// read from app.css and charts.js, so a change there is checked.
func TestContrast(t *testing.T) {
	css, err := os.ReadFile("static/app.css")
	if err != nil {
		t.Fatal(err)
	}
	charts, err := os.ReadFile("static/charts.js")
	if err != nil {
		t.Fatal(err)
	}
	colour := map[string]string{"white": "#ffffff"}
	for _, m := range regexp.MustCompile(`--([a-z-]+):\s*(#[0-9a-fA-F]{6});`).FindAllStringSubmatch(string(css), -1) {
		colour[m[1]] = m[2]
	}
	for _, m := range regexp.MustCompile(`const (INK|MUTED) = '(#[0-9a-fA-F]{6})'`).FindAllStringSubmatch(string(charts), -1) {
		colour["chart-"+m[1]] = m[2]
	}
	if m := regexp.MustCompile(`COLOURS = \['(#[0-9a-fA-F]{6})', '(#[0-9a-fA-F]{6})', '(#[0-9a-fA-F]{6})'`).FindStringSubmatch(string(charts)); m != nil {
		colour["series-1"], colour["series-2"], colour["series-3"] = m[1], m[2], m[3]
	}
	for _, tt := range []struct {
		fg, bg string
		min    float64
	}{
		{"ink", "white", 4.5}, {"muted", "white", 4.5}, {"link", "white", 4.5}, {"ink", "soft", 4.5}, {"muted", "soft", 4.5},
		{"link", "soft", 4.5}, {"white", "link", 4.5}, {"white", "bad", 4.5}, {"bad", "white", 4.5}, {"bad", "bad-bg", 4.5},
		{"ink", "bad-bg", 4.5}, {"good", "good-bg", 4.5}, {"good", "white", 4.5}, {"warn", "warn-bg", 4.5}, {"warn", "white", 4.5},
		{"chart-INK", "white", 4.5}, {"chart-MUTED", "white", 4.5},
		{"series-1", "white", 3}, {"series-2", "white", 3}, {"series-3", "white", 3}, {"line", "white", 3},
	} {
		fg, bg := colour[tt.fg], colour[tt.bg]
		if fg == "" || bg == "" {
			t.Errorf("colour %s or %s not found in app.css or charts.js", tt.fg, tt.bg)
			continue
		}
		if r := contrast(fg, bg); r < tt.min {
			t.Errorf("%s (%s) on %s (%s): contrast %.2f:1, want at least %.1f:1", tt.fg, fg, tt.bg, bg, r, tt.min)
		}
	}
}

// contrast is the WCAG contrast ratio of two #rrggbb colours.
func contrast(a, b string) float64 {
	la, lb := luminance(a), luminance(b)
	return (math.Max(la, lb) + 0.05) / (math.Min(la, lb) + 0.05)
}

func luminance(hex string) float64 {
	var c [3]float64
	for i := range c {
		v, _ := strconv.ParseUint(hex[1+2*i:3+2*i], 16, 8)
		s := float64(v) / 255
		if s <= 0.03928 {
			c[i] = s / 12.92
		} else {
			c[i] = math.Pow((s+0.055)/1.055, 2.4)
		}
	}
	return 0.2126*c[0] + 0.7152*c[1] + 0.0722*c[2]
}
