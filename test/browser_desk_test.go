package test

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// Choose clicks the radio button or checkbox whose label reads label.
func (b *browserTab) Choose(label string) {
	b.t.Helper()
	n := step(b, "look for choice "+label, chromedp.Evaluate[int](jsCall(`k => findFields(k).length`, label)))
	if n != 1 {
		b.t.Fatalf("choose %q: %d fields have that label on %s", label, n, b.URL())
	}
	step(b, "choose "+label, chromedp.Click(chromedp.JSPath(jsCall(`k => findFields(k)[0]`, label))))
}

// signInLink reads the newest sign-in link mailed to rcpt from the Maildir outbox.
func signInLink(t *testing.T, d *daemon, rcpt string) string {
	t.Helper()
	re := regexp.MustCompile(`http://\S+/login/[A-Za-z0-9_-]{43}`)
	link := ""
	for _, m := range d.outbox() {
		if m.rcpt == rcpt && strings.HasPrefix(m.header.Get("Subject"), "Sign in to ") {
			link = re.FindString(m.body)
			if m.header.Get("Auto-Submitted") != "auto-generated" || !strings.Contains(m.header.Get("From"), "support@example.com") {
				t.Errorf("sign-in mail headers: %v", m.header)
			}
		}
	}
	if link == "" {
		t.Fatalf("no sign-in link for %s in the outbox", rcpt)
	}
	return link
}

// checkPage asserts what every desk page owes a person: no script ran, and axe-core finds
// nothing serious, at the desktop width and at a phone's; it saves both screenshots.
func checkPage(t *testing.T, b *browserTab, shot string) {
	t.Helper()
	b.NoDialogs()
	b.Accessible()
	b.Screenshot(screenshotPath(t, shot+".png"))
	b.Narrow()
	b.Accessible()
	b.Screenshot(screenshotPath(t, shot+"-narrow.png"))
	b.Wide()
}

// An agent signs in through the link the desk mailed her, and works a ticket end to end in
// the browser: CCs added and removed by typing, a note, a public reply, a reply made
// internal, solved. Mail from strangers that carries markup shows as text and runs nothing.
func TestBrowserAgentDesk(t *testing.T) {
	needChromium(t)
	d, site := startWebDaemon(t, "")

	msg := mail(map[string]string{"From": "Jane Doe <jane@customer.test>", "To": "support@example.com",
		"Cc": "Carl <carl@customer.test>", "Subject": "Printer on fire", "Message-ID": "<desk1@customer.test>"}, "It smokes.\nPlease help.\n")
	if err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"}, msg); err != nil {
		t.Fatal(err)
	}
	hostile := "From: \"<img src=x onerror=alert(1)>\" <mallory@customer.test>\r\nTo: support@example.com\r\n" +
		"Subject: <script>alert(1)</script>\r\nMessage-ID: <desk2@customer.test>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/html; charset=utf-8\r\n\r\n" +
		"<html><head><style>body{display:none}</style><script>alert(2)</script></head><body>" +
		"<p>Look <a href=\"javascript:alert(3)\">here</a> <img src=x onerror=alert(4)></p></body></html>\r\n"
	if err := sendSMTP(d.smtpAddr, "mallory@customer.test", []string{"support@example.com"}, []byte(hostile)); err != nil {
		t.Fatal(err)
	}
	list := d.tickets()
	if len(list) != 2 {
		t.Fatalf("%d tickets, want 2", len(list))
	}
	printer, evil := list[1].ID, list[0].ID

	b := startBrowser(t)
	if code := b.Navigate(site + "/tickets"); code != 200 || !strings.Contains(b.URL(), "/login?next=") {
		t.Fatalf("signed out, /tickets led to %s (%d)", b.URL(), code)
	}
	checkPage(t, b, "signin")
	b.Fill("Your email address", "alice@example.com")
	b.ClickButton("Email me a sign-in link")
	if !strings.Contains(b.Text(), "If that address belongs to an agent, a sign-in link is on its way.") {
		t.Fatalf("after asking for a link:\n%s", b.Text())
	}
	link := signInLink(t, d, "alice@example.com")

	b.Navigate(link)
	if !strings.Contains(b.Text(), "Press the button to sign in") {
		t.Fatalf("the link's page:\n%s", b.Text())
	}
	if code := b.ClickButton("Sign in"); code != 200 || !strings.HasSuffix(b.URL(), "/tickets") {
		t.Fatalf("signing in led to %s (%d)", b.URL(), code)
	}
	text := b.Text()
	if !strings.Contains(text, "Signed in as Alice") || !strings.Contains(text, "Printer on fire") || !strings.Contains(text, "<script>alert(1)</script>") {
		t.Fatalf("the list:\n%s", text)
	}
	checkPage(t, b, "tickets")

	// The hostile ticket's page shows its markup as text and runs none of it.
	b.Navigate(fmt.Sprintf("%s/tickets/%d", site, evil))
	text = b.Text()
	if !strings.Contains(text, "<script>alert(1)</script>") || !strings.Contains(text, "<img src=x onerror=alert(1)>") {
		t.Errorf("the hostile ticket's subject or name is not shown as text:\n%s", text)
	}
	if strings.Contains(b.HTML(), `href="javascript:`) {
		t.Error("a javascript: link made it onto the page")
	}
	b.NoDialogs()
	b.Accessible()
	// Its HTML part, "As formatted": sanitised, it keeps the text and runs nothing, styles
	// nothing and fetches nothing.
	if code := b.FollowLink(fmt.Sprintf("As formatted (comment %d)", d.ticket(evil).Comments[0].ID)); code != 200 {
		t.Fatalf("the hostile mail's formatted view: HTTP %d", code)
	}
	if text := b.Text(); !strings.Contains(text, "Look here") {
		t.Errorf("the formatted view lost the mail's text:\n%s", text)
	}
	if html := b.HTML(); strings.Contains(html, `href="javascript:`) || strings.Contains(html, "onerror") || strings.Contains(html, "<style") {
		t.Errorf("the formatted view keeps markup that could run:\n%s", html)
	}
	b.NoDialogs()
	b.Accessible()
	b.Screenshot(screenshotPath(t, "formatted.png"))
	b.Narrow()
	b.Accessible()
	b.Screenshot(screenshotPath(t, "formatted-narrow.png"))
	b.Wide()

	b.Navigate(site + "/tickets")
	if code := b.FollowLink("Printer on fire"); code != 200 {
		t.Fatalf("opening the ticket: %d", code)
	}
	b.Fill("Add a CC", "dora@customer.test")
	b.ClickButton("Add CC")
	if text := b.Text(); !strings.Contains(text, "dora@customer.test added as CC") || !strings.Contains(text, "Alice added dora@customer.test as CC") {
		t.Fatalf("after adding a CC:\n%s", text)
	}
	b.ClickButton("Remove CC dora@customer.test")
	if text := b.Text(); !strings.Contains(text, "dora@customer.test is no longer a CC") {
		t.Fatalf("after removing the CC:\n%s", text)
	}
	b.Fill("Your text", "Checked the logs: the fuser is at fault.")
	b.Choose("Internal note: agents and followers only")
	b.ClickButton("Send")
	if text := b.Text(); !strings.Contains(text, "Internal note added") || !strings.Contains(text, "Checked the logs") {
		t.Fatalf("after the note:\n%s", text)
	}
	b.Fill("Your text", "We are sending a technician tomorrow.")
	b.ClickButton("Send")
	if text := b.Text(); !strings.Contains(text, "Public reply sent") {
		t.Fatalf("after the reply:\n%s", text)
	}
	tk := d.ticket(printer)
	if len(tk.Comments) != 3 {
		t.Fatalf("%d comments, want 3", len(tk.Comments))
	}
	note, reply := tk.Comments[1], tk.Comments[2]
	if note.Public || !reply.Public || note.Via != "web" || reply.Author != "alice@example.com" {
		t.Fatalf("note %+v\nreply %+v", note, reply)
	}
	checkPage(t, b, "ticket")

	// The public reply reached the requester and the CC; the note reached neither.
	got := map[string]bool{}
	for _, m := range d.outbox() {
		if strings.Contains(m.body, "We are sending a technician tomorrow.") {
			got[m.rcpt] = true
		}
		if strings.Contains(m.body, "Checked the logs") && (m.rcpt == "jane@customer.test" || m.rcpt == "carl@customer.test") {
			t.Errorf("the internal note reached %s", m.rcpt)
		}
	}
	if !got["jane@customer.test"] || !got["carl@customer.test"] {
		t.Errorf("the public reply reached %v", got)
	}
	// The audience sits in a closed <details>, which innerText leaves out: read the markup.
	b.Navigate(b.URL())
	markup := regexp.MustCompile(`\s+`).ReplaceAllString(regexp.MustCompile(`<[^>]*>`).ReplaceAllString(b.HTML(), ""), " ")
	if !strings.Contains(markup, "carl@customer.test as cc · visible copy · sent") {
		t.Errorf("the reply's audience does not show the CC's copy as sent:\n%s", markup)
	}

	b.ClickButtonIn(fmt.Sprintf("#comment-%d", reply.ID), fmt.Sprintf("Make internal (comment %d)", reply.ID))
	b.ClickButton("Mark solved")
	if text := b.Text(); !strings.Contains(text, "Status set to solved") {
		t.Fatalf("after solving:\n%s", text)
	}
	tk = d.ticket(printer)
	if tk.Status != "solved" || tk.Comments[2].Public || len(tk.CCs) != 1 || tk.CCs[0].Email != "carl@customer.test" {
		t.Errorf("ticket after the session: status %s, reply public %v, CCs %+v", tk.Status, tk.Comments[2].Public, tk.CCs)
	}
	out, _, _ := d.cli("explain", fmt.Sprint(reply.ID))
	if !strings.Contains(out, "alice@example.com") {
		t.Errorf("explain does not name alice:\n%s", out)
	}
	b.NoDialogs()

	// The link was spent: opening it again says so at once, offers no button, and signs
	// nobody in.
	other := b.newPerson()
	if code := other.Navigate(link); code != http.StatusGone {
		t.Errorf("the used link, a second time: HTTP %d, want 410", code)
	}
	if text := other.Text(); !strings.Contains(text, "This sign-in link has expired or was used; ask for a new one") ||
		strings.Contains(text, "Signed in as") || strings.Contains(other.HTML(), "<button") {
		t.Errorf("the used link, a second time:\n%s", text)
	}
}
