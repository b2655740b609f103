package test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The README and the docs link only to files that are in the repository, and none of them
// points at the team's spec outside it.
func TestDocsLinkOnlyWithinTheRepository(t *testing.T) {
	pages, _ := filepath.Glob("../docs/*.md")
	pages = append(pages, "../README.md")
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, page := range pages {
		raw, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		text := string(raw)
		if strings.Contains(text, "../shared") || strings.Contains(text, "INTERFACE.md") || strings.Contains(text, "RULES.md") {
			t.Errorf("%s points at the team's spec, which users do not have", page)
		}
		for _, m := range link.FindAllStringSubmatch(text, -1) {
			target, _, _ := strings.Cut(m[1], "#")
			if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") {
				if filepath.Base(page) == "README.md" {
					t.Errorf("README.md links outside the repository: %s", m[1])
				}
				continue
			}
			if target == "" {
				continue
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(page), target)); err != nil {
				t.Errorf("%s links to %s, which does not exist", page, m[1])
			}
		}
	}
}
