package flywheel_test

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// markdownFiles returns every Markdown file of the repository, skipping
// hidden folders and fuzz corpora.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "." && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".md") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, must := range []string{"README.md", "docs/api.md", "docs/statistics.md"} {
		if !slices.Contains(files, filepath.FromSlash(must)) {
			t.Fatalf("%s is missing", must)
		}
	}
	return files
}

// mdLink is an inline Markdown link or image: [text](target).
var mdLink = regexp.MustCompile(`!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)

// fencedCode matches fenced code blocks, whose brackets are not links.
var fencedCode = regexp.MustCompile("(?ms)^```.*?^```")

// TestMarkdownLinksResolve checks that every relative link of every
// Markdown file points at a file of the repository, and that its #anchor,
// if any, names a heading of that file: a clone must carry everything its
// documents point at.
func TestMarkdownLinksResolve(t *testing.T) {
	checked := 0
	for _, file := range markdownFiles(t) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		text := fencedCode.ReplaceAllString(string(data), "")
		for _, m := range mdLink.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			checked++
			path, anchor, _ := strings.Cut(target, "#")
			resolved := file
			if path != "" {
				resolved = filepath.Join(filepath.Dir(file), filepath.FromSlash(path))
			}
			rel, err := filepath.Rel(".", resolved)
			if err != nil || strings.HasPrefix(rel, "..") {
				t.Errorf("%s: link %q leaves the repository", file, target)
				continue
			}
			info, err := os.Stat(resolved)
			if err != nil {
				t.Errorf("%s: link %q does not resolve: %v", file, target, err)
				continue
			}
			if anchor == "" {
				continue
			}
			if info.IsDir() || !strings.HasSuffix(resolved, ".md") {
				t.Errorf("%s: link %q has an anchor but does not point at a Markdown file", file, target)
				continue
			}
			if !slices.Contains(headingAnchors(t, resolved), anchor) {
				t.Errorf("%s: link %q: no heading of %s has the anchor #%s", file, target, resolved, anchor)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no relative link found: the link pattern is broken")
	}
}

// headingAnchors returns the anchors GitHub gives the headings of a
// Markdown file: lower case, punctuation dropped, spaces to hyphens.
func headingAnchors(t *testing.T, file string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(fencedCode.ReplaceAllString(string(data), ""), "\n") {
		title, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " ")
		if !ok || !strings.HasPrefix(line, "#") {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(title)) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteByte('-')
			}
		}
		out = append(out, b.String())
	}
	return out
}

// TestNothingReachesOutside checks that no tracked text names a path
// outside the repository: the source material the project started from
// (../shared) or a folder of a developer's machine.
func TestNothingReachesOutside(t *testing.T) {
	outside := regexp.MustCompile(`(\.\./)+shared/|/work/(main|shared)\b`)
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".go", ".md", ".sql", ".json", ".sh", ".yml", ".yaml", ".html", ".js", ".css":
		default:
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if loc := outside.FindIndex(data); loc != nil {
			line := 1 + strings.Count(string(data[:loc[0]]), "\n")
			t.Errorf("%s:%d names %q, outside the repository", path, line, data[loc[0]:loc[1]])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// endpointRef is an endpoint named in docs/api.md: `METHOD /path`, with
// path parameters in braces as in the OpenAPI document.
var endpointRef = regexp.MustCompile("`(GET|POST|PUT|PATCH|DELETE) (/[^ `?]*)")

// TestAPIDocMatchesOpenAPI keeps docs/api.md true: every endpoint it names
// is in api/openapi.json, and every operation of the OpenAPI document is
// named in it.
func TestAPIDocMatchesOpenAPI(t *testing.T) {
	doc, err := os.ReadFile("docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range endpointRef.FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]+" "+m[2]] = true
	}
	raw, err := os.ReadFile("api/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	inSpec := map[string]bool{}
	for path, ops := range spec.Paths {
		for method := range ops {
			switch method {
			case "get", "post", "put", "patch", "delete":
				inSpec[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	if len(inSpec) < 20 {
		t.Fatalf("the OpenAPI document has %d operations; the parse is broken", len(inSpec))
	}
	for op := range inSpec {
		if !documented[op] {
			t.Errorf("docs/api.md does not name %s, which api/openapi.json has", op)
		}
	}
	for op := range documented {
		if !inSpec[op] {
			t.Errorf("docs/api.md names %s, which api/openapi.json does not have", op)
		}
	}
}
