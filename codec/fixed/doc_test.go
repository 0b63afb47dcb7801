package fixed

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocExamplesMatchTestdata keeps the package documentation's examples
// in step with the descriptions the tests prove.
func TestDocExamplesMatchTestdata(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	norm := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	var docLines []string
	for _, l := range strings.Split(string(doc), "\n") {
		docLines = append(docLines, norm(strings.TrimPrefix(l, "//")))
	}
	have := strings.Join(docLines, "\n")
	for _, name := range []string{"mgp.yaml", "le16.yaml"} {
		src, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(src), "\n") {
			l, _, _ = strings.Cut(l, "#")
			if l = norm(l); l == "" || strings.HasPrefix(l, "format:") || strings.HasPrefix(l, "align:") ||
				l == "extensions:" || l == "trailer:" || strings.HasPrefix(l, "name: etx") || strings.HasPrefix(l, "bytes:") {
				continue // written inline in the doc
			}
			if !strings.Contains(have, l) {
				t.Errorf("doc.go lacks %s line %q", name, l)
			}
		}
	}
}
