package test

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// statusLink is the status view link in the newest copy delivered to rcpt that contains
// want; the test fails when there is none.
func statusLink(t *testing.T, d *daemon, base, rcpt, want string) string {
	t.Helper()
	pattern := regexp.MustCompile(regexp.QuoteMeta(base) + `/requests/[0-9]+-[a-z2-7]+`)
	var link string
	for _, m := range d.outbox() {
		if m.rcpt == rcpt && strings.Contains(m.body, want) {
			link = pattern.FindString(m.body)
		}
	}
	if link == "" {
		t.Fatalf("no copy to %s with %q carries a status view link", rcpt, want)
	}
	return link
}

// TestBrowserStatusView is the requester's side of the web, on the real binary: Jane opens the
// link from her copy of an agent's answer, sees the public conversation and nothing that is
// the agents' own (the internal note, the follower, any agent's address), replies through the
// form (the CC is told by mail) and marks the request solved. A second request whose subject,
// sender name and body carry script shows them as text and runs nothing.
func TestBrowserStatusView(t *testing.T) {
	needChromium(t)
	d, base := startWebDaemon(t, "  status_view: requester\n")

	const (
		jane  = "jane@customer.test"
		joe   = "joe@customer.test"
		carol = "carol@example.com"
	)
	h := map[string]string{"From": `"Jane Doe" <` + jane + `>`, "To": "support@example.com", "Cc": `"Joe Miller" <` + joe + `>`,
		"Subject": "The printer on floor 3 is on fire", "Message-ID": "<printer-1@customer.test>"}
	if err := sendSMTP(d.smtpAddr, jane, []string{"support@example.com"},
		mail(h, "Hello,\n\nthe printer next to the kitchen smells of smoke and prints only blank pages.\nCan someone have a look?\n\nJane\n")); err != nil {
		t.Fatal(err)
	}
	id := d.tickets()[0].ID
	d.must("", "followers", "add", fmt.Sprint(id), carol)
	d.must("INTERNAL-NOTE: third time this month, order a new one.", "reply", fmt.Sprint(id), "--as", "bob@example.com", "--internal")
	d.must("Hello Jane,\n\nplease switch it off at the wall; a technician comes this afternoon.\n\nAlice", "reply", fmt.Sprint(id), "--as", "alice@example.com")

	link := statusLink(t, d, base, jane, "a technician comes")
	for _, m := range d.outbox() {
		if m.rcpt != jane && strings.Contains(m.body, link) {
			t.Fatalf("Jane's link is in a copy delivered to %s", m.rcpt)
		}
	}

	b := startBrowser(t)
	if code := b.Navigate(link); code != http.StatusOK {
		t.Fatalf("Jane's link: status %d", code)
	}
	text, html := b.Text(), b.HTML()
	for _, want := range []string{"The printer on floor 3 is on fire", "Open", "smells of smoke", "a technician comes this afternoon",
		"Alice", "Jane Doe", "Who a reply will reach", "Joe Miller", joe, "Mark as solved"} {
		if !strings.Contains(text, want) {
			t.Errorf("the page does not read %q:\n%s", want, text)
		}
	}
	for _, never := range []string{"INTERNAL-NOTE", carol, "alice@example.com", "bob@example.com", "support+", "/tickets", "/login"} {
		if strings.Contains(html, never) {
			t.Errorf("the page's markup carries %q", never)
		}
	}
	b.NoDialogs()
	b.Accessible()

	b.Fill("Your reply", "Switched off. Thank you!")
	if code := b.ClickButton("Send reply"); code != http.StatusOK {
		t.Fatalf("Send reply: status %d", code)
	}
	if text := b.Text(); !strings.Contains(text, "Your reply was sent.") || !strings.Contains(text, "Switched off. Thank you!") {
		t.Errorf("after the reply the page reads:\n%s", text)
	}
	// N1: the CC is told by mail, with no link of Jane's (he has no view under requester).
	told := false
	for _, m := range d.outbox() {
		if m.rcpt == joe && strings.Contains(m.body, "Switched off. Thank you!") {
			told = true
			if strings.Contains(m.body, "/requests/") {
				t.Errorf("Joe's copy carries a status view link:\n%s", m.body)
			}
		}
	}
	if !told {
		t.Error("the CC was not told of the reply from the status view")
	}
	if c := d.lastComment(id); c.Via != "web" || !c.Public || c.Author != jane {
		t.Errorf("the stored reply: %+v", c)
	}
	b.NoDialogs()
	b.Accessible()
	b.Screenshot(screenshotPath(t, "status.png"))
	b.Narrow()
	b.Accessible()
	b.Screenshot(screenshotPath(t, "status-narrow.png"))
	b.Wide()

	if code := b.ClickButton("Mark as solved"); code != http.StatusOK {
		t.Fatalf("Mark as solved: status %d", code)
	}
	if text := b.Text(); !strings.Contains(text, "marked as solved") || !strings.Contains(text, "Solved") || strings.Contains(text, "Mark as solved") {
		t.Errorf("after the solve the page reads:\n%s", text)
	}
	if st := d.ticket(id).Status; st != "solved" {
		t.Errorf("status after the solve: %s", st)
	}
	b.NoDialogs()

	// A tampered link shows nothing of the request.
	tampered := link[:len(link)-1] + map[bool]string{true: "b", false: "a"}[strings.HasSuffix(link, "a")]
	if code := b.Navigate(tampered); code != http.StatusNotFound || strings.Contains(b.Text(), "printer") {
		t.Errorf("tampered link: status %d, page %q", code, b.Text())
	}

	// Hostile: script in a subject, a display name and a body is text, and runs nothing.
	hostile := map[string]string{"From": `"Eve <img src=x onerror=alert(1)>" <eve@customer.test>`, "To": "support@example.com",
		"Subject": `<script>alert("subject")</script> <a href="javascript:alert(2)">win</a>`, "Message-ID": "<hostile-1@customer.test>"}
	if err := sendSMTP(d.smtpAddr, "eve@customer.test", []string{"support@example.com"},
		mail(hostile, "<script>alert(3)</script>\n<img src=x onerror=alert(4)>\n<a href=\"javascript:alert(5)\">click</a>\n")); err != nil {
		t.Fatal(err)
	}
	d.must("We never run what you send.", "reply", fmt.Sprint(d.tickets()[0].ID), "--as", "alice@example.com")
	eve := b.newPerson()
	if code := eve.Navigate(statusLink(t, d, base, "eve@customer.test", "We never run")); code != http.StatusOK {
		t.Fatalf("Eve's link: status %d", code)
	}
	text = eve.Text()
	for _, want := range []string{`<script>alert("subject")</script>`, "<img src=x onerror=alert(1)>", `<a href="javascript:alert(5)">click</a>`} {
		if !strings.Contains(text, want) {
			t.Errorf("the hostile page does not show %q as text:\n%s", want, text)
		}
	}
	// As the browser serialises it, text keeps its quotes but never a raw "<": only a real
	// element or attribute would match these.
	markup := eve.HTML()
	for _, never := range []string{`<a href="javascript:`, "<script>alert", `onerror="`, "<img src"} {
		if strings.Contains(markup, never) {
			t.Errorf("the hostile page carries %q as markup", never)
		}
	}
	eve.NoDialogs()
	eve.Accessible()
}
