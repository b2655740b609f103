package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The man pages that make man writes render without a warning, and there is one for every
// subcommand a user can type.
func TestManPagesRender(t *testing.T) {
	if _, err := exec.LookPath("man"); err != nil {
		t.Skip("man (Debian package man-db) is not installed; .ci/run installs it")
	}
	dir := t.TempDir()
	if out, err := exec.Command(binary, "man", "--dir", dir, "--config-reference", "../docs/configuration.md").CombinedOutput(); err != nil {
		t.Fatalf("deskgate man: %v\n%s", err, out)
	}
	pages, _ := filepath.Glob(filepath.Join(dir, "*"))
	want := []string{"deskgate.8", "deskgate.yaml.5", "deskgate-serve.8", "deskgate-check-config.8", "deskgate-tickets-show.8",
		"deskgate-comments-raw.8", "deskgate-queue-list.8", "deskgate-backup.8", "deskgate-explain.8"}
	for _, w := range want {
		if _, err := os.Stat(filepath.Join(dir, w)); err != nil {
			t.Errorf("no %s among %d pages", w, len(pages))
		}
	}
	for _, p := range pages {
		cmd := exec.Command("man", "--warnings=w", "-l", p)
		cmd.Env = append(os.Environ(), "MANWIDTH=80", "MAN_KEEP_FORMATTING=0")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Errorf("%s: %v %s", filepath.Base(p), err, stderr.String())
		}
		if len(out) < 100 {
			t.Errorf("%s renders to %d bytes", filepath.Base(p), len(out))
		}
	}
	if out, _ := exec.Command("man", "-l", filepath.Join(dir, "deskgate.yaml.5")).Output(); !strings.Contains(string(out), "limits.max_sessions_per_ip") {
		t.Errorf("deskgate.yaml(5) lacks the keys")
	}
}
