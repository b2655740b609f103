package dsn

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestT6_RFC3464Report(t *testing.T) {
	raw, _ := os.ReadFile("testdata/postfix-dsn.eml")
	rep := Parse(raw)
	if len(rep.Recipients) != 2 {
		t.Fatalf("recipients = %+v", rep.Recipients)
	}
	joe := rep.Recipients[0]
	if joe.Email != "joe@customer.test" || joe.Action != "failed" || joe.Status != "5.1.1" || !strings.Contains(joe.Diagnostic, "User unknown") {
		t.Errorf("joe = %+v", joe)
	}
	if k := rep.Recipients[1]; k.Email != "kim@customer.test" || k.Action != "delayed" || k.Status != "4.4.1" {
		t.Errorf("kim = %+v", k)
	}
	if !strings.Contains(rep.Text, "could not") {
		t.Errorf("text = %q", rep.Text)
	}
}

func TestT6_PlainBounce(t *testing.T) {
	raw, _ := os.ReadFile("testdata/plain-bounce.eml")
	rep := Parse(raw)
	if len(rep.Recipients) != 0 || !strings.Contains(rep.Text, "lee@customer.test") {
		t.Fatalf("plain bounce = %+v", rep)
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.eml")
	for _, name := range files {
		raw, _ := os.ReadFile(name)
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		rep := Parse(raw)
		if len(rep.Text) > maxText*4 {
			t.Fatalf("text not bounded: %d", len(rep.Text))
		}
		for _, r := range rep.Recipients {
			if strings.ContainsAny(r.Email, "\r\n") {
				t.Fatalf("line break in recipient %q", r.Email)
			}
		}
	})
}
