package web

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/desk"
	"github.com/deskgate/deskgate/gateway/metrics"
	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/gateway/rules"
	"github.com/deskgate/deskgate/store"
)

const (
	jane = "jane@customer.test"
	joe  = "joe@customer.test"
	kim  = "kim@customer.test"
)

// request is one ticket of the status view tests: Jane asked, with Joe as CC and a PDF;
// Bob (a light agent) follows and wrote an internal note; Alice answered in public, and one
// more public answer of hers was made internal afterwards (V5).
type request struct {
	ts *testSite
	id uint64
}

// receiveAt has raw reach the desk addressed to rcpt, as a reply to a copy would.
func (ts *testSite) receiveAt(rcpt, raw string) {
	ts.t.Helper()
	if _, err := ts.svc.Receive(context.Background(), desk.Envelope{From: "x@x", Recipients: []string{rcpt}},
		[]byte(strings.ReplaceAll(raw, "\n", "\r\n"))); err != nil {
		ts.t.Fatal(err)
	}
}

func (ts *testSite) receiveResult(raw string) desk.Result {
	ts.t.Helper()
	res, err := ts.svc.Receive(context.Background(), desk.Envelope{From: "x@x", Recipients: []string{"support@example.com"}},
		[]byte(strings.ReplaceAll(raw, "\n", "\r\n")))
	if err != nil {
		ts.t.Fatal(err)
	}
	return res
}

func (ts *testSite) act(id uint64, body string, actions ...rules.Action) uint64 {
	ts.t.Helper()
	cid, err := ts.svc.Act(context.Background(), id, actions, body)
	if err != nil {
		ts.t.Fatalf("%v: %v", actions, err)
	}
	return cid
}

func newRequest(ts *testSite, subject, fromName, body string) *request {
	ts.t.Helper()
	res := ts.receiveResult(fmt.Sprintf(`From: %q <%s>
To: support@example.com
Cc: "Joe" <%s>
Subject: %s
Message-ID: <%d@customer.test>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=XX

--XX
Content-Type: text/plain; charset=utf-8

%s
--XX
Content-Type: application/pdf; name=report.pdf
Content-Disposition: attachment; filename=report.pdf

%%PDF-1.4 REPORTDATA
--XX--
`, fromName, jane, joe, subject, ts.svc.Now().UnixNano(), body))
	id := res.TicketID
	ts.act(id, "", rules.Action{Kind: model.OpAddFollower, Actor: "alice@example.com", Person: model.Person{Email: "bob@example.com"}})
	ts.act(id, "SECRET-NOTE only for agents", rules.Action{Kind: model.OpComment, Actor: "bob@example.com"})
	ts.act(id, "PUBLIC-2 the answer from Alice", rules.Action{Kind: model.OpComment, Actor: "alice@example.com", Public: true})
	later := ts.act(id, "LATER-INTERNAL said too much", rules.Action{Kind: model.OpComment, Actor: "alice@example.com", Public: true})
	ts.act(id, "", rules.Action{Kind: model.OpMakePrivate, Actor: "alice@example.com", CommentID: later})
	return &request{ts: ts, id: id}
}

func defaultRequest(ts *testSite) *request {
	return newRequest(ts, "Printer on fire", "Jane Doe", "PUBLIC-1 the printer is on fire")
}

// link is the path of email's status view of the request.
func (rq *request) link(email string) string { return rq.ts.svc.Book().StatusPath(rq.id, email) }

func (rq *request) ticket() *model.Ticket {
	var t *model.Ticket
	rq.ts.svc.Store().View(func(tx *store.Tx) error {
		var err error
		t, err = tx.Ticket(rq.id)
		return err
	})
	return t
}

func (rq *request) commentIDs() []uint64 {
	t := rq.ticket()
	rq.ts.svc.Store().View(func(tx *store.Tx) error { tx.Items(t); return nil })
	return t.CommentIDs
}

func (rq *request) comment(id uint64) *model.Comment {
	var c *model.Comment
	rq.ts.svc.Store().View(func(tx *store.Tx) error {
		var err error
		c, err = tx.Comment(id)
		return err
	})
	if c == nil {
		rq.ts.t.Fatalf("no comment %d", id)
	}
	return c
}

// sentCopy is one queued message: its recipients and its text, quoted-printable decoded.
type sentCopy struct {
	to   []string
	text string
}

func (ts *testSite) copies() []sentCopy {
	var out []sentCopy
	ts.svc.Store().View(func(tx *store.Tx) error {
		ds, err := tx.Deliveries(10000)
		if err != nil {
			return err
		}
		for _, d := range ds {
			raw := tx.DeliveryMessage(d.ID)
			text, _ := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(raw)))
			c := sentCopy{text: string(text)}
			for _, r := range d.Recipients {
				c.to = append(c.to, r.Email)
			}
			out = append(out, c)
		}
		return nil
	})
	return out
}

var statusLinkPattern = regexp.MustCompile(`https://desk\.example\.com(/requests/[0-9]+-[a-z2-7]+)`)

func TestStatusViewShowsThePublicConversationOnly(t *testing.T) {
	ts := newTestSite(t, nil)
	rq := defaultRequest(ts)
	before := testutil.ToFloat64(metrics.WebRequests.WithLabelValues("GET /requests/{ref}", "200"))
	w := ts.get(rq.link(jane))
	if w.Code != http.StatusOK {
		t.Fatalf("requester's link: %d\n%s", w.Code, w.Body)
	}
	body := w.Body.String()
	for _, want := range []string{"Printer on fire", "Request #1", "Open", "PUBLIC-1 the printer is on fire", "PUBLIC-2 the answer from Alice",
		"Jane Doe", jane, "Who a reply will reach", joe, "Your reply goes to Joe and the support team.", "The support team", "report.pdf", "Send reply", "Mark as solved", `name="body"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Index(body, "PUBLIC-1") > strings.Index(body, "PUBLIC-2") {
		t.Error("the conversation is not oldest first")
	}
	// V5, N2, H4, S1: no internal note, nothing made internal later, no agent's address, no
	// masked or reply address, no link to the agents' pages.
	for _, never := range []string{"SECRET-NOTE", "LATER-INTERNAL", "alice@example.com", "bob@example.com", "support+", "/tickets", "/login", "Bob"} {
		if strings.Contains(body, never) {
			t.Errorf("the page shows %q:\n%s", never, body)
		}
	}
	if !strings.Contains(body, `<span class="comment-author">Alice</span>`) {
		t.Error("Alice's answer does not name her by her configured name")
	}
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q", got)
	}
	if after := testutil.ToFloat64(metrics.WebRequests.WithLabelValues("GET /requests/{ref}", "200")); after != before+1 {
		t.Errorf("the page is not counted under its route's pattern: %v → %v", before, after)
	}

	// The PDF downloads as opaque bytes, never rendered.
	file := regexp.MustCompile(`href="(/requests/[^"]+/files/[0-9]+/0)"`).FindStringSubmatch(body)
	if file == nil {
		t.Fatalf("no download link:\n%s", body)
	}
	w = ts.get(file[1])
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "REPORTDATA") {
		t.Fatalf("download: %d %q", w.Code, w.Body)
	}
	for h, want := range map[string]string{"Content-Type": "application/octet-stream", "Content-Disposition": "attachment; filename=report.pdf",
		"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"} {
		if got := w.Header().Get(h); got != want {
			t.Errorf("download: %s = %q, want %q", h, got, want)
		}
	}
	// The files of internal comments and of other tickets are not reachable through a view.
	for _, bad := range []string{strings.Replace(file[1], "/0", "/1", 1), rq.link(jane) + "/files/999/0", rq.link(jane) + "/files/x/0"} {
		if w := ts.get(bad); w.Code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", bad, w.Code)
		}
	}
}

// S1: CCs have a view only under requester_and_ccs, each through a link of their own, and
// see attachments only when policy.cc_attachments is true; a removed CC's link stops working.
func TestStatusViewForCCs(t *testing.T) {
	ts := newTestSite(t, nil)
	rq := defaultRequest(ts)
	if w := ts.get(rq.link(joe)); w.Code != http.StatusNotFound {
		t.Fatalf("a CC's link under status_view requester: %d", w.Code)
	}
	ts.reload(func(c *config.Config) { c.Web.StatusView = config.StatusViewRequesterAndCCs })
	w := ts.get(rq.link(joe))
	body := w.Body.String()
	if w.Code != http.StatusOK || !strings.Contains(body, "PUBLIC-2") || !strings.Contains(body, "report.pdf") {
		t.Fatalf("a CC's link under requester_and_ccs: %d\n%s", w.Code, body)
	}
	// Only the requester solves her request; Joe's list of whom he reaches names Jane.
	if strings.Contains(body, "Mark as solved") || !strings.Contains(body, jane) {
		t.Errorf("a CC's page: the solve button, or no requester to reach:\n%s", body)
	}
	fileLink := regexp.MustCompile(`href="(/requests/[^"]+/files/[0-9]+/0)"`).FindStringSubmatch(body)[1]

	ts.reload(func(c *config.Config) { c.Policy.CCAttachments = false })
	body = ts.get(rq.link(joe)).Body.String()
	if strings.Contains(body, "/files/") || !strings.Contains(body, "CCs do not") {
		t.Errorf("policy.cc_attachments false: the CC's page offers a file:\n%s", body)
	}
	if w := ts.get(fileLink); w.Code != http.StatusNotFound {
		t.Errorf("policy.cc_attachments false: the CC downloads the file: %d", w.Code)
	}
	if body := ts.get(rq.link(jane)).Body.String(); !strings.Contains(body, "/files/") {
		t.Error("policy.cc_attachments false took the requester's files away")
	}

	ts.act(rq.id, "", rules.Action{Kind: model.OpRemoveCC, Actor: "alice@example.com", Person: model.Person{Email: joe}})
	if w := ts.get(rq.link(joe)); w.Code != http.StatusNotFound {
		t.Errorf("a removed CC's link: %d", w.Code)
	}
	if w := ts.postForm(rq.link(joe), "body=still+here"); w.Code != http.StatusNotFound {
		t.Errorf("a removed CC's reply: %d", w.Code)
	}
}

// Every way a link can fail looks the same: the page tells nothing of why.
func TestStatusViewBadLinksAll404Alike(t *testing.T) {
	ts := newTestSite(t, nil)
	rq := defaultRequest(ts)
	other := newRequest(ts, "Second", "Kim", "another one")
	good := rq.link(jane)
	notFound := ts.get("/requests/no-such-thing").Body.String()
	tamper := func(p string) string {
		b := []byte(p)
		if b[len(b)-1] == 'a' {
			b[len(b)-1] = 'b'
		} else {
			b[len(b)-1] = 'a'
		}
		return string(b)
	}
	check := func(what, path string) {
		t.Helper()
		w := ts.get(path)
		if w.Code != http.StatusNotFound || w.Body.String() != notFound {
			t.Errorf("%s: %d, or a page unlike the plain 404:\n%s", what, w.Code, w.Body)
		}
	}
	check("tampered token", tamper(good))
	check("another ticket's number", strings.Replace(good, "/1-", fmt.Sprintf("/%d-", other.id), 1))
	check("a stranger's token", rq.link(kim))
	check("an agent's token", rq.link("alice@example.com"))
	check("a follower's token", rq.link("bob@example.com"))
	check("no token", fmt.Sprintf("/requests/%d", rq.id))

	ts.reload(func(c *config.Config) { c.Web.StatusView = config.StatusViewOff })
	check("status_view off", good)
	ts.reload(func(c *config.Config) { c.Web.StatusView = config.StatusViewRequester })
	if w := ts.get(good); w.Code != http.StatusOK {
		t.Fatalf("the view back on: %d", w.Code)
	}

	if _, err := ts.svc.DeleteTicket(context.Background(), rq.id); err != nil {
		t.Fatal(err)
	}
	check("deleted ticket", good)
	if _, err := ts.svc.Erase(context.Background(), jane, false); err != nil {
		t.Fatal(err)
	}
	check("erased requester", other.link(jane))
}

// Markup in a subject, a display name or a body is text on the page, never markup.
func TestStatusViewEscapesMarkup(t *testing.T) {
	ts := newTestSite(t, nil)
	rq := newRequest(ts, `<script>alert("subject")</script>`, `<img src=x onerror=alert(1)>`,
		`<a href="javascript:alert(2)">click</a> <script>alert(3)</script>`)
	body := ts.get(rq.link(jane)).Body.String()
	for _, never := range []string{"<script>", "<img", `href="javascript:`, "onerror=alert(1)>"} {
		if strings.Contains(body, never) {
			t.Errorf("the page carries %q as markup:\n%s", never, body)
		}
	}
	for _, want := range []string{"&lt;script&gt;alert(&#34;subject&#34;)&lt;/script&gt;", "&lt;img src=x onerror=alert(1)&gt;", "&lt;a href=&#34;javascript:alert(2)&#34;&gt;click&lt;/a&gt;"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page does not show %q as text", want)
		}
	}
}

// S2: a reply from the view is the requester's public comment via web, told to every current
// CC (N1, not narrowed by N4: Kim, added after the last copy Jane had, is told too), the
// follower and never its author; the page says it was sent.
func TestStatusReplyIsAPublicCommentViaWeb(t *testing.T) {
	ts := newTestSite(t, nil)
	rq := defaultRequest(ts)
	ts.act(rq.id, "", rules.Action{Kind: model.OpAddCC, Actor: "alice@example.com", Person: model.Person{Email: kim}})
	ref := rq.link(jane)

	w := ts.postForm(ref, "body=WEB-REPLY+thank+you%0D%0Ait+works")
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != ref+"?done=reply" {
		t.Fatalf("reply: %d %q\n%s", w.Code, w.Header().Get("Location"), w.Body)
	}
	page := ts.get(w.Header().Get("Location")).Body.String()
	if !strings.Contains(page, "Your reply was sent.") || !strings.Contains(page, "WEB-REPLY thank you\nit works") || !strings.Contains(page, "Jane Doe (you)") {
		t.Errorf("the page after a reply:\n%s", page)
	}
	tk := rq.ticket()
	tk.CommentIDs = rq.commentIDs()
	c := rq.comment(tk.CommentIDs[len(tk.CommentIDs)-1])
	if c.Via != "web" || !c.Public || c.Author != jane || c.AuthorName != "Jane Doe" || c.MessageID == "" || c.Body != "WEB-REPLY thank you\nit works" {
		t.Fatalf("stored reply: %+v", c)
	}
	told := map[string]model.As{}
	for _, n := range c.Notified {
		told[n.Email] = n.As
	}
	if told[joe] != model.AsCC || told[kim] != model.AsCC || told["bob@example.com"] != model.AsFollower {
		t.Errorf("notified %v: want Joe and Kim as CCs and Bob as follower", told)
	}
	if _, ok := told[jane]; ok {
		t.Error("the author was sent her own reply")
	}

	// An empty reply is refused on the page, and nothing is stored.
	w = ts.postForm(ref, "body=+++")
	if w.Code != http.StatusUnprocessableEntity || !strings.Contains(w.Body.String(), "Write your reply") {
		t.Errorf("empty reply: %d", w.Code)
	}
	if len(rq.commentIDs()) != len(tk.CommentIDs) {
		t.Error("an empty reply was stored")
	}
}

// S2, N5, T4: "Mark as solved" is the requester's own solve, told per notifications.solved;
// the page then says so and offers no second solve; a reply opens the request again. A CC
// cannot solve, even by posting the form by hand.
func TestStatusSolve(t *testing.T) {
	ts := newTestSite(t, func(c *config.Config) { c.Web.StatusView = config.StatusViewRequesterAndCCs })
	rq := defaultRequest(ts)
	if w := ts.postForm(rq.link(joe)+"/solve", ""); w.Code != http.StatusForbidden || rq.ticket().Status == model.StatusSolved {
		t.Fatalf("a CC's solve: %d, status %s", w.Code, rq.ticket().Status)
	}
	w := ts.postForm(rq.link(jane)+"/solve", "")
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != rq.link(jane)+"?done=solved" {
		t.Fatalf("solve: %d %q", w.Code, w.Header().Get("Location"))
	}
	if st := rq.ticket().Status; st != model.StatusSolved {
		t.Fatalf("status after the solve: %s", st)
	}
	page := ts.get(w.Header().Get("Location")).Body.String()
	if !strings.Contains(page, "marked as solved") || !strings.Contains(page, ">Solved<") || strings.Contains(page, "Mark as solved") ||
		!strings.Contains(page, "a reply opens it again") {
		t.Errorf("the page after the solve:\n%s", page)
	}
	// notifications.solved is requester_and_ccs: Jane and Joe each get the solved notice,
	// each with a link of their own.
	var solved []sentCopy
	for _, c := range ts.copies() {
		if strings.Contains(c.text, "is solved") {
			solved = append(solved, c)
		}
	}
	if len(solved) != 2 {
		t.Fatalf("%d solved notices, want Jane's and Joe's", len(solved))
	}
	for _, c := range solved {
		m := statusLinkPattern.FindStringSubmatch(c.text)
		if len(c.to) != 1 || m == nil || m[1] != rq.link(c.to[0]) {
			t.Errorf("solved notice to %v carries link %v", c.to, m)
		}
	}
	if w := ts.postForm(rq.link(jane), "body=not+quite"); w.Code != http.StatusSeeOther || rq.ticket().Status != model.StatusOpen {
		t.Errorf("a reply to the solved request: %d, status %s", w.Code, rq.ticket().Status)
	}
}

// A form posted from another site changes nothing.
func TestStatusViewRefusesCrossSitePosts(t *testing.T) {
	ts := newTestSite(t, nil)
	rq := defaultRequest(ts)
	n := len(ts.copies())
	for _, p := range []string{rq.link(jane), rq.link(jane) + "/solve"} {
		r := crossSitePost(p)
		if w := ts.do(r); w.Code != http.StatusForbidden {
			t.Errorf("cross-site POST %s: %d", p, w.Code)
		}
	}
	if rq.ticket().Status == model.StatusSolved || len(ts.copies()) != n {
		t.Error("a cross-site POST changed the ticket")
	}
}

// S1: every copy to a person with a view carries her own link and no one else's; agents'
// copies carry none; with the pages off no copy carries a link.
func TestStatusLinksInCopies(t *testing.T) {
	for _, view := range []string{config.StatusViewRequester, config.StatusViewRequesterAndCCs, ""} {
		ts := newTestSite(t, func(c *config.Config) {
			c.Web.StatusView = config.StatusViewRequesterAndCCs
			if view == "" {
				c.Listen.Web = ""
			} else {
				c.Web.StatusView = view
			}
		})
		rq := defaultRequest(ts)
		ts.postForm(rq.link(jane), "body=hello")
		viewers := map[string]bool{jane: view != ""}
		viewers[joe] = view == config.StatusViewRequesterAndCCs
		linked := map[string]bool{}
		for _, c := range ts.copies() {
			links := statusLinkPattern.FindAllStringSubmatch(c.text, -1)
			if len(links) == 0 {
				continue
			}
			if len(c.to) != 1 || len(links) != 1 {
				t.Fatalf("%q: a copy to %v carries links %v", view, c.to, links)
			}
			if links[0][1] != rq.link(c.to[0]) || !viewers[c.to[0]] {
				t.Fatalf("%q: the copy to %s carries %s", view, c.to[0], links[0][1])
			}
			if !strings.Contains(strings.ReplaceAll(c.text, "\r\n", "\n"), "See your request and reply on the web:\nhttps://desk.example.com"+rq.link(c.to[0])) {
				t.Errorf("%q: the link line in the copy to %s:\n%s", view, c.to[0], c.text)
			}
			linked[c.to[0]] = true
		}
		for who, has := range viewers {
			if linked[who] != has {
				t.Errorf("%q: %s got a link: %v, want %v", view, who, linked[who], has)
			}
		}
	}
}

// A follower who answered the requester in public, quoting her copy's masked addresses as
// mail clients do, and who has left agents since: the requester's page shows neither her
// address nor a masked address (S1, H4).
func TestStatusViewHidesAFormerAgentFollowerAndMaskedAddresses(t *testing.T) {
	ts := newTestSite(t, nil)
	rq := defaultRequest(ts)
	ts.act(rq.id, "", rules.Action{Kind: model.OpAddFollower, Actor: "alice@example.com", Person: model.Person{Email: "alice@example.com"}})
	tk := rq.ticket()
	book := ts.svc.Book()
	masked := book.MaskedAddress("support@example.com", rq.id, tk.Masks[jane])
	reply := book.ReplyAddress("support@example.com", rq.id)
	ts.receiveAt(reply, fmt.Sprintf(`From: Alice <alice@example.com>
To: %s
Cc: %s
Subject: Re: Printer on fire
Message-ID: <alice-quote@example.com>

PUBLIC-QUOTE the technician comes at three.

On Monday, Jane Doe <%s> wrote:
> It is burning.
`, reply, masked, masked))
	_, cs := ts.ticket(rq.id)
	public := false
	for _, c := range cs {
		public = public || (strings.Contains(c.Body, "PUBLIC-QUOTE") && c.Public)
	}
	if !public {
		t.Fatalf("the follower's reply-all is not a public comment of the ticket: %+v", cs)
	}
	ts.reload(func(c *config.Config) {
		var agents []config.Agent
		for _, a := range c.Agents {
			if a.Email != "alice@example.com" {
				agents = append(agents, a)
			}
		}
		c.Agents = agents
	})
	page := ts.get(rq.link(jane)).Body.String()
	if !strings.Contains(page, "PUBLIC-QUOTE") {
		t.Fatalf("the reply is not on the page:\n%s", page)
	}
	for _, never := range []string{"alice@example.com", masked, "support+"} {
		if strings.Contains(page, never) {
			t.Errorf("the requester's page shows %q:\n%s", never, page)
		}
	}
	if !strings.Contains(page, "[address hidden]") {
		t.Errorf("the quoted masked address is not replaced")
	}
}

// A reply over the 1 MiB bound is told as too large, not as empty, and stores nothing.
func TestTooLargeAFormIsToldSo(t *testing.T) {
	ts := newTestSite(t, nil)
	rq := defaultRequest(ts)
	_, before := ts.ticket(rq.id)
	w := ts.postForm(rq.link(jane), "body="+strings.Repeat("a", 2<<20))
	if w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(w.Body.String(), "too much to send") {
		t.Errorf("a 2 MiB reply: %d\n%s", w.Code, w.Body)
	}
	if _, after := ts.ticket(rq.id); len(after) != len(before) {
		t.Errorf("the reply was stored")
	}
}
