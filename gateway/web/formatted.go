package web

import (
	"errors"
	"fmt"
	"html/template"
	"net/http"

	"github.com/microcosm-cc/bluemonday"

	"github.com/deskgate/deskgate/gateway/mailparse"
	"github.com/deskgate/deskgate/store"
)

func init() {
	addRoutes(func(s *Server, r *router) {
		r.handle("GET /tickets/{id}/comments/{cid}/formatted", s.requireAgent(s.formattedComment))
	})
}

// mailPolicy is what is left of a mail's HTML part on the desk's formatted view: text
// structure, lists, tables and links. No script, no style, no form and no image: remote
// images tell their sender when and where a mail is read, and the page's
// Content-Security-Policy would refuse them anyway. Links open nothing of the desk's: they
// carry no referrer and only http, https and mailto survive.
var mailPolicy = func() *bluemonday.Policy {
	p := bluemonday.NewPolicy()
	p.AllowElements("p", "br", "div", "span", "b", "strong", "i", "em", "u", "s", "small", "sub", "sup",
		"h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "code", "hr",
		"ul", "ol", "li", "dl", "dt", "dd", "table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption")
	p.AllowAttrs("href").OnElements("a")
	p.AllowURLSchemes("http", "https", "mailto")
	p.RequireParseableURLs(true)
	p.RequireNoFollowOnLinks(true)
	p.RequireNoReferrerOnLinks(true)
	p.AddTargetBlankToFullyQualifiedLinks(true)
	p.AllowAttrs("colspan", "rowspan").Matching(bluemonday.Integer).OnElements("td", "th")
	return p
}()

// SanitizeMailHTML is an HTML mail part made safe to show inside a desk page.
func SanitizeMailHTML(html string) template.HTML {
	return template.HTML(mailPolicy.Sanitize(html))
}

type formattedView struct {
	TicketID, ID uint64
	Back         string
	HTML         template.HTML
}

// formattedComment shows the HTML part of the mail a comment came from, sanitised: the
// stored comment is the text deskgate read from it, and an HTML-only mail's tables and
// emphasis can say more than that text.
func (s *Server) formattedComment(w http.ResponseWriter, r *http.Request, a Agent) {
	id, c, _, ok := s.itemOf(w, r)
	if !ok {
		return
	}
	var raw []byte
	found := false
	err := errors.New("not a comment")
	if c != nil {
		err = s.st.View(func(tx *store.Tx) error {
			var err error
			raw, found, err = tx.Original(c.ID)
			return err
		})
	}
	if c == nil || err == nil && !found {
		s.errorPage(w, r, http.StatusNotFound, fmt.Sprintf("This item of ticket %d did not come by mail.", id))
		return
	}
	if err != nil {
		s.log.Error("web: cannot read an original", "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, "")
		return
	}
	m, err := mailparse.Parse(raw, s.cfg().Hostname)
	if err != nil || m.HTML == "" {
		s.errorPage(w, r, http.StatusNotFound, "This mail has no HTML part: its text on the ticket is all of it.")
		return
	}
	v := formattedView{TicketID: id, ID: c.ID, Back: s.path(fmt.Sprintf("/tickets/%d#comment-%d", id, c.ID)), HTML: SanitizeMailHTML(m.HTML)}
	s.render(w, r, http.StatusOK, "formatted.html", fmt.Sprintf("Formatted mail: comment %d", c.ID), v)
}
