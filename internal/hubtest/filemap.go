package hubtest

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// goFileName matches a file name ending in .go that is not part of a path
// (net/net.go names a file of another package).
var goFileName = regexp.MustCompile(`(?:^|[^\w/.-])([a-z0-9_]+\.go)\b`)

// CheckFileMap fails t unless the file map in mapFile names every non-test
// .go file of the package in dir, and names no such file that dir lacks.
// mapFile need not name itself. A package whose doc, or a doc of docs/,
// says what each file holds keeps that map true with a test that calls
// CheckFileMap: adding, removing or renaming a file without the map fails.
func CheckFileMap(t testing.TB, dir, mapFile string) {
	t.Helper()
	text, err := os.ReadFile(mapFile)
	if err != nil {
		t.Fatal(err)
	}
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, p := range paths {
		if !strings.HasSuffix(p, "_test.go") {
			files = append(files, filepath.Base(p))
		}
	}
	self := ""
	if abs, _ := filepath.Abs(mapFile); filepath.Dir(abs) == absDir(dir) {
		self = filepath.Base(mapFile)
	}
	named := map[string]bool{}
	for _, m := range goFileName.FindAllStringSubmatch(string(text), -1) {
		if !strings.HasSuffix(m[1], "_test.go") {
			named[m[1]] = true
		}
	}
	for _, f := range files {
		if f != self && !named[f] {
			t.Errorf("%s does not say what %s holds: add it to the file map", mapFile, f)
		}
	}
	for f := range named {
		if !slices.Contains(files, f) {
			t.Errorf("%s names %s, which %s does not have: remove it from the file map", mapFile, f, dir)
		}
	}
}

func absDir(dir string) string {
	abs, _ := filepath.Abs(dir)
	return abs
}
