package mailparse

import (
	"strings"

	"golang.org/x/net/html"
)

// HTMLToText keeps the readable text of an HTML body: block elements become line
// breaks, script and style vanish, entities are decoded.
func HTMLToText(s string) string {
	z := html.NewTokenizer(strings.NewReader(s))
	var b strings.Builder
	skip := 0
	newline := func() {
		if b.Len() > 0 && !strings.HasSuffix(b.String(), "\n") {
			b.WriteByte('\n')
		}
	}
	for {
		switch z.Next() {
		case html.ErrorToken:
			return strings.TrimSpace(collapseBlankLines(b.String()))
		case html.TextToken:
			if skip == 0 {
				writeText(&b, string(z.Text()))
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			name, _ := z.TagName()
			switch string(name) {
			case "script", "style", "head", "title":
				skip++
			case "br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "blockquote", "table":
				newline()
			case "td", "th":
				b.WriteByte(' ')
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			switch string(name) {
			case "script", "style", "head", "title":
				if skip > 0 {
					skip--
				}
			case "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "blockquote", "table":
				newline()
			}
		}
	}
}

func collapseBlankLines(s string) string {
	lines := strings.Split(s, "\n")
	out := lines[:0]
	blank := 0
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" {
			blank++
			if blank > 1 {
				continue
			}
		} else {
			blank = 0
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// writeText adds a text run with its white space collapsed, keeping one space where the
// run had some at its edges, so that "Hello <b>world</b>" stays two words.
func writeText(b *strings.Builder, t string) {
	words := strings.Fields(t)
	if len(words) == 0 {
		if t != "" && b.Len() > 0 && !strings.HasSuffix(b.String(), " ") && !strings.HasSuffix(b.String(), "\n") {
			b.WriteByte(' ')
		}
		return
	}
	if strings.TrimLeft(t, " \t\r\n") != t && b.Len() > 0 && !strings.HasSuffix(b.String(), " ") && !strings.HasSuffix(b.String(), "\n") {
		b.WriteByte(' ')
	}
	b.WriteString(strings.Join(words, " "))
	if strings.TrimRight(t, " \t\r\n") != t {
		b.WriteByte(' ')
	}
}
