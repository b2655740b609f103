package main

import (
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/deskgate/deskgate/gateway/addr"
	"github.com/deskgate/deskgate/gateway/admin"
	"github.com/deskgate/deskgate/gateway/rules"
)

func parseID(what, s string) (uint64, error) {
	id, err := strconv.ParseUint(strings.TrimPrefix(s, "#"), 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("%q is not a %s id", s, what)
	}
	return id, nil
}

// ticketAction runs one action and prints what it did, as the ticket after it shows.
func ticketAction(cmd *cobra.Command, method, path string, body any, done func(admin.TicketView) string) error {
	c, err := newAPIClient()
	if err != nil {
		return err
	}
	var t admin.TicketView
	if _, err := c.send(method, path, body, &t); err != nil {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), done(t))
	return nil
}

// shownAddress is an address the expert typed as deskgate keeps it (the API took it so), so
// that jöe@xn--bcher-kva.test is reported as jöe@bücher.test, as tickets show prints it.
func shownAddress(email string) string {
	if c, err := addr.Canonical(email); err == nil {
		return c
	}
	return email
}

func said(s string) func(admin.TicketView) string { return func(admin.TicketView) string { return s } }

// addedAs says what an added person became: an agent added as a CC becomes a follower
// under policy.agent_cc_becomes_follower, and the expert must not be told otherwise.
func addedAs(email, noun string, id uint64) func(admin.TicketView) string {
	email = shownAddress(email)
	return func(t admin.TicketView) string {
		if noun == "CC" {
			for _, f := range t.Followers {
				if strings.EqualFold(f.Email, email) {
					return fmt.Sprintf("%s is an agent: now a hidden follower of ticket %d, not a CC (policy.agent_cc_becomes_follower)", email, id)
				}
			}
		}
		return fmt.Sprintf("%s is now a %s of ticket %d", email, noun, id)
	}
}

func participantCmd(use, short, path, noun string) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short}
	add := &cobra.Command{
		Use: "add ID EMAIL", Short: "add a " + noun, Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("ticket", args[0])
			if err != nil {
				return err
			}
			return ticketAction(cmd, "POST", fmt.Sprintf("/api/v1/tickets/%d/%s", id, path), map[string]string{"email": args[1]},
				addedAs(args[1], noun, id))
		},
	}
	rm := &cobra.Command{
		Use: "remove ID EMAIL", Short: "remove a " + noun, Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("ticket", args[0])
			if err != nil {
				return err
			}
			return ticketAction(cmd, "DELETE", fmt.Sprintf("/api/v1/tickets/%d/%s/%s", id, path, url.PathEscape(args[1])), nil,
				said(fmt.Sprintf("%s is no longer a %s of ticket %d", shownAddress(args[1]), noun, id)))
		},
	}
	cmd.AddCommand(add, rm)
	return cmd
}

func replyCmd() *cobra.Command {
	var as string
	var internal bool
	cmd := &cobra.Command{
		Use:   "reply ID --as AGENT [--internal]",
		Short: "a public reply (or with --internal a note) by AGENT; the body is read from stdin",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("ticket", args[0])
			if err != nil {
				return err
			}
			if as == "" {
				return fmt.Errorf("--as AGENT is required")
			}
			body, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 10<<20))
			if err != nil {
				return err
			}
			if strings.TrimSpace(string(body)) == "" {
				return fmt.Errorf("the reply's body is read from stdin, and it was empty")
			}
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			var t admin.TicketView
			if _, err := c.send("POST", fmt.Sprintf("/api/v1/tickets/%d/comments", id),
				map[string]any{"author": as, "body": string(body), "public": !internal}, &t); err != nil {
				return err
			}
			kind := "reply"
			if internal {
				kind = "internal note"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %d added to ticket %d\n", kind, t.Last, id)
			return nil
		},
	}
	cmd.Flags().StringVar(&as, "as", "", "the agent writing (an address under agents)")
	cmd.Flags().BoolVar(&internal, "internal", false, "an internal note: followers and the assignee only")
	return cmd
}

func commentsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "comments", Short: "manage comments"}
	private := &cobra.Command{
		Use: "private ID COMMENT", Short: "make a public comment internal (rule V5, docs/rules.md)", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("ticket", args[0])
			if err != nil {
				return err
			}
			cid, err := parseID("comment", args[1])
			if err != nil {
				return err
			}
			return ticketAction(cmd, "PATCH", fmt.Sprintf("/api/v1/tickets/%d/comments/%d", id, cid), map[string]bool{"public": false},
				said(fmt.Sprintf("comment %d of ticket %d is internal", cid, id)))
		},
	}
	raw := &cobra.Command{
		Use: "raw COMMENT", Short: "print the original message of a comment that came by mail, as received", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cid, err := parseID("comment", args[0])
			if err != nil {
				return err
			}
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			// The message as it came, not JSON: out is nil so nothing is decoded.
			msg, err := c.get(fmt.Sprintf("/api/v1/comments/%d/raw", cid), nil, nil)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(msg)
			return err
		},
	}
	cmd.AddCommand(private, raw)
	return cmd
}

func assignCmd() *cobra.Command {
	return &cobra.Command{
		Use: "assign ID AGENT", Short: "assign a ticket (notifies, rule N5)", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("ticket", args[0])
			if err != nil {
				return err
			}
			return ticketAction(cmd, "PATCH", fmt.Sprintf("/api/v1/tickets/%d", id), map[string]string{"assignee": args[1]},
				said(fmt.Sprintf("ticket %d is assigned to %s", id, args[1])))
		},
	}
}

func solveCmd() *cobra.Command {
	return &cobra.Command{
		Use: "solve ID", Short: "mark a ticket solved (notifies, rule N5)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("ticket", args[0])
			if err != nil {
				return err
			}
			return ticketAction(cmd, "PATCH", fmt.Sprintf("/api/v1/tickets/%d", id), map[string]string{"status": "solved"},
				said(fmt.Sprintf("ticket %d is solved", id)))
		},
	}
}

func explainCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "explain ID",
		Short: "how one comment (id or Message-ID) was threaded, why it is public or internal, who was told and why",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			key := strings.Trim(args[0], "<>")
			var e admin.Explanation
			raw, err := c.get("/api/v1/explain/"+url.PathEscape(key), nil, &e)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			w := cmd.OutOrStdout()
			vis := "public"
			if !e.Public {
				vis = "internal"
			}
			if e.Kind == "event" {
				fmt.Fprintf(w, "Event %d on ticket %d: %s by %s\n", e.ID, e.TicketID, e.Action, rules.ExpertName(e.Author))
			} else {
				fmt.Fprintf(w, "Comment %d on ticket %d by %s (%s) %s\n", e.ID, e.TicketID, e.Author, vis, e.MessageID)
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			for _, s := range e.Trace {
				fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.Rule, s.Step, s.Detail)
			}
			tw.Flush()
			for _, n := range e.Notified {
				v := "visible"
				if !n.Visible {
					v = "hidden"
				}
				fmt.Fprintf(w, "  sent to %s as %s (%s), delivery %d\n", n.Email, n.As, v, n.Delivery)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	return cmd
}

func queueCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "queue", Short: "the outbound queue"}
	cmd.AddCommand(queueListCmd(), queueRetryCmd(), queueDropCmd())
	return cmd
}

func queueListCmd() *cobra.Command {
	var asJSON bool
	var limit int
	var before uint64
	var state string
	list := &cobra.Command{
		Use: "list", Short: "deliveries, newest first: id, ticket, recipients, state, attempts, next try, last upstream reply", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			if before > 0 {
				q.Set("before", strconv.FormatUint(before, 10))
			}
			if state != "" {
				q.Set("state", state)
			}
			var rows []admin.QueueEntry
			raw, err := c.get("/api/v1/queue", q, &rows)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			if len(rows) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "queue is empty")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTICKET\tKIND\tSTATE\tATTEMPTS\tNEXT TRY\tRECIPIENTS\tLAST REPLY")
			for _, r := range rows {
				var rc []string
				for _, x := range r.Recipients {
					rc = append(rc, x.Email+"("+x.As+")")
				}
				next := "-"
				if r.State == "queued" {
					next = r.NextTry.Local().Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%d\t%s\t%s\t%s\n", r.ID, r.TicketID, r.Kind, r.State, r.Attempts, next, strings.Join(rc, ","), r.LastReply)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	list.Flags().IntVar(&limit, "limit", 100, "at most this many deliveries (up to 10000)")
	list.Flags().Uint64Var(&before, "before", 0, "only deliveries older than this id (the next page: the last id shown)")
	list.Flags().StringVar(&state, "state", "", "only deliveries in this state (queued, sent, failed, partial, dropped)")
	return list
}

func queueRetryCmd() *cobra.Command {
	return &cobra.Command{
		Use: "retry ID|all", Short: "try a delivery again now (its deferred and failed recipients); all: every queued one", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] != "all" {
				if _, err := parseID("delivery", args[0]); err != nil {
					return err
				}
			}
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			var out struct {
				Retried int `json:"retried"`
			}
			if _, err := c.send("POST", "/api/v1/queue/"+args[0]+"/retry", nil, &out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d deliveries due now\n", out.Retried)
			return nil
		},
	}
}

func queueDropCmd() *cobra.Command {
	return &cobra.Command{
		Use: "drop ID", Short: "take a delivery off the queue; its waiting recipients are not sent", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("delivery", args[0])
			if err != nil {
				return err
			}
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			if _, err := c.send("DELETE", fmt.Sprintf("/api/v1/queue/%d", id), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "delivery %d dropped\n", id)
			return nil
		},
	}
}
