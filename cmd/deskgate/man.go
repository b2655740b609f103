package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cpuguy83/go-md2man/v2/md2man"
	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// manCmd writes the man pages (`make man`): deskgate(8) and a page per subcommand from the
// command tree, and deskgate.yaml(5) from the configuration reference. It is hidden: users
// read the pages, the build writes them.
func manCmd() *cobra.Command {
	var dir, reference string
	cmd := &cobra.Command{
		Use:    "man",
		Short:  "write the man pages into --dir",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			header := &doc.GenManHeader{Section: "8", Source: "deskgate " + version, Manual: "deskgate manual"}
			root := cmd.Root()
			root.DisableAutoGenTag = true
			if err := doc.GenManTree(root, header, dir); err != nil {
				return err
			}
			md, err := os.ReadFile(reference)
			if err != nil {
				return err
			}
			page := configPage(md)
			return os.WriteFile(filepath.Join(dir, "deskgate.yaml.5"), page, 0o644)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "man", "where to write the pages")
	cmd.Flags().StringVar(&reference, "config-reference", "docs/configuration.md", "the configuration reference to make deskgate.yaml(5) from")
	return cmd
}

// configPage turns the configuration reference into deskgate.yaml(5): the title line and
// sections a man page has, then the reference itself; links become plain text, since a man
// page cannot follow them.
func configPage(md []byte) []byte {
	text := string(md)
	if _, rest, ok := strings.Cut(text, "\n"); ok && strings.HasPrefix(text, "# ") {
		text = rest
	}
	for _, doc := range []string{"authentication.md"} {
		text = strings.ReplaceAll(text, "["+doc+"]("+doc+")", "the authentication guide ("+doc+" in /usr/share/doc/deskgate)")
	}
	// Sections of the reference become subsections; its tables, too wide for a terminal,
	// become lists.
	text = strings.ReplaceAll(text, "\n## ", "\n### ")
	text = tablesToLists(text)
	var b bytes.Buffer
	fmt.Fprintf(&b, "## NAME\n\ndeskgate.yaml - configuration of the deskgate mail gateway\n\n## DESCRIPTION\n%s\n## SEE ALSO\n\n**deskgate**(8), **deskgate-check-config**(8)\n", text)
	roff := md2man.Render(b.Bytes())
	head := fmt.Sprintf(".TH \"DESKGATE.YAML\" \"5\" \"\" \"deskgate %s\" \"deskgate manual\"\n", version)
	return append([]byte(head), roff...)
}

// tablesToLists rewrites each Markdown table row as a list item: the first cell as the term,
// the middle cells as "column: value", the last as the text.
func tablesToLists(text string) string {
	var out []string
	var header []string
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "|") {
			header = nil
			out = append(out, line)
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		switch {
		case header == nil:
			header = cells
			continue
		case strings.Trim(strings.Join(cells, ""), "-: ") == "":
			continue // the row under the header
		}
		item := "- " + cells[0]
		var facts []string
		for i := 1; i < len(cells)-1 && i < len(header); i++ {
			facts = append(facts, header[i]+": "+cells[i])
		}
		if len(facts) > 0 {
			item += " (" + strings.Join(facts, "; ") + ")"
		}
		if len(cells) > 1 {
			item += ": " + cells[len(cells)-1]
		}
		out = append(out, item)
	}
	return strings.Join(out, "\n")
}
