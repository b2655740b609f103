package web

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/deskgate/deskgate/gateway/desk"
	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/gateway/rules"
	"github.com/deskgate/deskgate/store"
)

// receive has mail reach the desk as SMTP would hand it over, and returns its ticket.
func (ts *testSite) receive(from string, raw string) uint64 {
	ts.t.Helper()
	res, err := ts.svc.Receive(context.Background(), desk.Envelope{From: from, Recipients: []string{"support@example.com"}, Remote: "192.0.2.9:25"},
		[]byte(strings.ReplaceAll(raw, "\n", "\r\n")))
	if err != nil {
		ts.t.Fatalf("receive: %v", err)
	}
	return res.TicketID
}

func (ts *testSite) ticket(id uint64) (*model.Ticket, []model.Comment) {
	ts.t.Helper()
	var t *model.Ticket
	var cs []model.Comment
	err := ts.svc.Store().View(func(tx *store.Tx) error {
		var err error
		if t, err = tx.Ticket(id); err != nil {
			return err
		}
		cs, err = tx.Comments(t)
		return err
	})
	if err != nil {
		ts.t.Fatal(err)
	}
	return t, cs
}

const janeMail = `From: Jane Doe <jane@customer.test>
To: support@example.com
Cc: Carl <carl@customer.test>
Subject: Printer on fire
Message-ID: <first@customer.test>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: text/plain; charset=utf-8

It smokes.
Please help.
--b
Content-Type: text/html; name=report.html
Content-Disposition: attachment; filename=report.html

<script>alert(1)</script>
--b--
`

// location follows a redirect's flash to the page it leads to, as a browser would.
func (ts *testSite) follow(w interface {
	Result() *http.Response
}, cookie *http.Cookie) string {
	ts.t.Helper()
	res := w.Result()
	if res.StatusCode != http.StatusSeeOther {
		ts.t.Fatalf("status %d, want 303", res.StatusCode)
	}
	r, _ := http.NewRequest(http.MethodGet, res.Header.Get("Location"), nil)
	r.AddCookie(cookie)
	for _, c := range res.Cookies() {
		if c.Name == flashCookie && c.MaxAge > 0 {
			r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
	}
	page := ts.do(r)
	if page.Code != 200 {
		ts.t.Fatalf("GET %s: %d", res.Header.Get("Location"), page.Code)
	}
	return page.Body.String()
}

func TestTicketListAndDetailShowTheTicket(t *testing.T) {
	ts := newTestSite(t, nil)
	id := ts.receive("jane@customer.test", janeMail)
	other := ts.receive("max@customer.test", "From: max@customer.test\nTo: support@example.com\nSubject: Second one\nMessage-ID: <m2@x>\n\nhi\n")
	alice := ts.session("alice@example.com")

	if w := ts.get("/tickets"); w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), "/login?next=") {
		t.Fatalf("signed out: %d %q", w.Code, w.Header().Get("Location"))
	}
	w := ts.get("/tickets", alice)
	body := w.Body.String()
	if w.Code != 200 {
		t.Fatalf("list: %d", w.Code)
	}
	first, second := strings.Index(body, "Second one"), strings.Index(body, "Printer on fire")
	if first < 0 || second < 0 || first > second {
		t.Errorf("the list is not newest first:\n%s", body)
	}
	for _, want := range []string{fmt.Sprintf(`href="/tickets/%d"`, id), "Jane Doe &lt;jane@customer.test&gt;", "2 tickets on this page", `aria-current="page"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the list lacks %q", want)
		}
	}
	if b := ts.get("/tickets?status=solved", alice).Body.String(); strings.Contains(b, "Printer on fire") || !strings.Contains(b, "No tickets here") {
		t.Errorf("the solved filter shows an open ticket")
	}
	if b := ts.get(fmt.Sprintf("/tickets?before=%d", other), alice).Body.String(); strings.Contains(b, "Second one") || !strings.Contains(b, "Printer on fire") {
		t.Errorf("before= does not page")
	}
	if b := ts.get("/tickets?mine=1", alice).Body.String(); strings.Contains(b, "Printer on fire") {
		t.Errorf("mine=1 shows a ticket assigned to nobody")
	}

	w = ts.get(fmt.Sprintf("/tickets/%d", id), alice)
	body = w.Body.String()
	if w.Code != 200 {
		t.Fatalf("detail: %d", w.Code)
	}
	for _, want := range []string{
		"Printer on fire", "Jane Doe &lt;jane@customer.test&gt;", "Carl &lt;carl@customer.test&gt;",
		"It smokes.\nPlease help.", `class="comment-body"`, "Public", "via email",
		"report.html", fmt.Sprintf(`/tickets/%d/comments/`, id), "/files/0", "/explain", "/raw",
		`<label for="cc-email">Add a CC</label>`, `value="public"`, `value="internal"`, "Make internal",
		"as requester", "visible copy", `aria-label="Remove CC carl@customer.test"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the detail lacks %q", want)
		}
	}
	if strings.Contains(body, "<script>alert") {
		t.Error("the attachment's markup is on the page")
	}
	if w := ts.get("/tickets/999999", alice); w.Code != 404 {
		t.Errorf("an unknown ticket: %d", w.Code)
	}
}

// Every action names the signed-in agent: in the trace that explain shows, and in the events.
func TestActionsRecordTheSignedInAgent(t *testing.T) {
	ts := newTestSite(t, nil)
	id := ts.receive("jane@customer.test", janeMail)
	alice := ts.session("alice@example.com")
	base := fmt.Sprintf("/tickets/%d", id)

	page := ts.follow(ts.postForm(base+"/ccs", "email=dora%40customer.test", alice), alice)
	if !strings.Contains(page, `role="status"><p>dora@customer.test added as CC</p>`) {
		t.Errorf("no flash after adding a CC:\n%s", page)
	}
	tk, _ := ts.ticket(id)
	if len(tk.CCs) != 2 || tk.CCs[1].Email != "dora@customer.test" {
		t.Fatalf("CCs %+v", tk.CCs)
	}
	if !strings.Contains(page, "Alice</strong> added dora@customer.test as CC") {
		t.Errorf("the event does not name alice:\n%s", page)
	}
	page = ts.follow(ts.postForm(base+"/ccs/remove", "email=dora%40customer.test", alice), alice)
	if tk, _ := ts.ticket(id); len(tk.CCs) != 1 || !strings.Contains(page, "dora@customer.test is no longer a CC") {
		t.Fatalf("remove CC: %+v", tk.CCs)
	}
	page = ts.follow(ts.postForm(base+"/comments", "visibility=internal&body=Looking+into+it", alice), alice)
	if !strings.Contains(page, "Internal note added") || !strings.Contains(page, "Internal note</span>") {
		t.Errorf("the note is not shown as internal")
	}
	ts.follow(ts.postForm(base+"/comments", "visibility=public&body=We+are+on+it", alice), alice)
	ts.follow(ts.postForm(base+"/assign", "assignee=alice%40example.com", alice), alice)
	ts.follow(ts.postForm(base+"/followers", "email=bob%40example.com", alice), alice)
	page = ts.follow(ts.postForm(base+"/status", "status=solved", alice), alice)
	if !strings.Contains(page, "Status set to solved") {
		t.Errorf("no flash after solving")
	}

	tk, cs := ts.ticket(id)
	if tk.Status != "solved" || tk.Assignee != "alice@example.com" || len(tk.Followers) != 1 || len(cs) != 3 {
		t.Fatalf("ticket %+v, %d comments", tk, len(cs))
	}
	note, reply := cs[1], cs[2]
	if note.Public || note.Author != "alice@example.com" || note.Via != "web" || !reply.Public || reply.Body != "We are on it" {
		t.Fatalf("note %+v\nreply %+v", note, reply)
	}
	// The reply reached the requester and the CC, and the page says so.
	explain := ts.get(fmt.Sprintf("%s/comments/%d/explain", base, reply.ID), alice).Body.String()
	for _, want := range []string{"<code>V4</code>", "the expert made it public", "jane@customer.test", "as requester", "carl@customer.test", "as cc"} {
		if !strings.Contains(explain, want) {
			t.Errorf("explain lacks %q:\n%s", want, explain)
		}
	}
	// Making the reply internal is V5, named after alice.
	page = ts.follow(ts.postForm(fmt.Sprintf("%s/comments/%d/private", base, reply.ID), "", alice), alice)
	if _, cs := ts.ticket(id); cs[2].Public || !strings.Contains(page, fmt.Sprintf("Comment %d is internal now", reply.ID)) {
		t.Fatal("make internal did nothing")
	}
	var events []model.Event
	ts.svc.Store().View(func(tx *store.Tx) error {
		t, _ := tx.Ticket(id)
		tx.Items(t)
		for _, e := range t.EventIDs {
			ev, _ := tx.Event(e)
			events = append(events, *ev)
		}
		return nil
	})
	for _, e := range events {
		if e.Actor != "alice@example.com" {
			t.Errorf("event %s by %q", e.Action, e.Actor)
		}
	}
	if len(events) < 6 {
		t.Errorf("%d events", len(events))
	}
	// A refusal of the rules comes back as an alert.
	page = ts.follow(ts.postForm(base+"/ccs", "email=jane%40customer.test", alice), alice)
	if !strings.Contains(page, `role="alert"><p>jane@customer.test is the requester (R3)</p>`) {
		t.Errorf("the refusal is not shown:\n%s", page)
	}
}

func TestLightAgentIsOfferedOnlyWhatTheRulesAllow(t *testing.T) {
	ts := newTestSite(t, nil)
	id := ts.receive("jane@customer.test", janeMail)
	bob := ts.session("bob@example.com")
	base := fmt.Sprintf("/tickets/%d", id)
	body := ts.get(base, bob).Body.String()
	for _, unwanted := range []string{`value="public"`, `<label for="cc-email">`, "Make public"} {
		if strings.Contains(body, unwanted) {
			t.Errorf("a light agent is offered %q", unwanted)
		}
	}
	// V5 lets her make a public comment internal: the page offers what the rules allow.
	if !strings.Contains(body, "Make internal") {
		t.Error("a light agent is not offered to make a comment internal, which the rules allow her")
	}
	if !strings.Contains(body, `name="visibility" value="internal"`) || !strings.Contains(body, "Add an internal note") {
		t.Error("a light agent is not offered internal notes")
	}
	// Forged forms are refused by the rules, with their words.
	page := ts.follow(ts.postForm(base+"/comments", "visibility=public&body=hello", bob), bob)
	if !strings.Contains(page, `role="alert"><p>bob@example.com is a light agent and can only write internal notes (V4)</p>`) {
		t.Errorf("the forged public reply is not refused:\n%s", page)
	}
	page = ts.follow(ts.postForm(base+"/ccs", "email=eve%40customer.test", bob), bob)
	if !strings.Contains(page, "bob@example.com is a light agent and cannot add CCs (C1)") {
		t.Errorf("the forged CC is not refused")
	}
	if tk, cs := ts.ticket(id); len(cs) != 1 || len(tk.CCs) != 1 {
		t.Fatalf("a refused action changed the ticket: %d comments, CCs %+v", len(cs), tk.CCs)
	}
	ts.follow(ts.postForm(base+"/comments", "visibility=internal&body=noted", bob), bob)
	if _, cs := ts.ticket(id); len(cs) != 2 || cs[1].Public {
		t.Fatal("the light agent's note was not stored as internal")
	}
}

func TestDownloadsAreAttachmentsNeverPages(t *testing.T) {
	ts := newTestSite(t, nil)
	id := ts.receive("jane@customer.test", janeMail)
	alice := ts.session("alice@example.com")
	_, cs := ts.ticket(id)
	base := fmt.Sprintf("/tickets/%d/comments/%d", id, cs[0].ID)

	w := ts.get(base+"/files/0", alice)
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/octet-stream" || w.Header().Get("X-Content-Type-Options") != "nosniff" ||
		w.Header().Get("Content-Disposition") != `attachment; filename=report.html` || !strings.Contains(w.Body.String(), "<script>alert(1)</script>") {
		t.Errorf("file: %d %v\n%s", w.Code, w.Header(), w.Body)
	}
	w = ts.get(base+"/raw", alice)
	if w.Code != 200 || w.Header().Get("Content-Type") != "text/plain; charset=utf-8" || w.Header().Get("X-Content-Type-Options") != "nosniff" ||
		!strings.HasPrefix(w.Header().Get("Content-Disposition"), "attachment;") || !strings.Contains(w.Body.String(), "Subject: Printer on fire") {
		t.Errorf("raw: %d %v", w.Code, w.Header())
	}
	// An event's id in a file route: events have no files (this panicked once).
	event := ts.act(id, "", rules.Action{Kind: model.OpAddCC, Person: model.Person{Email: "kim@customer.test"}, Actor: "alice@example.com"})
	for _, p := range []string{base + "/files/1", base + "/files/x", fmt.Sprintf("/tickets/%d/comments/%d/raw", id+1, cs[0].ID),
		fmt.Sprintf("/tickets/%d/comments/%d/files/0", id, event), fmt.Sprintf("/tickets/%d/comments/%d/formatted", id, event)} {
		if w := ts.get(p, alice); w.Code != 404 {
			t.Errorf("%s: %d", p, w.Code)
		}
	}
	if w := ts.get(base + "/files/0"); w.Code != http.StatusSeeOther {
		t.Errorf("a file to the signed-out: %d", w.Code)
	}
}

func TestMarkupFromMailIsText(t *testing.T) {
	ts := newTestSite(t, nil)
	id := ts.receive("x@customer.test", `From: "<img src=x onerror=alert(1)>" <x@customer.test>
To: support@example.com
Subject: <script>alert(1)</script>
Message-ID: <h1@x>

<a href="javascript:alert(1)">click</a> <img src=x onerror=alert(1)>
`)
	alice := ts.session("alice@example.com")
	for _, p := range []string{fmt.Sprintf("/tickets/%d", id), "/tickets"} {
		body := ts.get(p, alice).Body.String()
		for _, bad := range []string{"<script>alert", "<img src=x", `href="javascript:`, "<a href=\"javascript"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s carries %q", p, bad)
			}
		}
		if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("%s does not show the subject as text", p)
		}
	}
	body := ts.get(fmt.Sprintf("/tickets/%d", id), alice).Body.String()
	if !strings.Contains(body, "&lt;img src=x onerror=alert(1)&gt; &lt;x@customer.test&gt;") || !strings.Contains(body, "&lt;a href=&#34;javascript:alert(1)&#34;&gt;click&lt;/a&gt;") {
		t.Errorf("the name and body are not shown as text:\n%s", body)
	}
}

func TestCrossSiteAddCCIsRefused(t *testing.T) {
	ts := newTestSite(t, nil)
	id := ts.receive("jane@customer.test", janeMail)
	alice := ts.session("alice@example.com")
	r := crossSitePost(fmt.Sprintf("/tickets/%d/ccs", id))
	r.AddCookie(alice)
	if w := ts.do(r); w.Code != http.StatusForbidden {
		t.Fatalf("cross-site POST: %d", w.Code)
	}
	if tk, _ := ts.ticket(id); len(tk.CCs) != 1 {
		t.Fatalf("a cross-site POST added a CC: %+v", tk.CCs)
	}

}

// X1's two ways out are offered while they are open, and not after they were taken.
func TestThirdPartyWaysOutCloseOnceTaken(t *testing.T) {
	ts := newTestSite(t, nil)
	id := ts.receive("jane@customer.test", "From: jane@customer.test\nTo: support@example.com\nSubject: x\nMessage-ID: <x1-open@customer.test>\n\nhello\n")
	ts.receiveAt(ts.svc.Book().ReplyAddress("support@example.com", id),
		"From: mallory@third.test\nTo: support@example.com\nSubject: Re: x\nMessage-ID: <x1@third.test>\n\nI was forwarded this.\n")
	_, cs := ts.ticket(id)
	third := cs[len(cs)-1]
	if !third.ThirdParty {
		t.Fatalf("the stranger's mail is not flagged X1: %+v", third)
	}
	alice := ts.session("alice@example.com")
	page := func() string { return ts.get(fmt.Sprintf("/tickets/%d", id), alice).Body.String() }
	if p := page(); !strings.Contains(p, "Add as CC") || !strings.Contains(p, fmt.Sprintf("/comments/%d/public", third.ID)) {
		t.Fatalf("the ways out are not offered:\n%s", p)
	}
	ts.postForm(fmt.Sprintf("/tickets/%d/ccs", id), "email=mallory%40third.test", alice)
	if p := page(); strings.Contains(p, "Add as CC") || !strings.Contains(p, fmt.Sprintf("/comments/%d/public", third.ID)) {
		t.Errorf("after adding her as CC the page still offers it, or no longer offers to make it public")
	}
	ts.postForm(fmt.Sprintf("/tickets/%d/comments/%d/public", id, third.ID), "", alice)
	if p := page(); strings.Contains(p, fmt.Sprintf("/comments/%d/public", third.ID)) || !strings.Contains(p, "made public since") {
		t.Errorf("after making it public the page still offers it:\n%s", p)
	}
}

// The one-time message after an action is the desk's own: a flash cookie set by anybody
// else (another service of the host, a sibling domain) shows nothing, and a long refusal is
// cut to fit a cookie instead of being dropped by the browser.
func TestFlashIsTheDesksOwn(t *testing.T) {
	ts := newTestSite(t, nil)
	id := ts.receive("jane@customer.test", janeMail)
	alice := ts.session("alice@example.com")
	forged := &http.Cookie{Name: flashCookie, Value: "eyJlIjp0cnVlLCJ0IjoiQ2FsbCArMSA1NTUgMDEwMCBub3cifQ"}
	if page := ts.get(fmt.Sprintf("/tickets/%d", id), alice, forged).Body.String(); strings.Contains(page, "Call +1 555 0100 now") {
		t.Errorf("a forged flash cookie is shown as the desk's word")
	}
	w := ts.postForm(fmt.Sprintf("/tickets/%d/ccs", id), "email="+strings.Repeat("x", 3000), alice)
	c := cookieOf(w, flashCookie)
	if c == nil || len(c.Value) > 3000 {
		t.Fatalf("the flash for a long bad address: %v", c)
	}
	if page := ts.get(fmt.Sprintf("/tickets/%d", id), alice, c).Body.String(); !strings.Contains(page, "is not an email address") {
		t.Errorf("the desk's own flash is not shown")
	}
}

// filterCounts reads the numbers beside the list's status filters, as "All 3 New 1 ...".
func filterCounts(body string) string {
	var out []string
	for _, label := range []string{"All", "New", "Open", "Pending", "Solved"} {
		n := "-"
		if _, rest, ok := strings.Cut(body, ">"+label+` <span class="count">(`); ok {
			n, _, _ = strings.Cut(rest, ")")
		}
		out = append(out, label+" "+n)
	}
	return strings.Join(out, " ")
}

func TestTicketListCountsEachStatus(t *testing.T) {
	ts := newTestSite(t, nil)
	var ids []uint64
	for i := range 4 {
		ids = append(ids, ts.receive("max@customer.test", fmt.Sprintf("From: max@customer.test\nTo: support@example.com\nSubject: Number %d\nMessage-ID: <n%d@x>\n\nhi\n", i, i)))
	}
	alice := ts.session("alice@example.com")
	counts := func(when, path, want string) {
		t.Helper()
		w := ts.get(path, alice)
		if w.Code != 200 {
			t.Fatalf("%s: GET %s: %d", when, path, w.Code)
		}
		if got := filterCounts(w.Body.String()); got != want {
			t.Errorf("%s: the filters read %q, want %q", when, got, want)
		}
	}
	counts("four new tickets", "/tickets", "All 4 New 4 Open 0 Pending 0 Solved 0")

	ts.follow(ts.postForm(fmt.Sprintf("/tickets/%d/status", ids[0]), "status=pending", alice), alice)
	ts.follow(ts.postForm(fmt.Sprintf("/tickets/%d/status", ids[1]), "status=solved", alice), alice)
	ts.follow(ts.postForm(fmt.Sprintf("/tickets/%d/status", ids[2]), "status=solved", alice), alice)
	counts("one pending, two solved", "/tickets", "All 4 New 1 Open 0 Pending 1 Solved 2")
	// The counts are the desk's, whichever filter is on, and match what the filter lists.
	counts("on the solved filter", "/tickets?status=solved", "All 4 New 1 Open 0 Pending 1 Solved 2")
	if b := ts.get("/tickets?status=solved", alice).Body.String(); !strings.Contains(b, "2 tickets on this page") {
		t.Errorf("the solved filter does not list the two solved tickets")
	}

	// The requester writes again: a solved ticket reopens (the rules move it to open).
	ts.receive("max@customer.test", "From: max@customer.test\nTo: support@example.com\nSubject: Re: Number 1\nMessage-ID: <again@x>\nIn-Reply-To: <n1@x>\n\nstill broken\n")
	if tk, _ := ts.ticket(ids[1]); tk.Status != model.StatusOpen {
		t.Fatalf("the reply left ticket %d %s, want open", ids[1], tk.Status)
	}
	counts("a solved ticket reopened by mail", "/tickets", "All 4 New 1 Open 1 Pending 1 Solved 1")

	// "Assigned to me" has no counter: numbers there would count everyone's tickets.
	counts("assigned to me", "/tickets?mine=1", "All - New - Open - Pending - Solved -")
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 12: "12", 999: "999", 1000: "1,000", 123456: "123,456", 1000000: "1,000,000", -1234: "-1,234"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
