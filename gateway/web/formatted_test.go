package web

import (
	"fmt"
	"strings"
	"testing"
)

// An HTML-only mail: its formatted view keeps the structure and drops everything that could
// run, style the page, track the reader or lead anywhere unsafe.
func TestFormattedViewSanitisesHTMLMail(t *testing.T) {
	ts := newTestSite(t, nil)
	id := ts.receive("jane@customer.test", `From: Jane <jane@customer.test>
To: support@example.com
Subject: formatted
Message-ID: <html-only@customer.test>
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8

<html><head><style>body{display:none}</style><script>alert(1)</script></head>
<body onload="alert(2)"><p>Hello <b>support</b>,</p>
<table><tr><td colspan="2">Invoice 42</td></tr></table>
<img src="https://tracker.example/pixel.gif?reader=jane">
<a href="javascript:alert(3)">click</a> <a href="https://example.org/help" onclick="alert(4)">help</a>
<form action="https://evil.test"><input name=x></form>
<p style="color:red">red</p><iframe src="https://evil.test"></iframe>
</body></html>
`)
	_, comments := ts.ticket(id)
	cookie := ts.session("alice@example.com")
	res := ts.get(fmt.Sprintf("/tickets/%d/comments/%d/formatted", id, comments[0].ID), cookie)
	if res.Code != 200 {
		t.Fatalf("formatted view: %d\n%s", res.Code, res.Body)
	}
	page := res.Body.String()
	if i := strings.Index(page, `class="comment formatted-mail">`); i >= 0 {
		page = page[i:]
		page = page[:strings.Index(page, "</div>")]
	} else {
		t.Fatalf("no formatted mail on the page:\n%s", page)
	}
	for _, want := range []string{"<b>support</b>", `<td colspan="2">Invoice 42</td>`, `href="https://example.org/help"`, `rel="nofollow noreferrer`} {
		if !strings.Contains(page, want) {
			t.Errorf("the formatted view lacks %s:\n%s", want, page)
		}
	}
	for _, never := range []string{"<script", "alert(", "onload", "onclick", "<style", "display:none", "<img", "tracker.example",
		"javascript:", "<form", "<input", "<iframe", "evil.test", "color:red"} {
		if strings.Contains(page, never) {
			t.Errorf("the formatted view keeps %q:\n%s", never, page)
		}
	}
	// Only for agents; a comment that came by no mail has no such view.
	if res := ts.get(fmt.Sprintf("/tickets/%d/comments/%d/formatted", id, comments[0].ID)); res.Code != 303 {
		t.Errorf("without a session: %d, want a redirect to sign in", res.Code)
	}
	if detail := ts.get(fmt.Sprintf("/tickets/%d", id), cookie).Body.String(); !strings.Contains(detail, fmt.Sprintf("/comments/%d/formatted", comments[0].ID)) {
		t.Errorf("the request detail does not link the formatted view")
	}
}
