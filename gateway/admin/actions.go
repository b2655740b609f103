package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/deskgate/deskgate/gateway/addr"
	"github.com/deskgate/deskgate/gateway/desk"
	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/gateway/rules"
	"github.com/deskgate/deskgate/store"
)

func (s *Server) routeActions(api *http.ServeMux) {
	s.handle(api, "POST /api/v1/tickets/{id}/ccs", s.personAction(model.OpAddCC))
	s.handle(api, "DELETE /api/v1/tickets/{id}/ccs/{email}", s.personAction(model.OpRemoveCC))
	s.handle(api, "POST /api/v1/tickets/{id}/followers", s.personAction(model.OpAddFollower))
	s.handle(api, "DELETE /api/v1/tickets/{id}/followers/{email}", s.personAction(model.OpRemoveFollower))
	s.handle(api, "POST /api/v1/tickets/{id}/comments", s.postComment)
	s.handle(api, "PATCH /api/v1/tickets/{id}/comments/{cid}", s.patchComment)
	s.handle(api, "PATCH /api/v1/tickets/{id}", s.patchTicket)
	s.handle(api, "GET /api/v1/queue", s.listQueue)
	s.handle(api, "POST /api/v1/queue/{id}/retry", s.retryDelivery)
	s.handle(api, "DELETE /api/v1/queue/{id}", s.dropDelivery)
	s.handle(api, "GET /api/v1/explain/{id}", s.explain)
	s.handle(api, "GET /api/v1/backup", s.backup)
	s.handle(api, "DELETE /api/v1/tickets/{id}", s.deleteTicket)
	s.handle(api, "POST /api/v1/erase", s.erase)
}

// deleteTicket deletes a ticket and everything of it (tickets delete).
func (s *Server) deleteTicket(w http.ResponseWriter, r *http.Request) {
	id, ok := ticketID(w, r)
	if !ok {
		return
	}
	d, err := s.desk.DeleteTicket(r.Context(), id)
	if err != nil {
		writeActError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, Deleted{Ticket: d.Ticket, Comments: d.Comments, Events: d.Events, Deliveries: d.Deliveries,
		MessageIDs: d.MessageIDs, Attachments: d.Attachments})
}

// erase removes a person from every ticket (deskgate erase).
func (s *Server) erase(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Address string `json:"address"`
		DryRun  bool   `json:"dry_run"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	address, err := bareAddress("address", req.Address)
	if err != nil {
		writeAddressError(w, err)
		return
	}
	e, err := s.desk.Erase(r.Context(), address, req.DryRun)
	if err != nil {
		writeActError(w, err)
		return
	}
	actions := e.Actions
	if actions == nil {
		actions = []string{}
	}
	writeJSON(w, http.StatusOK, Erasure{Address: e.Address, Marker: e.Marker, DryRun: e.DryRun, Tickets: e.Tickets, Actions: actions})
}

func ticketID(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("id: %q is not a ticket id", r.PathValue("id")))
		return 0, false
	}
	return id, true
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 10<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body: larger than %d bytes", tooBig.Limit))
			return false
		}
		writeError(w, http.StatusBadRequest, "body: "+jsonProblem(err))
		return false
	}
	return true
}

// jsonProblem says what is wrong with a request body in the API's terms (fields and JSON
// types), not in Go's.
func jsonProblem(err error) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			return fmt.Sprintf("must be a JSON object, not %s", jsonArticle(typeErr.Value))
		}
		return fmt.Sprintf("%s: must be %s, not %s", field, jsonKind(typeErr.Type.Kind()), jsonArticle(typeErr.Value))
	case errors.As(err, &syntaxErr):
		return fmt.Sprintf("not valid JSON at byte %d: %v", syntaxErr.Offset, err)
	case errors.Is(err, io.EOF):
		return "empty; a JSON object is expected"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "JSON ends too early"
	}
	if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return "unknown field " + field
	}
	return err.Error()
}

func jsonKind(k reflect.Kind) string {
	switch k {
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct, reflect.Pointer:
		return "an object"
	}
	return "a number"
}

func jsonArticle(value string) string {
	switch value {
	case "object", "array":
		return "an " + value
	case "bool":
		return "true or false"
	}
	return "a " + value
}

// addressError is an address refused: 400 when the text is no bare address at all, 422 when
// it is one that is not valid (addr.Canonical: bad IDNA, control characters, invalid UTF-8).
type addressError struct {
	status int
	msg    string
}

func (e *addressError) Error() string { return e.msg }

// bareAddress is the address a request names, in its canonical form, so that every spelling of
// one person (case, A-labels, NFD) is that person; the error is an *addressError.
func bareAddress(field, s string) (string, error) {
	s = strings.TrimSpace(s)
	if !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
		_, err := addr.Canonical(s)
		return "", &addressError{http.StatusUnprocessableEntity, field + ": " + err.Error()}
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || !strings.Contains(a.Address, "@") {
		return "", &addressError{http.StatusBadRequest, fmt.Sprintf("%s: %q is not a mail address", field, s)}
	}
	canon, err := addr.Canonical(a.Address)
	if err != nil {
		return "", &addressError{http.StatusUnprocessableEntity, field + ": " + err.Error()}
	}
	return canon, nil
}

// writeAddressError answers a refused address with its status.
func writeAddressError(w http.ResponseWriter, err error) {
	status := http.StatusBadRequest
	var ae *addressError
	if errors.As(err, &ae) {
		status = ae.status
	}
	writeError(w, status, err.Error())
}

// writeActError answers a refused or failed action with the API's documented codes.
func writeActError(w http.ResponseWriter, err error) {
	var ref *rules.Refusal
	switch {
	case errors.As(err, &ref):
		writeError(w, httpStatus(ref.Kind), ref.Error())
	case errors.Is(err, desk.ErrNotFound), errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	default:
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

// httpStatus is the API's answer to each kind of refusal.
func httpStatus(k rules.RefusalKind) int {
	switch k {
	case rules.RefuseInvalid:
		return http.StatusBadRequest
	case rules.RefuseNotFound:
		return http.StatusNotFound
	case rules.RefuseConflict:
		return http.StatusConflict
	case rules.RefuseNotAllowed:
		return http.StatusUnprocessableEntity
	}
	return http.StatusInternalServerError
}

func (s *Server) act(w http.ResponseWriter, r *http.Request, id uint64, actions []rules.Action, body string, status int) {
	last, err := s.desk.Act(r.Context(), id, actions, body)
	if err != nil {
		writeActError(w, err)
		return
	}
	s.writeTicket(w, id, status, last)
}

func (s *Server) writeTicket(w http.ResponseWriter, id uint64, status int, last uint64) {
	view, err := s.loadTicket(id)
	if err != nil {
		writeActError(w, err)
		return
	}
	view.Last = last
	writeJSON(w, status, view)
}

func (s *Server) personAction(kind model.Operation) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := ticketID(w, r)
		if !ok {
			return
		}
		var p model.Person
		if email := r.PathValue("email"); email != "" {
			e, err := url.PathUnescape(email)
			if err != nil {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("email: %q is not escaped right", email))
				return
			}
			if p.Email, err = bareAddress("email", e); err != nil {
				writeAddressError(w, err)
				return
			}
		} else {
			var body struct {
				Email string `json:"email"`
				Name  string `json:"name"`
			}
			if !decodeBody(w, r, &body) {
				return
			}
			e, err := bareAddress("email", body.Email)
			if err != nil {
				writeAddressError(w, err)
				return
			}
			if strings.ContainsAny(body.Name, "\r\n") {
				writeError(w, http.StatusBadRequest, "name: must not contain line breaks")
				return
			}
			p = model.Person{Email: e, Name: body.Name}
		}
		status := http.StatusOK
		if r.Method == http.MethodPost {
			status = http.StatusCreated
		}
		s.act(w, r, id, []rules.Action{{Kind: kind, Person: p, Actor: r.Header.Get("X-Deskgate-Expert")}}, "", status)
	}
}

func (s *Server) postComment(w http.ResponseWriter, r *http.Request) {
	id, ok := ticketID(w, r)
	if !ok {
		return
	}
	var body struct {
		Author string `json:"author"`
		Body   string `json:"body"`
		Public *bool  `json:"public"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	author, err := bareAddress("author", body.Author)
	if err != nil {
		writeAddressError(w, err)
		return
	}
	if strings.TrimSpace(body.Body) == "" {
		writeError(w, http.StatusBadRequest, "body: empty")
		return
	}
	if body.Public == nil {
		writeError(w, http.StatusBadRequest, "public: required (true for a reply, false for an internal note)")
		return
	}
	s.act(w, r, id, []rules.Action{{Kind: model.OpComment, Actor: author, Public: *body.Public}}, body.Body, http.StatusCreated)
}

func (s *Server) patchComment(w http.ResponseWriter, r *http.Request) {
	id, ok := ticketID(w, r)
	if !ok {
		return
	}
	cid, err := strconv.ParseUint(r.PathValue("cid"), 10, 64)
	if err != nil || cid == 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("comment id: %q is not a comment id", r.PathValue("cid")))
		return
	}
	var body struct {
		Public *bool `json:"public"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if body.Public == nil {
		writeError(w, http.StatusBadRequest, "public: required")
		return
	}
	kind := model.OpMakePrivate
	if *body.Public {
		kind = model.OpMakePublic
	}
	s.act(w, r, id, []rules.Action{{Kind: kind, CommentID: cid, Actor: r.Header.Get("X-Deskgate-Expert")}}, "", http.StatusOK)
}

func (s *Server) patchTicket(w http.ResponseWriter, r *http.Request) {
	id, ok := ticketID(w, r)
	if !ok {
		return
	}
	var body struct {
		Status   *string `json:"status"`
		Assignee *string `json:"assignee"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	var actions []rules.Action
	actor := r.Header.Get("X-Deskgate-Expert")
	if body.Assignee != nil {
		a, err := bareAddress("assignee", *body.Assignee)
		if err != nil {
			writeAddressError(w, err)
			return
		}
		actions = append(actions, rules.Action{Kind: model.OpAssign, Person: model.Person{Email: a}, Actor: actor})
	}
	if body.Status != nil {
		actions = append(actions, rules.Action{Kind: model.OpStatus, Status: model.Status(*body.Status), Actor: actor})
	}
	if len(actions) == 0 {
		writeError(w, http.StatusBadRequest, "nothing to change: give status and/or assignee")
		return
	}
	s.act(w, r, id, actions, "", http.StatusOK)
}

// QueueEntry is one delivery in GET /api/v1/queue.
type QueueEntry struct {
	ID         uint64      `json:"id"`
	TicketID   uint64      `json:"ticket_id"`
	Kind       string      `json:"kind"`
	Recipients []Recipient `json:"recipients"`
	State      string      `json:"state"`
	Attempts   int         `json:"attempts"`
	NextTry    time.Time   `json:"next_try"`
	LastReply  string      `json:"last_reply"`
	CreatedAt  time.Time   `json:"created_at"`
}

func (s *Server) listQueue(w http.ResponseWriter, r *http.Request) {
	limit := 1000
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit: %q is not a number from 1 to 10000", v))
			return
		}
		limit = n
	}
	var before uint64
	if v := r.URL.Query().Get("before"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("before: %q is not a delivery id", v))
			return
		}
		before = n
	}
	state := model.DeliveryState(r.URL.Query().Get("state"))
	switch state {
	case "", model.DeliveryQueued, model.DeliverySent, model.DeliveryFailed, model.DeliveryPartial, model.DeliveryDropped:
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("state: %q is not one of queued, sent, failed, partial, dropped", state))
		return
	}
	out := []QueueEntry{}
	err := s.store.View(func(tx *store.Tx) error {
		list, err := tx.DeliveriesPage(before, state, limit)
		for _, d := range list {
			out = append(out, QueueEntry{ID: d.ID, TicketID: d.TicketID, Kind: string(d.Kind), Recipients: recipientsView(d.Recipients), State: string(d.State),
				Attempts: d.Attempts, NextTry: d.NextTry, LastReply: d.LastReply, CreatedAt: d.CreatedAt})
		}
		return err
	})
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// Explanation is GET /api/v1/explain/{id}: the decision trace of a comment or event.
type Explanation struct {
	ID        uint64 `json:"id"`
	Kind      string `json:"kind"` // comment or event
	TicketID  uint64 `json:"ticket_id"`
	MessageID string `json:"message_id,omitempty"`
	Author    string `json:"author,omitempty"`
	// By names who wrote the comment or took the action, as explain prints it: Author, or
	// for an expert action whose request named nobody, "an expert (admin API)".
	By         string      `json:"by"`
	Action     string      `json:"action,omitempty"`
	Public     bool        `json:"public"`
	ThirdParty bool        `json:"third_party"`
	CreatedAt  time.Time   `json:"created_at"`
	Trace      []TraceStep `json:"trace"`
	Notified   []Notified  `json:"notified"`
}

func (s *Server) explain(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("id")
	var out Explanation
	err := s.store.View(func(tx *store.Tx) error {
		id, err := strconv.ParseUint(key, 10, 64)
		if err != nil {
			ref, ok := tx.MessageID(key)
			if !ok {
				return store.ErrNotFound
			}
			id = ref.CommentID
			if ref.Sent {
				id = ref.SourceID
			}
		}
		if c, err := tx.Comment(id); err == nil {
			out = Explanation{ID: c.ID, Kind: "comment", TicketID: c.TicketID, MessageID: "<" + c.MessageID + ">", Author: c.Author, By: c.Author,
				Public: c.Public, ThirdParty: c.ThirdParty, CreatedAt: c.CreatedAt, Trace: traceView(c.Trace), Notified: notifiedView(tx.WithStatus(c.Notified))}
			return nil
		}
		e, err := tx.Event(id)
		if err != nil {
			return err
		}
		out = Explanation{ID: e.ID, Kind: "event", TicketID: e.TicketID, Author: e.Actor, By: rules.ExpertName(e.Actor), Action: e.Action, CreatedAt: e.CreatedAt,
			Trace: traceView(e.Trace), Notified: notifiedView(tx.WithStatus(e.Notified))}
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no comment, event or Message-ID %q", key))
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// retryDelivery puts a delivery's deferred and failed recipients back on the queue, due
// now and with a fresh queue lifetime; "all" makes every queued delivery due now (like
// Postfix's postqueue -f).
func (s *Server) retryDelivery(w http.ResponseWriter, r *http.Request) {
	count, err := s.desk.RetryDelivery(r.Context(), r.PathValue("id"))
	if err != nil {
		writeActError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"retried": count})
}

func (s *Server) dropDelivery(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("id: %q is not a delivery id", r.PathValue("id")))
		return
	}
	if err := s.desk.DropDelivery(r.Context(), id); err != nil {
		writeActError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"dropped": id})
}

// backup streams a consistent copy of the database: one read transaction, so the
// daemon keeps accepting mail while it runs.
func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="deskgate.db"`)
	if _, err := s.store.Backup(w); errors.Is(err, store.ErrBackupElsewhere) {
		// Refused before a byte was written, so the headers can still change.
		w.Header().Del("Content-Disposition")
		writeError(w, http.StatusConflict, err.Error())
	} else if err != nil {
		s.log.Error("backup failed", "err", err)
	}
}
