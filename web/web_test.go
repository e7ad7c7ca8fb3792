package web_test

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/flywheel-oss/flywheel/internal/app"
	"github.com/flywheel-oss/flywheel/internal/apptest"
	"github.com/flywheel-oss/flywheel/web"
)

// TestHandler serves the page and its files with the security headers, and
// nothing else.
func TestHandler(t *testing.T) {
	srv := httptest.NewServer(web.Handler())
	t.Cleanup(srv.Close)
	for _, tt := range []struct {
		path, wantType string
		want           int
	}{
		{"/", "text/html; charset=utf-8", 200},
		{"/ui/app.js", "text/javascript; charset=utf-8", 200},
		{"/ui/app.css", "text/css; charset=utf-8", 200},
		{"/ui/icon.svg", "image/svg+xml", 200},
		{"/ui/index.html", "", 404},
		{"/ui/nothing.js", "", 404},
		{"/ui/../web.go", "", 404},
		{"/elsewhere", "", 404},
	} {
		res, err := http.Get(srv.URL + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tt.want {
			t.Errorf("GET %s = %d, want %d", tt.path, res.StatusCode, tt.want)
			continue
		}
		if csp := res.Header.Get("Content-Security-Policy"); csp != web.Policy {
			t.Errorf("GET %s: Content-Security-Policy %q, want %q", tt.path, csp, web.Policy)
		}
		if res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no X-Content-Type-Options: nosniff", tt.path)
		}
		if tt.want != 200 {
			continue
		}
		if got := res.Header.Get("Content-Type"); got != tt.wantType {
			t.Errorf("GET %s: Content-Type %q, want %q", tt.path, got, tt.wantType)
		}
		// A second load revalidates with the ETag and gets a 304.
		req, _ := http.NewRequest("GET", srv.URL+tt.path, nil)
		req.Header.Set("If-None-Match", res.Header.Get("ETag"))
		again, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		again.Body.Close()
		if again.StatusCode != http.StatusNotModified || len(body) == 0 {
			t.Errorf("GET %s with its ETag = %d, want 304 (first body %d bytes)", tt.path, again.StatusCode, len(body))
		}
	}
	res, err := http.Post(srv.URL+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST / = %d, want 405", res.StatusCode)
	}
}

// TestPolicyHasNoLooseEnds: the policy allows no inline script or style,
// no eval and no other host.
func TestPolicyHasNoLooseEnds(t *testing.T) {
	for _, bad := range []string{"unsafe-inline", "unsafe-eval", "http:", "https:", "*", "data:"} {
		if strings.Contains(web.Policy, bad) {
			t.Errorf("the Content-Security-Policy allows %q: %s", bad, web.Policy)
		}
	}
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(web.Policy, want) {
			t.Errorf("the Content-Security-Policy lacks %q: %s", want, web.Policy)
		}
	}
}

// TestStaticFilesAreSafe reads every file the UI ships: no inline script,
// style attribute or event handler attribute in the page (the policy would
// block them), no other host named, and no script API that parses strings
// as HTML or code, so that user input (experiment names are free text) can
// only ever become text.
func TestStaticFilesAreSafe(t *testing.T) {
	var files []string
	err := filepath.WalkDir("static", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 8 {
		t.Fatalf("found %d files under static; the walk is broken", len(files))
	}
	forbiddenJS := regexp.MustCompile(`\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function\(|setTimeout\(\s*['"]|localStorage|document\.cookie`)
	inlineHTML := regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>[^<\s]|<style|\sstyle=|\son[a-z]+=|javascript:`)
	otherHost := regexp.MustCompile(`(?i)(?:src|href)\s*=\s*["']?(?:https?:)?//|url\(\s*["']?(?:https?:)?//|fetch\(\s*['"]https?:`)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		switch filepath.Ext(f) {
		case ".js":
			if m := forbiddenJS.FindString(text); m != "" {
				t.Errorf("%s uses %q: build the DOM with textContent and createElement, keep the key in sessionStorage only", f, m)
			}
		case ".html":
			if m := inlineHTML.FindString(text); m != "" {
				t.Errorf("%s has %q, which the policy blocks", f, m)
			}
		}
		if m := otherHost.FindString(text); m != "" {
			t.Errorf("%s loads %q from another host", f, m)
		}
	}
}

// TestServedByFlywheel: flywheel's own server answers the UI's page and
// files to GET and HEAD (curl -I, link checkers, load balancers' probes),
// with the policy, and nothing else under /.
func TestServedByFlywheel(t *testing.T) {
	srv := apptest.Start(t, app.Config{AggregateEvery: -1})
	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/", 200},
		{"HEAD", "/", 200},
		{"GET", "/ui/app.js", 200},
		{"HEAD", "/ui/app.js", 200},
		{"POST", "/", 405},
		{"GET", "/elsewhere", 404},
	} {
		req, err := http.NewRequest(tt.method, srv.URL+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tt.want {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, res.StatusCode, tt.want)
		}
		if tt.want == 200 && res.Header.Get("Content-Security-Policy") != web.Policy {
			t.Errorf("%s %s: Content-Security-Policy %q, want the UI's", tt.method, tt.path, res.Header.Get("Content-Security-Policy"))
		}
	}
}
